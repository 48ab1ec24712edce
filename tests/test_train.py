"""Real training steps on small real data: outputs, exact resume, and 2-process DDP."""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
from PIL import Image
from safetensors.torch import load_file

import pytest
import torch

from conftest import REPO, requires_data, run_module
from sard.config import TrainConfig
from sard.pipeline import SardPipeline
from sard.steps import ema_decay, ema_update

FAST = ["--res", "32", "--batch", "2", "--log-every", "1", "--sample-every", "4", "--threads", "1"]


def _state(folder):
    meta = json.loads((folder / "train_state.json").read_text())
    return load_file(str(folder / meta["file"])), meta


@requires_data
def test_train_writes_checkpoint_log_grid_and_a_usable_model(small_data, tmp_path):
    out = tmp_path / "run"
    r = run_module("sard.train", "--data", small_data, "--out", out, "--iters", "4", *FAST)
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
    img = np.array(Image.open(next((small_data / "train" / "good").iterdir())))
    m = np.zeros(img.shape, bool)
    m[40:60, 50:70] = True
    res = pipe(img, m, seed=0, defect="crack")
    assert np.array_equal(res.image[~m], img[~m])


@requires_data
def test_resume_continues_exactly(small_data, tmp_path):
    a, b = tmp_path / "straight", tmp_path / "resumed"
    args = ["--data", small_data, *FAST, "--ckpt-every", "3", "--sample-every", "100"]
    assert run_module("sard.train", *args, "--out", a, "--iters", "6").returncode == 0
    assert run_module("sard.train", *args, "--out", b, "--iters", "3").returncode == 0
    r = run_module("sard.train", *args, "--out", b, "--iters", "6", "--resume")
    assert r.returncode == 0, r.stderr
    sa, _ = _state(a)
    sb, mb = _state(b)
    assert mb["step"] == 6 and sa.keys() == sb.keys()
    different = [k for k in sa if not (sa[k] == sb[k]).all()]
    assert different == []
    log_a = [json.loads(x) for x in (a / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (b / "log.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "sec_per_step"} for r in rows]  # noqa: E731
    assert strip(log_a) == strip(log_b)


@requires_data
def test_refuses_to_overwrite_a_run_without_resume(small_data, tmp_path):
    out = tmp_path / "run"
    assert run_module("sard.train", "--data", small_data, "--out", out, "--iters", "2", *FAST).returncode == 0
    before = (out / "train_state.json").read_bytes()
    r = run_module("sard.train", "--data", small_data, "--out", out, "--iters", "2", *FAST)
    assert r.returncode == 2 and "--resume" in r.stderr
    assert (out / "train_state.json").read_bytes() == before


@requires_data
def test_two_process_ddp_on_cpu(small_data, tmp_path):
    out = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = subprocess.run([torchrun, "--nproc_per_node=2", f"--master_port={port}", "-m", "sard.train",
                        "--data", str(small_data), "--out", str(out), "--iters", "4", *FAST,
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
    assert not cfg.ema_warmup and not cfg.augment and cfg.lr_d == 1e-4
    assert (cfg.loss.beta, cfg.loss.r1_gamma, cfg.loss.r1_on_logits, cfg.loss.region_mean, cfg.loss.alpha_fade) == \
        (0.1, 1.0, False, False, False)
    assert asdict(cfg.discriminator) == asdict(DiscriminatorConfig.ddgan_literal())
