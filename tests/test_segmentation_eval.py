"""python -m sard.evaluate segmentation: the split keeps test images away from synthesis and the
mask bank, a --quick run end to end (and its cache), bad methods refused with exit 2."""
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import MAGNETIC_TILE, requires_data, run_module

from sard.evaluation import segmentation as seg
from sard.io import SardInputError


@requires_data
def test_split_keeps_test_images_out_of_training_and_bank():
    proto = seg.build_protocol(MAGNETIC_TILE, split_seed=0, defects=None)
    test_images = {p.resolve() for p in [s.image for s in proto.test_defects + proto.test_good]}
    test_masks = {s.mask.resolve() for s in proto.test_defects}
    bank = {Path(m).resolve() for d in proto.bank.defects for m in proto.bank.sources(d)}
    seen = {p.resolve() for p in [s.image for s in proto.train_real] + proto.normals + proto.textures}
    assert proto.defects == ["blowhole", "break", "crack", "fray", "uneven"]
    assert test_images and test_masks and bank and seen
    assert not test_images & seen
    assert not test_masks & bank
    # the bank is the synthesizer third's masks and nothing else
    assert bank == {s.mask.resolve() for s in proto.train_real}
    # every synthesis job takes its background from train/good, never from the test set
    jobs = seg.make_jobs(proto.normals, proto.defects, 20, seed=0)
    assert not {j.normal.resolve() for js in jobs.values() for j in js} & test_images
    # the four empty 'uneven' masks are left out of both sides, and said so
    assert sum("empty mask" in s for s in proto.skipped) == 4
    # a test image slipped into the training set is caught
    with pytest.raises(AssertionError):
        seg.assert_disjoint(replace(proto, train_real=proto.train_real + proto.test_defects[:1]))
    with pytest.raises(AssertionError):
        seg.assert_disjoint(replace(proto, normals=proto.normals + [proto.test_good[0].image]))


@requires_data
def test_jobs_are_shared_and_extend_as_a_prefix():
    proto = seg.build_protocol(MAGNETIC_TILE, split_seed=0, defects=["crack", "fray"])
    small = seg.make_jobs(proto.normals, proto.defects, 5, seed=0)
    large = seg.make_jobs(proto.normals, proto.defects, 12, seed=0)
    for d in proto.defects:
        assert large[d][:5] == small[d]
        assert len({j.mask_seed for j in large[d]}) == 12
    assert seg.make_jobs(proto.normals, proto.defects, 5, seed=1) != small


def _values_ok(results: dict) -> None:
    for backbone, r in results.items():
        for name, m in r["methods"].items():
            for d, row in m["types"].items():
                for k in ("IoU", "Acc"):
                    for v in row[k]["values"]:
                        assert (v is None or math.isnan(v) or 0 <= v <= 1), (backbone, name, d, k, v)
            for k in ("mIoU", "Acc", "mIoU_2class", "aAcc", "false_alarm_rate"):
                for v in m[k]["values"]:
                    assert math.isnan(v) or 0 <= v <= 1, (backbone, name, k, v)


@requires_data
def test_quick_run_end_to_end_and_cache(tmp_path):
    work, out = tmp_path / "work", tmp_path / "rep" / "quick.md"
    args = ["segmentation", "--quick", "--data", MAGNETIC_TILE, "--methods", "real,cutpaste,draem", "--threads", "1",
            "--work", work, "--out", out, "--json", tmp_path / "rep" / "quick.json", "--chart", tmp_path / "rep" / "q.png"]
    t0 = time.perf_counter()
    r = run_module("sard.evaluate", *args, timeout=300, env={"OMP_NUM_THREADS": "1"})
    first = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    md = out.read_text()
    report = json.loads((tmp_path / "rep" / "quick.json").read_text())
    png = (tmp_path / "rep" / "q.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["quick"] and report["settings"]["seeds"] == 1
    assert report["defects"] == ["blowhole", "break"]
    assert set(report["methods"]) == {"real", "cutpaste", "draem"}
    assert report["runs_trained"] == 3 and report["runs_cached"] == 0
    res = report["results"]
    assert list(res) == ["segformer-b0"]
    for name in ("real", "cutpaste", "draem"):
        assert set(res["segformer-b0"]["methods"][name]["types"]) == {"blowhole", "break"}
    _values_ok(res)
    # Table I shaped Markdown with the settings stated
    assert "Table I: segformer-b0" in md and "| **Average** |" in md and "CutPaste mIoU" in md
    assert "Quick run" in md and "from scratch" in md and "Resolution 96 px" in md and "Command:" in md
    # the pairs are cached through PairWriter, the same job list for both methods
    manifests = {m: (work / "pairs" / m).glob("*/manifest.jsonl") for m in ("cutpaste", "draem")}
    lines = {m: [json.loads(x) for p in ps for x in p.read_text().splitlines()] for m, ps in manifests.items()}
    assert len(lines["cutpaste"]) == len(lines["draem"]) == 2 * 6
    key = lambda rec: (rec["defect"], rec["index"], rec["normal"], rec["mask_seed"], rec["synth_seed"])  # noqa: E731
    assert sorted(map(key, lines["cutpaste"])) == sorted(map(key, lines["draem"]))
    # a second run reuses every run and gives the same numbers
    t0 = time.perf_counter()
    r2 = run_module("sard.evaluate", *args, timeout=300, env={"OMP_NUM_THREADS": "1"})
    second = time.perf_counter() - t0
    assert r2.returncode == 0, r2.stderr[-3000:]
    report2 = json.loads((tmp_path / "rep" / "quick.json").read_text())
    assert report2["runs_trained"] == 0 and report2["runs_cached"] == 3
    assert json.dumps(report2["results"], sort_keys=True) == json.dumps(res, sort_keys=True)
    assert second < first


def test_unknown_method_exits_2(tmp_path):
    data = MAGNETIC_TILE if MAGNETIC_TILE.is_dir() else tmp_path
    r = run_module("sard.evaluate", "segmentation", "--data", data, "--methods", "real,frobnicate", "--threads", "1",
                   "--work", tmp_path / "w", "--out", tmp_path / "r.md", timeout=120)
    assert r.returncode == 2, r.stderr
    assert "frobnicate" in r.stderr


def test_missing_checkpoint_exits_2(tmp_path):
    data = MAGNETIC_TILE if MAGNETIC_TILE.is_dir() else tmp_path
    missing = tmp_path / "no-such-checkpoint"
    r = run_module("sard.evaluate", "segmentation", "--data", data, "--methods", f"real,sard={missing}",
                   "--threads", "1", "--work", tmp_path / "w", "--out", tmp_path / "r.md", timeout=120)
    assert r.returncode == 2, r.stderr
    assert str(missing) in r.stderr and "sard" in r.stderr
    assert not (tmp_path / "r.md").exists()


def test_method_parsing():
    assert [m.name for m in seg.parse_methods("real, cutpaste,draem")] == ["real", "cutpaste", "draem"]
    for bad, word in (("cutpaste=somewhere", "cutpaste"), ("real,real", "twice"), ("Bad Name", "Bad Name"),
                      ("", "empty"), ("ddgan", "ddgan")):
        with pytest.raises(SardInputError, match=word):
            seg.parse_methods(bad)


@requires_data
def test_checkpoint_of_another_split_is_refused(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps({"format": "sard-generator/1", "split_seed": 1, "data": "magnetic_tile",
                                                "defects": ["blowhole"]}))
    (ck / "model.safetensors").write_bytes(b"not used")
    (m,) = seg.parse_methods(f"sard={ck}")
    with pytest.raises(SardInputError, match="split seed 1"):
        seg.check_checkpoint_split(m, MAGNETIC_TILE, 0, ["blowhole"])
    seg.check_checkpoint_split(m, MAGNETIC_TILE, 1, ["blowhole"])
