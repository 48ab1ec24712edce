"""Each bad input gets a clear message naming the file and what was expected; commands exit 2;
training skips bad samples where that is safe and counts them."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import requires_data, run_module
from sard.data import list_dataset, split_defects
from sard.data.crops import load_examples
from sard.io import SardInputError, read_image, read_mask
from sard.pipeline import SardPipeline
from sard.store.model_folder import MODEL_FORMAT, save_model


def synth_images(root, defect):
    """The images of `defect` that fall in the synthesizer's third (the ones training reads)."""
    return [s.image for s in split_defects(list_dataset(root)).synth if s.defect == defect]


FAST = ["--iters", "2", "--res", "32", "--batch", "2", "--sample-every", "100", "--threads", "1"]


def test_missing_data_folder_exits_2_naming_it(tmp_path):
    r = run_module("sard.train", "--data", tmp_path / "nowhere", "--out", tmp_path / "o", *FAST)
    assert r.returncode == 2
    assert "nowhere" in r.stderr and "does not exist" in r.stderr and "MVTec" in r.stderr


def test_empty_data_folder_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_module("sard.train", "--data", tmp_path / "empty", "--out", tmp_path / "o", *FAST)
    assert r.returncode == 2 and "holds no images" in r.stderr


def test_bad_numbers_exit_2_naming_the_parameter(tmp_path):
    for flag, value in (("--iters", "0"), ("--res", "30"), ("--batch", "0")):
        args = list(FAST)
        args[args.index(flag) + 1] = value
        r = run_module("sard.train", "--data", tmp_path, "--out", tmp_path / "o", *args)
        assert r.returncode == 2 and flag in r.stderr, (flag, r.stderr)


@requires_data
def test_unreadable_and_truncated_images_are_skipped_and_counted(small_data, tmp_path):
    cracks = synth_images(small_data, "crack")
    cracks[0].write_bytes(b"this is not an image")
    data = cracks[1].read_bytes()
    cracks[1].write_bytes(data[: len(data) // 3])  # truncated JPEG
    with pytest.raises(SardInputError, match="unreadable or truncated"):
        read_image(cracks[0])
    with pytest.raises(SardInputError, match=cracks[1].name):
        read_image(cracks[1])
    r = run_module("sard.train", "--data", small_data, "--out", tmp_path / "o", *FAST)
    assert r.returncode == 0, r.stderr
    assert "2 defect images loaded, 2 skipped" in r.stderr  # the synthesizer's third: 2 + 2 of 12
    # one of each type is loaded: too few to learn a type from, and training says so, naming them
    assert "per type: " in r.stderr and "fewer than 10 training defects" in r.stderr
    assert all(d in r.stderr.split("warning: ")[1].split(":")[0] for d in ("crack", "blowhole"))
    assert cracks[0].name in r.stderr and cracks[1].name in r.stderr
    assert (tmp_path / "o" / "model.safetensors").is_file()


@requires_data
def test_mask_of_another_size_is_named_and_skipped(small_data, tmp_path):
    masks = [small_data / "ground_truth" / "crack" / f"{p.stem}_mask.png" for p in synth_images(small_data, "crack")]
    Image.open(masks[0]).resize((17, 19), Image.NEAREST).save(masks[0])
    with pytest.raises(SardInputError, match="17x19 but its image is"):
        read_mask(masks[0], size=read_image(small_data / "test" / "crack" / masks[0].name.replace("_mask.png", ".jpg")).shape[:2])
    r = run_module("sard.train", "--data", small_data, "--out", tmp_path / "o", *FAST)
    assert r.returncode == 0 and "1 skipped" in r.stderr and "expected the same size" in r.stderr


@requires_data
def test_empty_masks_in_the_shared_data_are_reported_not_trained_on():
    from conftest import MAGNETIC_TILE
    samples = [s for s in list_dataset(MAGNETIC_TILE) if s.defect == "uneven"]
    examples, report = load_examples(samples, ["uneven"], 1)
    empty = [f for f, why in report.skipped if "mask is empty" in why]
    assert len(empty) == 4 and report.loaded == len(samples) - 4
    assert all(ex.mask.sum() > 0 for ex in examples)


def test_non_binary_mask_is_thresholded_at_127_with_one_warning(tmp_path):
    a = np.zeros((10, 10), np.uint8)
    a[2:5, 2:5] = 200
    a[6:8, 6:8] = 100   # below the threshold
    a[0, 0] = 128
    Image.fromarray(a).save(tmp_path / "m.png")
    with pytest.warns(UserWarning, match="not binary.*127") as rec:
        m = read_mask(tmp_path / "m.png")
        read_mask(tmp_path / "m.png")
    assert len([w for w in rec if "not binary" in str(w.message)]) == 1
    assert m.sum() == 9 + 1 and not m[6:8, 6:8].any()


@requires_data
def test_all_samples_bad_exits_2(small_data, tmp_path):
    for p in (small_data / "ground_truth").rglob("*.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(p)
    r = run_module("sard.train", "--data", small_data, "--out", tmp_path / "o", *FAST)
    assert r.returncode == 2 and "no usable defect images" in r.stderr


def test_defect_image_without_mask_says_where_the_mask_should_be(tmp_path):
    (tmp_path / "test" / "scratch").mkdir(parents=True)
    (tmp_path / "ground_truth" / "scratch").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "test" / "scratch" / "a.png")
    with pytest.raises(SardInputError, match=r"ground_truth/scratch/a_mask\.png"):
        list_dataset(tmp_path)


def test_checkpoint_that_is_not_safetensors_is_refused(tmp_path):
    (tmp_path / "ck").mkdir()
    torch.save({"w": torch.zeros(3)}, tmp_path / "ck" / "model.safetensors")  # a pickle in disguise
    (tmp_path / "ck" / "config.json").write_text(
        '{"format": "%s", "generator": {"base_channels": 8, "channel_mult": [1, 2]}}' % MODEL_FORMAT)
    with pytest.raises(SardInputError, match=r"model\.safetensors: not a safetensors file"):
        SardPipeline.from_pretrained(tmp_path / "ck")


def test_checkpoint_whose_config_does_not_match_is_refused(tmp_path):
    from sard.nets.generator import Generator, GeneratorConfig
    g = Generator(GeneratorConfig(base_channels=8, channel_mult=(1, 2)))
    save_model(tmp_path / "ck", g.state_dict(), {"format": MODEL_FORMAT,
                                                   "generator": {"base_channels": 16, "channel_mult": [1, 2]}})
    with pytest.raises(SardInputError, match=r"model\.safetensors: weights do not match the config.*another shape"):
        SardPipeline.from_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(SardInputError, match="not a SARD generator config"):
        SardPipeline.from_pretrained(tmp_path / "ck")
    # the sampler: a latent carry from 0 to 1000, native-scale refine steps from 0 to the schedule's T,
    # the share of the last latent the refine pass keeps from 0 to 1
    for field, bad in (("z_carry", -1), ("z_carry", 1e9), ("z_carry", "8"), ("refine", 5), ("refine", 0.5),
                       ("refine_carry", 1.5), ("refine_carry", -0.1)):
        save_model(tmp_path / "ck", g.state_dict(), {"format": MODEL_FORMAT, field: bad,
                                                       "generator": {"base_channels": 8, "channel_mult": [1, 2]}})
        with pytest.raises(SardInputError, match=rf"config\.json.*{field}.*expected"):
            SardPipeline.from_pretrained(tmp_path / "ck")


@requires_data
def test_resume_with_a_corrupt_train_state_exits_2(small_data, tmp_path):
    out = tmp_path / "o"
    assert run_module("sard.train", "--data", small_data, "--out", out, *FAST).returncode == 0
    state = next(out.glob("train_state-*.safetensors"))
    state.write_bytes(b"\x80\x04garbage")
    r = run_module("sard.train", "--data", small_data, "--out", out, *FAST[:1], "4", *FAST[2:], "--resume")
    assert r.returncode == 2 and state.name in r.stderr and "not a safetensors file" in r.stderr


TRAIN_BAD = [["--seed", "-1"], ["--seed", str(2**70)], ["--ckpt-every", "0"], ["--ckpt-every", "-1"],
             ["--sample-every", "0"], ["--log-every", "0"], ["--threads", "-1"],
             ["--config", b"\xff\xfe{not utf-8"], ["--config", '{"betas": 5}'],
             ["--config", '{"generator": {"base_channels": "x"}}'],
             ["--config", '{"discriminator": {"dmg_masking": "both"}}'], ["--out", "UNWRITABLE"]]


@pytest.mark.parametrize("bad", TRAIN_BAD, ids=lambda b: f"{b[0]}={b[1]!r}"[:40])
def test_bad_train_flags_exit_2_naming_flag_or_file_without_a_traceback(tiny_data, tmp_path, unwritable, bad):
    flag, value = bad
    out = tmp_path / "o"
    if flag == "--config":
        cfg = tmp_path / "bad.json"
        cfg.write_bytes(value if isinstance(value, bytes) else value.encode())
        value = cfg
    if value == "UNWRITABLE":
        out = value = unwritable
    args = {"--data": tiny_data, "--out": out, "--iters": "2", "--res": "32", "--batch": "2", flag: value}
    r = run_module("sard.train", *[x for kv in args.items() for x in kv])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert (str(value) if flag == "--config" else flag) in r.stderr
    if flag == "--config":
        named = next((k for k in ("base_channels", "betas", "dmg_masking") if k in str(bad[1])), "UTF-8")
        assert named in r.stderr
    if flag != "--out":
        assert not (out / "log.jsonl").exists()


def test_pipeline_refuses_a_missing_mask_and_a_seed_out_of_range(tmp_path):
    from conftest import tiny_checkpoint
    pipe = SardPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck"))
    img = np.zeros((32, 32), np.uint8)
    with pytest.raises(SardInputError, match="mask: none given"):
        pipe(img, None, defect="crack")
    m = np.zeros((32, 32), bool)
    m[8:16, 8:16] = True
    with pytest.raises(SardInputError, match=r"seed: expected a whole number from 0"):
        pipe(img, m, seed=2**70, defect="crack")


def test_export_names_the_normal_image_that_is_too_small(tmp_path, capsys):
    from sard.export import main as export_main
    (tmp_path / "n").mkdir()
    Image.new("L", (1, 1), 128).save(tmp_path / "n" / "one.png")
    assert export_main(["--method", "cutpaste", "--normals", str(tmp_path / "n"), "--masks", "ellipse",
                        "--per-type", "1", "--out", str(tmp_path / "o")]) == 2
    assert "one.png" in capsys.readouterr().err


def test_export_refuses_a_defect_type_the_mask_bank_lacks(tiny_data, tmp_path, capsys):
    from sard.export import main as export_main
    assert export_main(["--method", "cutpaste", "--normals", str(tiny_data), "--masks", "bank", "--defects", "crak",
                        "--per-type", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--defects ['crak']" in err and "crack" in err


def _cannot_create(folder: Path) -> bool:
    try:
        folder.mkdir()
    except OSError:
        return True
    folder.rmdir()
    return False


def test_checkpoint_command_refuses_a_file_as_dest_and_a_mismatched_model_and_says_a_write_failure(tmp_path):
    from conftest import tiny_checkpoint
    run = tiny_checkpoint(tmp_path / "run")
    (tmp_path / "afile").write_text("x")
    r = run_module("sard.checkpoint", run, tmp_path / "afile")
    assert r.returncode == 2 and "afile: is a file" in r.stderr and "Traceback" not in r.stderr
    unwritable = Path("/sys/sard-ship")         # a read-only file system: root may write anywhere else
    if _cannot_create(unwritable):
        r = run_module("sard.checkpoint", run, unwritable)
        assert r.returncode == 1 and "sard-ship: not writable" in r.stderr and "Traceback" not in r.stderr
    bad = tiny_checkpoint(tmp_path / "bad")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["generator"]["base_channels"] = 16          # weights written at 8
    (bad / "config.json").write_text(json.dumps(cfg))
    r = run_module("sard.checkpoint", bad, tmp_path / "shipped")
    assert r.returncode == 2 and "weights do not match the config" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "shipped").exists()
