"""--init: a new part's run starts from a checkpoint: new defect types, gray -> RGB, then resume."""
import json

import pytest
import torch

from conftest import make_tiny_data, run_module, tiny_checkpoint
from sard.masks import read_bank
from sard.finetune import generator_config_from, transfer_generator
from sard.nets.generator import Generator
from sard.pipeline import SardPipeline


def test_gray_checkpoint_becomes_an_rgb_generator_that_computes_the_same(tmp_path):
    """Adapted gray -> RGB, a known type's output on a gray picture is the gray model's, per channel;
    a new type starts at the known types' mean embedding."""
    ck = tiny_checkpoint(tmp_path / "ck", defects=("crack", "blowhole"))
    gray = SardPipeline.from_pretrained(ck).generator
    rgb = Generator(generator_config_from(ck, image_channels=3, num_classes=2))
    report = transfer_generator(rgb, ck, ["crack", "scratch"])
    assert report["fresh"] == [] and len(report["adapted"]) == 4          # class_emb, conv_in, conv_out w and b
    assert torch.equal(rgb.class_emb.weight[0], gray.class_emb.weight[0])
    assert torch.allclose(rgb.class_emb.weight[1], gray.class_emb.weight.mean(0))
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 1, 16, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g)
    m, z, i = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float(), torch.randn(2, 100, generator=g), torch.tensor([0, 3])
    label = torch.tensor([0, 0])
    with torch.no_grad():
        want = gray(x, i, z, m, ctx, label)
        got = rgb(x.repeat(1, 3, 1, 1), i, z, m, ctx.repeat(1, 3, 1, 1), label)
    assert torch.allclose(got, want.repeat(1, 3, 1, 1), atol=1e-5)


def test_init_trains_a_new_part_and_resumes(tmp_path):
    ck = tiny_checkpoint(tmp_path / "ck", defects=("crack", "blowhole"))
    data = make_tiny_data(tmp_path / "part", defects=("crack", "scratch"), colour=True)
    out = tmp_path / "run"
    fast = ["--res", "32", "--batch", "2", "--log-every", "1", "--sample-every", "100", "--ckpt-every", "2"]
    r = run_module("sard.train", "--data", data, "--out", out, "--iters", "2", "--init", ck, *fast)
    assert r.returncode == 0, r.stderr
    assert "--init" in r.stderr and "D starts fresh" in r.stderr
    report = json.loads((out / "init.json").read_text())
    assert report["channels"] == 1 and report["defects"] == ["crack", "blowhole"] and report["fresh"] == []
    model = json.loads((out / "config.json").read_text())
    assert model["init"] == str(ck.resolve()) and model["generator"]["image_channels"] == 3
    assert model["generator"]["base_channels"] == 8                   # the checkpoint's architecture, not the default
    r = run_module("sard.train", "--data", data, "--out", out, "--iters", "4", *fast, "--resume")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "train_state.json").read_text())["step"] == 4
    assert json.loads((out / "config.json").read_text())["init"] == str(ck.resolve())
    pipe = SardPipeline.from_pretrained(out)
    assert pipe.channels == 3 and pipe.defects == ["crack", "scratch"]
    # shipped, the model names its parent checkpoint, not a path of this machine
    r = run_module("sard.checkpoint", out, tmp_path / "shipped")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "shipped" / "config.json").read_text())["init"] == ck.name
    assert read_bank(tmp_path / "shipped").defects == ["crack", "scratch"]      # its real-mask bank travels along


def test_init_names_a_missing_checkpoint(tmp_path):
    data = make_tiny_data(tmp_path / "part")
    r = run_module("sard.train", "--data", data, "--out", tmp_path / "run", "--iters", "2", "--init", "no-such-model")
    assert r.returncode == 2 and "--init no-such-model" in r.stderr and "sard-magnetic-tile" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()


def test_a_shipped_checkpoint_is_found_by_name(tmp_path):
    from sard.io import SardInputError
    from sard.store.model_folder import DEFAULT_CHECKPOINT, resolve_checkpoint
    assert resolve_checkpoint(DEFAULT_CHECKPOINT.name) == DEFAULT_CHECKPOINT
    assert resolve_checkpoint(tmp_path) == tmp_path
    with pytest.raises(SardInputError, match=f"--checkpoint sard-nothing.*{DEFAULT_CHECKPOINT.name}"):
        resolve_checkpoint("sard-nothing", "--checkpoint")


def test_the_readme_own_part_commands_run_on_a_plain_folder(tmp_path):
    """README 'Your own part': images/ + masks/ + good/ -> --init fine-tuning under --minutes -> ship
    -> card -> export from the shipped model's own bank."""
    import shutil
    src = make_tiny_data(tmp_path / "mvtec", defects=("dent", "scratch"), colour=True)
    part = tmp_path / "mypart"
    for d in ("dent", "scratch"):
        shutil.copytree(src / "test" / d, part / "images" / d)
        shutil.copytree(src / "ground_truth" / d, part / "masks" / d)
    shutil.copytree(src / "train" / "good", part / "good")
    ck = tiny_checkpoint(tmp_path / "ck", defects=("crack", "blowhole"))
    run, shipped = tmp_path / "runs" / "mypart", tmp_path / "checkpoints" / "sard-mypart"
    r = run_module("sard.train", "--data", part, "--out", run, "--init", ck, "--minutes", "0.05", "--iters", "100000",
                   "--res", "32", "--batch", "2", "--threads", "1")
    assert r.returncode == 0 and "--minutes 0.05 reached" in r.stderr, r.stderr
    assert run_module("sard.checkpoint", run, shipped).returncode == 0
    r = run_module("sard.evaluate", "card", "--checkpoint", shipped, "--data", part, "--log", run / "log.jsonl",
                   "--n", "2", "--quality-per-type", "2", "--out", shipped / "card")
    assert r.returncode == 0, r.stderr
    card = (shipped / "card" / "card.md").read_text()
    assert "RGB" in card and "fine-tuned from `ck`" in card and "| dent |" in card
    r = run_module("sard.export", "--checkpoint", shipped, "--normals", part / "good", "--masks", "bank", "--on-part",
                   "--per-type", "2", "--out", tmp_path / "exports", "--category", "mypart")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (tmp_path / "exports" / "mypart" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(x["defect"] for x in lines) == ["dent", "dent", "scratch", "scratch"]
