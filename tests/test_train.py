"""Real training steps on a tiny data set: outputs, exact resume (also after a kill at each
checkpoint write), and 2-process DDP."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import load_file

import pytest
import torch

from conftest import REPO, run_killed, run_module
from sard.config import TrainConfig
from sard.masks import read_bank
from sard.pipeline import SardPipeline
from sard.steps import ema_decay, ema_update

FAST = ["--res", "32", "--batch", "2", "--log-every", "1", "--sample-every", "4", "--threads", "1"]


def _state(folder):
    meta = json.loads((folder / "train_state.json").read_text())
    return load_file(str(folder / meta["file"])), meta


def test_train_writes_checkpoint_log_grid_and_a_usable_model(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = run_module("sard.train", "--data", tiny_data, "--out", out, "--iters", "4", *FAST)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert all(np.isfinite(x["d_real"]) and np.isfinite(x["g_total"]) for x in lines)
    # The game's pulse: D's real-minus-fake gap per reverse step i drawn since the last line, both heads.
    gaps = [{k for k in x if k.startswith("d_gap_")} for x in lines]
    assert all(g for g in gaps)
    assert set().union(*gaps) <= {f"d_gap_{h}_{k}" for h in ("img", "fg") for k in range(4)}
    assert any(k.startswith("d_gap_fg_") for k in set().union(*gaps))
    grid = Image.open(out / "samples" / "step_00000004.png")
    assert grid.width > 6 * 32 and grid.height > 2 * 32          # 2 defect rows x 6 columns
    tensors, meta = _state(out)
    assert meta["step"] == 4 and any(k.startswith("opt_d.") for k in tensors)
    assert {k.split(".")[0] for k in tensors} == {"G", "G_ema", "D", "opt_g", "opt_d"}
    pipe = SardPipeline.from_pretrained(out)
    assert pipe.defects == ["blowhole", "crack"]
    bank = read_bank(out)                # the model folder carries its real-mask bank
    assert bank is not None and bank.defects == ["blowhole", "crack"]
    img = np.array(Image.open(next((tiny_data / "train" / "good").iterdir())))
    m = np.zeros(img.shape, bool)
    m[40:60, 50:70] = True
    res = pipe(img, m, seed=0, defect="crack")
    assert np.array_equal(res.image[~m], img[~m])


def strip_timing(log: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in ("sec_per_step", "mark")}
            for x in log.read_text().splitlines()]


def test_resume_continues_exactly(tiny_data, tmp_path):
    a, b = tmp_path / "straight", tmp_path / "resumed"
    args = ["--data", tiny_data, *FAST, "--ckpt-every", "3", "--sample-every", "100"]
    assert run_module("sard.train", *args, "--out", a, "--iters", "6").returncode == 0
    assert run_module("sard.train", *args, "--out", b, "--iters", "3").returncode == 0
    # Mark the lines of steps 1-3: a resume keeps them as they are, a restart from step 0 writes them anew.
    marked = [json.dumps({**json.loads(x), "mark": 1}) for x in (b / "log.jsonl").read_text().splitlines()]
    torn = '{"step": 4, "d_re'                                  # a kill mid-write of the next line
    (b / "log.jsonl").write_text("\n".join(marked) + "\n" + torn)
    (b / ".train_state-00000006.safetensors.x1y2z3.tmp").write_bytes(b"\0" * 1000)   # a kill mid-checkpoint
    r = run_module("sard.train", *args, "--out", b, "--iters", "6", "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "at step 3" in r.stderr and "dropped its last line" in r.stderr
    assert not list(b.glob(".*.tmp"))
    sa, _ = _state(a)
    sb, mb = _state(b)
    assert mb["step"] == 6 and sa.keys() == sb.keys()
    different = [k for k in sa if not (sa[k] == sb[k]).all()]
    assert different == []
    rows = [json.loads(x) for x in (b / "log.jsonl").read_text().splitlines()]
    assert [x.get("mark") for x in rows] == [1, 1, 1, None, None, None], "resume restarted from step 0"
    assert strip_timing(a / "log.jsonl") == strip_timing(b / "log.jsonl")


def test_minutes_budget_stops_with_a_checkpoint_and_counts_across_resumes(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = ["--data", tiny_data, *FAST, "--out", out, "--iters", "100000", "--ckpt-every", "100000"]
    r = run_module("sard.train", *args, "--minutes", "0.05")
    assert r.returncode == 0, r.stderr
    _, meta = _state(out)
    assert "--minutes 0.05 reached at step" in r.stderr and 0 < meta["step"] < 100000
    assert 3.0 <= meta["train_seconds"] < 60
    assert json.loads((out / "config.json").read_text())["step"] == meta["step"]
    assert (out / "samples" / f"step_{meta['step']:08d}.png").is_file()
    # The same budget again: already spent, nothing trained; a larger one continues from there.
    r = run_module("sard.train", *args, "--minutes", "0.05", "--resume")
    assert r.returncode == 0 and "nothing to do" in r.stderr and _state(out)[1]["step"] == meta["step"]
    r = run_module("sard.train", *args, "--minutes", "0.1", "--resume")
    _, later = _state(out)
    assert r.returncode == 0 and later["step"] > meta["step"] and later["train_seconds"] >= 6.0
    assert run_module("sard.train", *args[:-6], "--out", tmp_path / "bad", "--minutes", "0").returncode == 2


KILL_RUN = ["--iters", "2", "--ckpt-every", "1", "--res", "32", "--batch", "2", "--log-every", "1",
            "--sample-every", "100", "--threads", "1"]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_a_kill_at_each_checkpoint_write_then_resume_gives_the_same_run(tiny_data, tmp_path, k):
    """os.replace k of the step-1 checkpoint: 1 the training state, 2 train_state.json naming it,
    3 model.safetensors, 4 its config.json."""
    a, b = tmp_path / "straight", tmp_path / "killed"
    assert run_module("sard.train", "--data", tiny_data, "--out", a, *KILL_RUN).returncode == 0
    r = run_killed("replace", k, "sard.train", "--data", tiny_data, "--out", b, *KILL_RUN)
    assert r.returncode == 137, r.stderr
    assert list(b.glob(".*.tmp")), "the kill leaves a temporary file"
    r = run_module("sard.train", "--data", tiny_data, "--out", b, *KILL_RUN, "--resume")
    assert r.returncode == 0, r.stderr
    assert ("at step 1" in r.stderr) == (k >= 3)   # train_state.json names the step-1 state from k = 3 on
    assert not list(b.glob(".*.tmp"))
    sa, sb = _state(a)[0], _state(b)[0]
    assert sa.keys() == sb.keys() and all((sa[x] == sb[x]).all() for x in sa)
    assert load_file(str(a / "model.safetensors")).keys() == load_file(str(b / "model.safetensors")).keys()
    assert strip_timing(a / "log.jsonl") == strip_timing(b / "log.jsonl")


@pytest.mark.parametrize("state", ['{"step": 3, "conf', '{"step": 3, "file": "../../x/train_state-00000003.safetensors", '
                                   '"config": {}, "rng": []}', b"\xff\xfe"])
def test_a_corrupt_or_escaping_state_file_is_named(tiny_data, tmp_path, state):
    out = tmp_path / "o"
    out.mkdir()
    (out / "train_state.json").write_bytes(state if isinstance(state, bytes) else state.encode())
    r = run_module("sard.train", "--data", tiny_data, "--out", out, *FAST, "--iters", "2", "--resume")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "train_state.json" in r.stderr and "corrupt" in r.stderr


def test_resume_of_an_empty_folder_says_what_is_missing(tmp_path):
    r = run_module("sard.train", "--out", tmp_path / "nothing", "--resume", *FAST)
    assert r.returncode == 2 and "holds no training checkpoint" in r.stderr and "--data" in r.stderr


def test_refuses_to_overwrite_a_run_without_resume(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert run_module("sard.train", "--data", tiny_data, "--out", out, "--iters", "2", *FAST).returncode == 0
    before = (out / "train_state.json").read_bytes()
    r = run_module("sard.train", "--data", tiny_data, "--out", out, "--iters", "2", *FAST)
    assert r.returncode == 2 and "--resume" in r.stderr
    assert (out / "train_state.json").read_bytes() == before


def test_two_process_ddp_on_cpu(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = subprocess.run([torchrun, "--nproc_per_node=2", f"--master_port={port}", "-m", "sard.train",
                        "--data", str(tiny_data), "--out", str(out), "--iters", "4", *FAST,
                        "--ckpt-every", "2", "--sample-every", "100"],
                       capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    tensors, meta = _state(out)
    # One checkpoint, written by rank 0, holding both ranks' random states (each rank its own shard).
    assert meta["step"] == 4 and len(meta["rng"]) == 2
    assert meta["rng"][0]["data"] != meta["rng"][1]["data"]
    assert list(out.glob("train_state-*.safetensors")) == [out / meta["file"]]
    # Replicas were checked equal at each checkpoint (the run would have failed otherwise).
    assert "DDP replicas differ" not in r.stderr


def test_ema_warm_up_forgets_the_initialisation():
    """0.999^s of a constant-decay EMA is still the initialisation after s steps; with the warm-up
    min(0.999, (1 + s) / (10 + s)) a short run ships trained weights."""
    def share_of_init(cfg, steps=400):
        model, ema = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.fill_(1.0), ema.weight.fill_(0.0)    # trained = 1, initialisation = 0
        for s in range(steps):
            ema_update(ema, model, ema_decay(cfg, s))
        return 1 - ema.weight.item()
    assert ema_decay(TrainConfig(), 0) == 0.1 and ema_decay(TrainConfig(), 10**6) == 0.999
    assert share_of_init(TrainConfig()) < 0.05
    assert share_of_init(TrainConfig(ema_warmup=False)) == pytest.approx(0.999 ** 400, rel=1e-3)


def test_paper_literal_config_is_one_switch_away():
    """configs/paper-literal.json restores the first landed settings: every fix is a config field."""
    from dataclasses import asdict

    from sard.config import load_config_file
    from sard.nets.discriminator import DiscriminatorConfig
    cfg = load_config_file(REPO / "configs" / "paper-literal.json")
    assert not cfg.ema_warmup and not cfg.augment and cfg.lr_d == 1e-4 and cfg.d_steps == 1 and cfg.fit_crops == 0
    assert (cfg.loss.beta, cfg.loss.r1_gamma, cfg.loss.r1_on_logits, cfg.loss.region_mean, cfg.loss.alpha_fade,
            cfg.loss.mse_lowpass, cfg.loss.diversity, cfg.loss.texture) == (0.1, 1.0, False, False, False, 0.0, 0.0, 0.0)
    assert asdict(cfg.discriminator) == asdict(DiscriminatorConfig.ddgan_literal())


def test_the_gpu_config_reads_through_the_config_flag_and_fits_a_40_gb_gpu(tmp_path):
    """configs/gpu.json goes through the command's own --config path (nothing trains): the paper's
    20,000 steps on 256 px crops, batch 16; its step (RGB, three types, as bottle) fits 40 GB."""
    from dataclasses import replace

    from sard.memory import check_fits
    from sard.train import config_from_args, parse_args
    a = parse_args(["--config", str(REPO / "configs" / "gpu.json"), "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    cfg = config_from_args(a).validate()
    assert (cfg.iters, cfg.res, cfg.batch) == (20000, 256, 16) and cfg.fit_crops > 0
    assert cfg.ckpt_every <= cfg.iters // 10 and cfg.sample_every <= cfg.iters // 10
    default = TrainConfig()
    assert (cfg.generator, cfg.discriminator, cfg.loss, cfg.lr_g, cfg.lr_d) == \
        (default.generator, default.discriminator, default.loss, default.lr_g, default.lr_d)
    cfg.generator = replace(cfg.generator, image_channels=3, num_classes=3)
    cfg.discriminator = replace(cfg.discriminator, image_channels=3, num_classes=3)
    check_fits(cfg, budget=40 * 10**9)
    flagged = config_from_args(parse_args(["--config", str(REPO / "configs" / "gpu.json"), "--data", str(tmp_path),
                                           "--out", str(tmp_path / "r"), "--iters", "5"]))
    assert flagged.iters == 5 and flagged.res == 256          # flags still win over the file


def test_a_config_file_takes_effect_and_flags_override_it(tiny_data, tmp_path):
    cfg_file = tmp_path / "small.json"
    cfg_file.write_text(json.dumps({"lr_d": 2e-4, "ema_warmup": False, "batch": 3, "log_every": 2,
                                    "generator": {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1},
                                    "schedule": {"num_steps": 2}}))
    out = tmp_path / "run"
    r = run_module("sard.train", "--config", cfg_file, "--data", tiny_data, "--out", out, "--iters", "2",
                   "--res", "32", "--batch", "2", "--sample-every", "100", "--threads", "1")
    assert r.returncode == 0, r.stderr
    cfg = _state(out)[1]["config"]
    assert (cfg["lr_d"], cfg["ema_warmup"], cfg["log_every"], cfg["schedule"]["num_steps"]) == (2e-4, False, 2, 2)
    assert (cfg["generator"]["base_channels"], cfg["generator"]["channel_mult"]) == (8, [1, 2])
    assert cfg["batch"] == 2 and cfg["iters"] == 2            # the flags win over the file
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [2]                   # log_every 2, from the file
    assert {k for k in rows[0] if k.startswith("d_gap_")} <= {f"d_gap_{h}_{k}" for h in ("img", "fg") for k in range(2)}
    pipe = SardPipeline.from_pretrained(out)                  # the model is built as the file said
    assert pipe.schedule.num_steps == 2 and pipe.generator.config.base_channels == 8


def test_whole_images_flag_trains_on_whole_images(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = run_module("sard.train", "--data", tiny_data, "--out", out, "--iters", "1", *FAST, "--whole-images")
    assert r.returncode == 0, r.stderr
    assert _state(out)[1]["config"]["whole_images"] is True
    # What the flag changes: a batch is the whole image resized to --res, not a native-scale crop.
    from sard.data import list_dataset
    from sard.data.crops import CropSampler, load_examples
    samples = [s for s in list_dataset(tiny_data) if s.defect == "crack"][:1]
    examples, _ = load_examples(samples, ["crack"], 1)
    whole = torch.nn.functional.interpolate(examples[0].image[None], size=(32, 32), mode="area")[0]
    for flag in (True, False):
        x = CropSampler(examples, 32, seed=0, whole_images=flag).batch(4)[0]
        flips = [whole, whole.flip(-1), whole.flip(-2), whole.flip(-1).flip(-2)]
        matched = [any(torch.allclose(xi, f, atol=1e-5) for f in flips) for xi in x]
        assert all(matched) if flag else not any(matched)


def test_checkpoint_command_ships_the_model_in_fp16_or_fp32(tmp_path):
    from conftest import tiny_checkpoint
    run = tiny_checkpoint(tmp_path / "run")
    (run / "train_state.json").write_text("{}")              # training files are not shipped
    weights = load_file(str(run / "model.safetensors"))
    r = run_module("sard.checkpoint", run, tmp_path / "ship")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "ship")
    assert sorted(p.name for p in (tmp_path / "ship").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "ship" / "config.json").read_text()) == \
        json.loads((run / "config.json").read_text())
    half = load_file(str(tmp_path / "ship" / "model.safetensors"))
    assert half.keys() == weights.keys()
    assert all(half[k].dtype == torch.float16 and torch.allclose(half[k].float(), weights[k], atol=1e-3, rtol=1e-3)
               for k in weights if weights[k].is_floating_point())
    assert SardPipeline.from_pretrained(tmp_path / "ship").defects == ["crack", "blowhole"]
    assert run_module("sard.checkpoint", run, tmp_path / "full", "--fp32").returncode == 0
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    assert all(torch.equal(full[k], weights[k]) for k in weights)
    r = run_module("sard.checkpoint", tmp_path / "nothing", tmp_path / "x")
    assert r.returncode == 2 and "nothing/config.json: no such config file" in r.stderr and "Traceback" not in r.stderr
    r = run_module("sard.checkpoint", run)
    assert r.returncode == 2 and "usage: python -m sard.checkpoint RUN_DIR DEST" in r.stderr


def test_fit_crops_is_stored_for_synthesis_and_a_run_from_before_it_resumes_at_native_scale(tiny_data, tmp_path):
    out = tmp_path / "run"
    r = run_module("sard.train", "--data", tiny_data, "--out", out, "--iters", "1", *FAST, "--fit-crops", "0.25")
    assert r.returncode == 0, r.stderr
    assert _state(out)[1]["config"]["fit_crops"] == 0.25
    stored = SardPipeline.from_pretrained(out).config                         # what synthesis reads
    assert stored.fit_crops == 0.25 and stored.fit_min_width == 6.0
    meta = json.loads((out / "train_state.json").read_text())
    del meta["config"]["fit_crops"], meta["config"]["fit_min_width"]          # a state written before the fields
    (out / "train_state.json").write_text(json.dumps(meta))
    r = run_module("sard.train", "--data", tiny_data, "--out", out, "--iters", "2", *FAST, "--resume")
    assert r.returncode == 0, r.stderr
    assert _state(out)[1]["config"]["fit_crops"] == 0.0 and _state(out)[1]["config"]["fit_min_width"] == 0.0
    bad = run_module("sard.train", "--data", tiny_data, "--out", tmp_path / "bad", "--iters", "1", *FAST,
                     "--fit-crops", "2")
    assert bad.returncode == 2 and "--fit-crops" in bad.stderr and "from 0 to 1" in bad.stderr
    (tmp_path / "neg.json").write_text('{"fit_min_width": -1}')
    bad = run_module("sard.train", "--data", tiny_data, "--out", tmp_path / "bad", "--iters", "1", *FAST,
                     "--config", tmp_path / "neg.json")
    assert bad.returncode == 2 and "fit_min_width" in bad.stderr and "from 0 to 10000" in bad.stderr


def test_a_full_disk_ends_training_naming_the_output_folder(tiny_data, tmp_path):
    out = tmp_path / "full"
    # fsync 1 is the --out probe (exit 2, named); from the 3rd on, the disk fills mid-run
    r = run_killed("fsync", 3, "sard.train", "--data", tiny_data, "--out", out, *KILL_RUN, fault="enospc")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{out}: the disk is full" in r.stderr and "--resume" in r.stderr
