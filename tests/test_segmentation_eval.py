"""python -m sard.evaluate segmentation: the split keeps test images away from synthesis and the
mask bank, a --quick run end to end (and its cache), bad methods refused with exit 2."""
import json
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
import numpy as np
import torch
from conftest import DATA_ROOT, MAGNETIC_TILE, REPO, make_tiny_data, requires_data, run_module

from sard.data import list_dataset, split_defects
from sard.evaluation import common, seg_pairs, seg_protocol, seg_scoring, seg_settings
from sard.evaluation.seg_train import SegData, SegTrainConfig, batches, train_segmenter
from sard.evaluation.segmentation import read_run, run_key, run_path
from sard.io import SardInputError
from sard.metrics import SCORE_BINS

BOTTLE = DATA_ROOT / "bottle"


@requires_data
def test_split_keeps_test_images_out_of_training_and_bank():
    proto = seg_protocol.build_protocol(MAGNETIC_TILE, split_seed=0, defects=None)
    test_images = {p.resolve() for p in [s.image for s in proto.test_defects + proto.test_good]}
    test_masks = {s.mask.resolve() for s in proto.test_defects}
    bank = {Path(m).resolve() for d in proto.bank.defects for m in proto.bank.sources(d)}
    seen = {p.resolve() for p in [s.image for s in proto.train_real] + proto.normals + proto.textures}
    val = {p.resolve() for p in [s.image for s in proto.val_defects + proto.val_good]}
    assert proto.defects == ["blowhole", "break", "crack", "fray", "uneven"]
    assert test_images and test_masks and bank and seen
    assert not test_images & seen
    assert not test_masks & bank
    # the validation split: carved from the real training third and train/good, seen by no segmenter
    assert val and not val & seen and not val & test_images
    assert {s.defect for s in proto.val_defects} == set(proto.defects)
    third = {s.image for s in split_defects(list_dataset(MAGNETIC_TILE), 0).synth}
    assert {s.image for s in proto.val_defects + proto.train_real} <= third
    assert all(s.split == "train" for s in proto.val_good)
    # the bank is the segmenters' real training masks and nothing else
    assert bank == {s.mask.resolve() for s in proto.train_real}
    # every synthesis job takes its background from train/good, never from the test set
    jobs = seg_protocol.make_jobs(proto.normals, proto.defects, 20, seed=0)
    assert not {j.normal.resolve() for js in jobs.values() for j in js} & test_images
    # the four empty 'uneven' masks are left out of both sides, and said so
    assert sum("empty mask" in s for s in proto.skipped) == 4
    # a test image slipped into the training set is caught
    with pytest.raises(AssertionError):
        seg_protocol.assert_disjoint(replace(proto, train_real=proto.train_real + proto.test_defects[:1]))
    with pytest.raises(AssertionError):
        seg_protocol.assert_disjoint(replace(proto, normals=proto.normals + [proto.test_good[0].image]))
    with pytest.raises(AssertionError):
        seg_protocol.assert_disjoint(replace(proto, train_real=proto.train_real + proto.val_defects[:1]))
    with pytest.raises(AssertionError):
        seg_protocol.assert_disjoint(replace(proto, val_good=proto.val_good + proto.test_good[:1]))


@requires_data
def test_jobs_are_shared_and_extend_as_a_prefix():
    proto = seg_protocol.build_protocol(MAGNETIC_TILE, split_seed=0, defects=["crack", "fray"])
    small = seg_protocol.make_jobs(proto.normals, proto.defects, 5, seed=0)
    large = seg_protocol.make_jobs(proto.normals, proto.defects, 12, seed=0)
    for d in proto.defects:
        assert large[d][:5] == small[d]
        assert len({j.mask_seed for j in large[d]}) == 12
    assert seg_protocol.make_jobs(proto.normals, proto.defects, 5, seed=1) != small


def _values_ok(results: dict) -> None:
    for backbone, arms in results.items():
        for arm, per in arms.items():
            for name, m in per.items():
                for d, row in m["types"].items():
                    for k in seg_scoring.TYPE_KEYS:
                        for v in row[k]["values"]:
                            assert v is None or math.isnan(v) or 0 <= v <= 1, (backbone, arm, name, d, k, v)
                for k in seg_scoring.TYPE_KEYS + ("false_alarm_rate", "threshold"):
                    for v in m[k]["values"]:
                        assert math.isnan(v) or 0 <= v <= 1, (backbone, arm, name, k, v)


def _quick(data, tmp_path, methods, *extra):
    rep = tmp_path / "rep"
    args = ["segmentation", "--quick", "--data", data, "--methods", methods, "--threads", "1", "--work",
            tmp_path / "work", "--out", rep / "quick.md", "--json", rep / "quick.json", "--chart", rep / "q.png", *extra]
    r = run_module("sard.evaluate", *args, timeout=600, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return (rep / "quick.md").read_text(), json.loads((rep / "quick.json").read_text()), (rep / "q.png").read_bytes()


def _report_ok(md: str, report: dict, png: bytes, methods: set[str]) -> None:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["quick"] and report["settings"]["seeds"] == 1
    assert set(report["methods"]) == methods | set(seg_scoring.REFERENCES)
    res = report["results"]
    assert list(res) == ["unet"] and set(res["unet"]) == {"0.5", "0"}
    for arm, per in res["unet"].items():
        assert set(per) == methods | set(seg_scoring.REFERENCES)          # reference rows in every table
        assert set(per["real"]["types"]) == set(report["defects"])
    _values_ok(res)
    # "All defect" scores the prevalence as AP and never beats a threshold: every good image alarms
    ref = res["unet"]["0.5"]["all_defect"]
    assert ref["false_alarm_rate"]["mean"] == 1.0 and res["unet"]["0.5"]["all_background"]["IoU"]["mean"] == 0.0
    assert md.splitlines()[2].startswith("**Verdict (unet): ")
    assert "converged" in md.splitlines()[2]
    for text in ("| All defect |", "| All background |", "| Real only |", "synthetic-only arm", "Mean AP",
                 "the paper's columns (secondary)", "Quick run", "Command:", "Wall time", "Convergence and steps"):
        assert text in md, text


@requires_data
def test_quick_run_end_to_end_and_cache(tmp_path):
    extra = ("--res", "128")        # whole tiles at 128 px keep this test short; bottle runs at native scale
    t0 = time.perf_counter()
    md, report, png = _quick(MAGNETIC_TILE, tmp_path, "real,cutpaste,draem", *extra)
    first = time.perf_counter() - t0
    _report_ok(md, report, png, {"real", "cutpaste", "draem"})
    assert report["defects"] == ["blowhole", "break"]
    assert report["runs_trained"] == 5 and report["runs_cached"] == 0      # real once, each method in 2 arms
    # the pairs are cached through PairWriter, the same job list for both methods
    work = tmp_path / "work"
    manifests = {m: (work / "pairs" / m).glob("*/manifest.jsonl") for m in ("cutpaste", "draem")}
    lines = {m: [json.loads(x) for p in ps for x in p.read_text().splitlines()] for m, ps in manifests.items()}
    assert len(lines["cutpaste"]) == len(lines["draem"]) == 2 * 6
    key = lambda rec: (rec["defect"], rec["index"], rec["normal"], rec["mask_seed"], rec["synth_seed"])  # noqa: E731
    assert sorted(map(key, lines["cutpaste"])) == sorted(map(key, lines["draem"]))
    # patch for patch: the synthetic-only arm takes as many patches a step as Real only, a mixed arm twice that
    def batch_of(method, arm):
        (path,) = (work / "runs" / method).glob(f"unet-real{arm}-seed0-*.json.gz")
        t = read_run(path)["train"]
        return t["batch_real"], t["batch_synthetic"]
    assert batch_of("real", "0.5") == (4, 0) and batch_of("draem", "0") == (0, 4) and batch_of("draem", "0.5") == (4, 4)
    # a second run reuses every run and gives the same numbers
    t0 = time.perf_counter()
    _, report2, _ = _quick(MAGNETIC_TILE, tmp_path, "real,cutpaste,draem", *extra)
    assert report2["runs_trained"] == 0 and report2["runs_cached"] == 5
    assert json.dumps(report2["results"], sort_keys=True) == json.dumps(report["results"], sort_keys=True)
    assert time.perf_counter() - t0 < first
    # a run cut short resumes where it stopped: only the missing run is trained again
    (victim,) = (work / "runs" / "draem").glob("unet-real0-seed0-*.json.gz")
    victim.unlink()
    # --from-cache reports what is there, trains nothing and names what is missing
    md_part, part, _ = _quick(MAGNETIC_TILE, tmp_path, "real,cutpaste,draem", "--from-cache", *extra)
    assert part["runs_trained"] == 0 and part["runs_cached"] == 4 and part["pending"] == {"draem": {"0": 1}}
    assert "draem" in part["results"]["unet"]["0.5"] and "draem" not in part["results"]["unet"]["0"]
    assert "**Incomplete**" in md_part and "DRAEM synthetic only (real share 0) (1 run)" in md_part
    assert not victim.is_file()
    _, report3, _ = _quick(MAGNETIC_TILE, tmp_path, "real,cutpaste,draem", *extra)
    assert report3["runs_trained"] == 1 and report3["runs_cached"] == 4
    assert victim.is_file()
    # a fresh checkout: no pairs, no work folder, only the (committed) --results: nothing is retrained
    shutil.copytree(work / "runs", tmp_path / "kept")
    shutil.rmtree(work)
    _, report4, _ = _quick(MAGNETIC_TILE, tmp_path, "real,cutpaste,draem", "--results", tmp_path / "kept", *extra)
    assert report4["runs_trained"] == 0 and report4["runs_cached"] == 5
    assert json.dumps(report4["results"], sort_keys=True) == json.dumps(report3["results"], sort_keys=True)
    # the synthetic-only arm alone, without Real only: a report whose verdict says why it ranks nothing
    md5, report5, _ = _quick(MAGNETIC_TILE, tmp_path, "cutpaste,draem", "--real-fraction", "0",
                             "--results", tmp_path / "kept", *extra)
    assert report5["runs_trained"] == 0 and list(report5["results"]["unet"]) == ["0"]
    assert "no Real only run" in md5.splitlines()[2] and "synthetic-only arm" in md5


@pytest.mark.skipif(not BOTTLE.is_dir(), reason=f"bottle data not found at {BOTTLE}")
def test_quick_run_on_rgb_bottle_at_native_scale(tmp_path):
    reading = tmp_path / "bottle-reading.md"
    reading.write_text("CutPaste pastes **real glass** here.\n")
    md, report, png = _quick(BOTTLE, tmp_path, "real,cutpaste", "--reading", reading)
    _report_ok(md, report, png, {"real", "cutpaste"})
    # the person's reading goes in as written, named by its file, and the command that reruns it names it too
    assert "## Reading" in md and "CutPaste pastes **real glass** here." in md and str(reading) in md
    assert report["reading"]["file"] == str(reading) and f"--reading {reading}" in report["command_explicit"]
    assert "3 channel(s)" in report["settings"]["input"] and report["settings"]["res"] == 0
    assert "Beside the paper" in md and "83.52" in md and "pretrained" in md


def _test_set(scores: list[np.ndarray], masks: list[np.ndarray], types: list[str]) -> seg_scoring.TestSet:
    # the "image" carries its own score map; the fake segmenter reads it back
    return seg_scoring.TestSet([torch.from_numpy(s) for s in scores], types, masks)


def test_threshold_comes_from_the_validation_split_only():
    gt = np.zeros((8, 8), bool)
    gt[:2, :2] = True
    # validation: defects score 0.4, background 0.2 -> the best threshold lies in (0.2, 0.4]
    val = _test_set([np.where(gt, 0.4, 0.2), np.full((8, 8), 0.2)], [gt, np.zeros_like(gt)], ["crack", "good"])
    # test: defects 0.3, background 0.1 and one good image at 0.35: a threshold picked here would differ
    test = _test_set([np.where(gt, 0.3, 0.1), np.full((8, 8), 0.35)], [gt, np.zeros_like(gt)], ["crack", "good"])
    score = lambda image, size: image.numpy()  # noqa: E731
    ev = seg_scoring.evaluate(score, val, test, ["crack"])
    assert ev["threshold_bin"] == int(0.2 * SCORE_BINS) + 1               # the lowest best-F1 bin on validation
    m = seg_scoring.run_metrics(ev)
    # at that threshold the test defects (0.3) and the 0.35 good image are all "defect"
    assert m["types"]["crack"]["IoU"] == pytest.approx(4 / (64 + 64 - 60))
    assert m["types"]["crack"]["IoU_paper"] == pytest.approx(4 / 4)
    assert m["false_alarm_rate"] == 1.0
    # changing the test set never moves the threshold
    test2 = _test_set([np.where(gt, 0.9, 0.0), np.zeros((8, 8))], [gt, np.zeros_like(gt)], ["crack", "good"])
    assert seg_scoring.evaluate(score, val, test2, ["crack"])["threshold_bin"] == ev["threshold_bin"]
    assert seg_scoring.run_metrics(seg_scoring.evaluate(score, val, test2, ["crack"]))["types"]["crack"]["AP"] == 1.0


def _pool(value: int, n: int = 5) -> SegData:
    images = [torch.full((1, 80, 90), value, dtype=torch.uint8) for _ in range(n)]
    targets = [torch.zeros(1, 80, 90, dtype=torch.float16) for _ in range(n)]
    for k, t in enumerate(targets):
        t[0, 10 * k:10 * k + 5, 20:30] = 1
        images[k][0, 10 * k:10 * k + 5, 20:30] = 255 - value
    return SegData(images, targets)


def test_every_method_sees_the_same_real_patches():
    real, syn_a, syn_b = _pool(40), _pool(200), _pool(120)
    cfg = SegTrainConfig(batch=8, crop=32, real_fraction=0.5, seed=3)
    a, b, alone = batches(cfg, real, syn_a), batches(cfg, real, syn_b), batches(cfg, real, None)
    for _ in range(3):
        (xa, ca), (xb, _), (xr, cr) = next(a), next(b), next(alone)
        assert xa.shape == (8, 1, 32, 32) and xr.shape == (4, 1, 32, 32)   # Real only: the real share alone
        assert torch.equal(xa[:4], xb[:4]) and torch.equal(xa[:4], xr) and torch.equal(ca[:4], cr)
        assert not torch.equal(xa[4:], xb[4:])
    # real share 0: synthetic pairs alone; the targets come from the synthetic pool
    x0, _ = next(batches(replace(cfg, real_fraction=0.0), None, syn_a))
    assert x0.shape[0] == 8
    with pytest.raises(ValueError, match="synthetic"):
        next(batches(replace(cfg, real_fraction=0.0), real, None))


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


def test_missing_reading_file_exits_2(tmp_path):
    data = MAGNETIC_TILE if MAGNETIC_TILE.is_dir() else tmp_path
    missing = tmp_path / "no-reading.md"
    r = run_module("sard.evaluate", "segmentation", "--data", data, "--methods", "real", "--reading", missing,
                   "--threads", "1", "--work", tmp_path / "w", "--out", tmp_path / "r.md", timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"--reading {missing}" in r.stderr
    assert not (tmp_path / "r.md").exists()


def test_method_parsing():
    assert [m.name for m in common.parse_methods("real, cutpaste,draem")] == ["real", "cutpaste", "draem"]
    for bad, word in (("cutpaste=somewhere", "cutpaste"), ("real,real", "twice"), ("Bad Name", "Bad Name"),
                      ("", "empty"), ("ddgan", "ddgan")):
        with pytest.raises(SardInputError, match=word):
            common.parse_methods(bad)


def test_default_methods_take_the_committed_ablation_checkpoints(tmp_path):
    data = tmp_path / "data" / "bottle"
    data.mkdir(parents=True)
    for v in ("sard", "w_rcd"):
        (tmp_path / "ab" / "bottle" / v).mkdir(parents=True)
    text, missing = seg_pairs.default_methods(data, root=tmp_path / "ab")
    assert text == f"real,cutpaste,draem,glass,w_rcd={tmp_path / 'ab' / 'bottle' / 'w_rcd'}," \
                   f"sard={tmp_path / 'ab' / 'bottle' / 'sard'}"        # in the paper's order
    assert missing == ["ddgan", "w_dmg"]
    assert seg_pairs.default_methods(tmp_path / "data" / "other", root=tmp_path / "ab") == (
        "real,cutpaste,draem,glass", list(seg_pairs.ABLATION))
    # without --methods a category with no committed variants runs the rest, and says which are left out
    import argparse
    parser = seg_settings.add_parser(argparse.ArgumentParser().add_subparsers())
    a = parser.parse_args(["--data", str(tmp_path / "data" / "no_such_category"), "--out", str(tmp_path / "r.md")])
    with pytest.warns(UserWarning, match="no same-budget checkpoint of ddgan, w_rcd, w_dmg, sard"):
        s = seg_settings.resolve_settings(a)
    assert s.methods == "real,cutpaste,draem,glass" and s.left_out == list(seg_pairs.ABLATION)
    a = parser.parse_args(["--data", str(tmp_path), "--methods", "real", "--out", str(tmp_path / "r.md")])
    assert seg_settings.resolve_settings(a).left_out == []


@requires_data
def test_checkpoint_of_another_split_is_refused(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps({"format": "sard-generator/1", "generator": {}, "split_seed": 1, "data": "magnetic_tile",
                                                "defects": ["blowhole"]}))
    (ck / "model.safetensors").write_bytes(b"not used")
    (m,) = common.parse_methods(f"sard={ck}")
    with pytest.raises(SardInputError, match="split seed 1"):
        seg_pairs.check_checkpoint_split(m, MAGNETIC_TILE, 0, ["blowhole"])
    seg_pairs.check_checkpoint_split(m, MAGNETIC_TILE, 1, ["blowhole"])


def _fig(mean: float, std: float = 0.0, fa: float = 0.1) -> dict:
    ms = lambda m, s: {"mean": m, "std": s, "values": [m - s, m + s] if s else [m]}  # noqa: E731
    return {"AP": ms(mean, std), "IoU": ms(mean, std), "false_alarm_rate": ms(fa, 0.0)}


def test_convergence_needs_a_margin_beyond_the_spread_and_warns_on_false_alarms():
    from sard.evaluation.seg_report import convergence
    ref = {"all_defect": _fig(0.03)}
    assert convergence({**ref, "real": _fig(0.20, 0.02)})["converged"]
    assert not convergence({**ref, "real": _fig(0.05, 0.03)})["converged"]       # within the spread
    alarmed = convergence({**ref, "real": _fig(0.20, 0.02, fa=0.9)})                 # flags the good tiles:
    assert alarmed["converged"] and not alarmed["false_alarms_ok"] and "warning" in alarmed["words"]  # said
    assert not convergence(ref)["converged"]                                       # no Real only run


def test_where_sard_loses_names_who_beats_it_beyond_the_spread_only():
    from sard.evaluation.seg_report import where_sard_loses
    def row(mean, std, a, b):                       # mean AP, its spread, and the AP of types a and b
        f = _fig(mean, std)
        return {**f, "types": {"a": {"AP": _fig(a, std)["AP"]}, "b": {"AP": _fig(b, std)["AP"]}}}
    per = {"all_defect": row(0.03, 0, 0.03, 0.03), "real": row(0.40, 0.01, 0.50, 0.30),
           "cutpaste": row(0.47, 0.01, 0.45, 0.485), "draem": row(0.45, 0.02, 0.45, 0.45),
           "sard": row(0.44, 0.01, 0.40, 0.48)}
    labels = {"all_defect": "All defect", "real": "Real only", "cutpaste": "CutPaste", "draem": "DRAEM",
              "sard": "SARD"}
    report = {"methods": {n: {"label": v} for n, v in labels.items()}, "defects": ["a", "b"],
              "results": {"unet": {"0.5": per, "0": {k: per[k] for k in ("all_defect", "real", "cutpaste")}}}}
    (line,) = where_sard_loses(report)["unet"]     # no line for an arm without SARD
    above, types = line.split("; types where")
    assert "CutPaste 47.0" in above and "DRAEM" not in above          # 0.45 +- 0.02 is within SARD's spread
    assert "a 40.0 (below Real only 50.0)" in types                   # Real only is the best on a
    assert "b 48.0" not in types                                      # nobody beats SARD on b beyond the spread
    per["sard"] = row(0.50, 0.01, 0.60, 0.60)
    assert where_sard_loses(report)["unet"][0].endswith("above SARD on mean AP beyond the seed spread: none; "
                                                        "types where a method beats SARD beyond the spread: none.")


def _settings_of(key: dict, tmp_path: Path, device: str) -> seg_settings.Settings:
    """The Settings whose mixed arm made the run `key` names, on `device`."""
    import argparse
    parser = seg_settings.add_parser(argparse.ArgumentParser().add_subparsers())
    argv = ["--data", key["data"], "--methods", "real", "--out", str(tmp_path / "r.md"), "--seeds", "1",
            "--pairs-per-type", str(key["pairs_per_type"] or 40), "--res", str(key["res"]), "--crop", str(key["crop"]),
            "--iters", str(key["iters"]), "--batch", str(key["batch"]), "--lr", repr(key["lr"]),
            "--real-fraction", f"{key['real_fraction']:g},0", "--split-seed", str(key["split_seed"]),
            "--seed", str(key["pair_seed"]), "--device", device]
    return seg_settings.resolve_settings(parser.parse_args(argv))


def test_the_committed_run_cache_stays_a_hit_whatever_the_device(tmp_path):
    """--device picks where segmenters train; it is no part of a run's key, so the records committed
    in reports/<category>/cache are found as they are, on the CPU or on a GPU."""
    checked = set()
    for path in sorted(REPO.glob("reports/*/cache/*/*.json.gz")):
        if (path.parts[-4], path.parts[-2]) in checked:
            continue
        key = read_run(path)["key"]
        if key["real_fraction"] == 0:       # the mixed arm's key is Settings' own batch
            continue
        s = _settings_of(key, tmp_path, "cpu")
        assert s.device == torch.device("cpu")
        method = common.Method(key["method"], None, key["method_fingerprint"])
        for device in ("cpu", "cuda:0"):
            k = run_key(replace(s, device=torch.device(device)), method, key["backbone"], key["seed"], key["defects"],
                        key["real_fraction"])
            assert k == key and run_path(path.parent.parent, k) == path, (path, device)
        checked.add((path.parts[-4], path.parts[-2]))
    assert len(checked) >= 8, checked          # every method of at least one category


def test_batched_sard_pairs_get_run_records_of_their_own(tmp_path):
    """--synth-batch N > 1: a SARD checkpoint's runs are keyed apart (its pairs may differ by a grey
    level); a baseline's and Real only's keys stay as they are, as do all keys at --synth-batch 1."""
    key = {"data": str(REPO), "pairs_per_type": 40, "res": 0, "crop": 64, "iters": 10, "batch": 8, "lr": 2e-3,
           "real_fraction": 0.5, "split_seed": 0, "pair_seed": 0}
    s = _settings_of(key, tmp_path, "cpu")
    sard_method = common.Method("sard", REPO / "checkpoints" / "sard-magnetic-tile", "f" * 12)
    glass = common.Method("glass", None, "glass")
    for method in (sard_method, glass):
        one, batched = (run_key(replace(s, synth_batch=n), method, "unet", 0, ["crack"], 0.5) for n in (1, 4))
        assert "synth_batch" not in one
        assert (batched == one) == (method is glass) and batched.get("synth_batch", 4) == 4


def test_segmenter_training_on_the_cpu_is_the_same_with_the_device_named():
    rng = np.random.default_rng(0)
    data = SegData([torch.from_numpy(rng.integers(0, 255, (1, 40, 40), dtype=np.uint8)) for _ in range(3)],
                   [torch.from_numpy((rng.random((1, 40, 40)) > 0.9).astype(np.float16)) for _ in range(3)])
    cfg = SegTrainConfig(iters=3, batch=2, crop=32)
    plain, log = train_segmenter(cfg, data, progress=False)
    named, log_named = train_segmenter(cfg, data, progress=False, device="cpu")
    assert log["loss_tenths"] == log_named["loss_tenths"]
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), named.state_dict().values()))


def test_a_quick_run_records_the_device_of_each_run(tmp_path):
    data = make_tiny_data(tmp_path / "mt")
    r = run_module("sard.evaluate", "segmentation", "--quick", "--data", data, "--methods", "real", "--iters", "2",
                   "--threads", "1", "--work", tmp_path / "w", "--out", tmp_path / "s.md", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["settings"]["device"] == "cpu" and report["record_devices"] == ["cpu"]
    assert "no GPU used" in report["machine"]
    (rec,) = [read_run(p) for p in (tmp_path / "w" / "runs").rglob("*.json.gz")]
    assert rec["device"] == "cpu" and "device" not in rec["key"]
