"""Batched synthesis (SardPipeline.batch, export --batch): each job's result agrees with its
one-at-a-time result within one grey level, whoever shares its network calls, the background stays
the input's own, and every exported pair regenerates bit for bit from its manifest line."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MAGNETIC_TILE, requires_data, run_module, texture, tiny_checkpoint
from sard.evaluation import common, seg_pairs, seg_protocol
from sard.io import SardInputError, read_image
from sard.pair_recipe import regenerate
from sard.pipeline import SardPipeline
from sard.synthesizers import build

TOLERANCE = 1     # grey levels: a batched call may round a few pixels otherwise than a call of one


def box_mask(shape, top, left, h, w) -> np.ndarray:
    m = np.zeros(shape[:2], bool)
    m[top:top + h, left:left + w] = True
    return m


def tiny_jobs(channels: int = 1, dtype=np.uint8) -> list[tuple]:
    """Ten jobs on 96 x 80 tiles whose masks give regions of three sizes (so buckets hold several jobs)."""
    jobs = []
    for n in range(10):
        img = texture((96, 80), 7 + n)
        img = np.dstack([img, img // 2, 255 - img]) if channels == 3 else img
        img = img.astype(dtype) * (257 if dtype == np.uint16 else 1)
        h, w = [(6, 9), (20, 14), (40, 30)][n % 3]
        jobs.append((img, box_mask(img.shape, 10 + 3 * n, 5 + 2 * n, h, w), 100 + n, ["crack", "blowhole"][n % 2]))
    return jobs


def assert_close(a: np.ndarray, b: np.ndarray, top: int = 255) -> int:
    """Max |a - b| in grey levels of 8 bits; asserts it is within TOLERANCE."""
    worst = int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max()) * 255 // top
    assert worst <= TOLERANCE, worst
    return worst


@pytest.mark.parametrize("channels,dtype,roi,rcd", [(1, np.uint8, True, True), (3, np.uint8, True, True),
                                                    (1, np.uint16, True, True), (1, np.uint8, False, True),
                                                    (1, np.uint8, False, False)])
def test_batched_jobs_match_one_at_a_time_and_keep_the_background(tmp_path, channels, dtype, roi, rcd):
    pipe = SardPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck", channels=channels), device="cpu")
    jobs = tiny_jobs(channels, dtype)
    alone = [pipe(image, mask, seed=seed, defect=d, roi=roi, rcd=rcd) for image, mask, seed, d in jobs]
    together = pipe.batch(jobs, size=4, roi=roi, rcd=rcd)
    assert max(r.timings["batch"]["size"] for r in together) == 4       # regions of one size shared calls
    for (image, mask, seed, d), a, b in zip(jobs, alone, together):
        assert b.image.shape == image.shape and b.image.dtype == image.dtype and b.seed == seed and b.defect == d
        assert_close(a.image, b.image, 65535 if dtype == np.uint16 else 255)
        assert np.array_equal(b.mask, a.mask) and b.roi == a.roi and b.frames == []
        if rcd:
            assert np.array_equal(b.image[~mask], image[~mask])           # the background, bit for bit
        if b.timings["batch"]["size"] == 1:                               # alone in its call: the same call
            assert np.array_equal(a.image, b.image)


def test_a_jobs_result_does_not_depend_on_its_batch_mates(tmp_path):
    pipe = SardPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck"), device="cpu")
    jobs = tiny_jobs()
    me = jobs[0]
    mates = [j for j in jobs[1:] if j[1].sum() == me[1].sum()]           # the same region size as `me`
    first = pipe.batch([me, *mates], size=8)[0]
    other = [(np.flipud(image).copy(), mask, seed + 1, d) for image, mask, seed, d in mates]   # other mates
    last = pipe.batch([*other, me], size=8)[-1]                                                 # at another place
    assert first.timings["batch"]["size"] == last.timings["batch"]["size"] == len(mates) + 1 > 1
    alone = pipe(*me[:2], seed=me[2], defect=me[3])
    assert_close(first.image, last.image)
    assert_close(first.image, alone.image)


def test_bad_batch_size_is_refused(tmp_path):
    pipe = SardPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck"), device="cpu")
    for bad in (0, -1, 1.5, float("nan")):
        with pytest.raises(SardInputError, match="batch"):
            pipe.batch(tiny_jobs()[:2], size=bad)


@requires_data
def test_shipped_checkpoint_batched_within_one_grey_level_on_real_tiles():
    """The default checkpoint (fit crops: large masks synthesize at a smaller scale) on real tiles."""
    synth = build("sard", device="cpu")
    normals = sorted((MAGNETIC_TILE / "train" / "good").iterdir())[:3]
    masks = sorted((MAGNETIC_TILE / "ground_truth" / "crack").iterdir())[:6]
    jobs = []
    for n, mfile in enumerate(masks):
        m = np.array(Image.open(mfile)) > 0
        image = np.array(Image.open(normals[n % 3]).convert("L").resize(m.shape[::-1]))
        jobs.append((image, m, 11 + n, "crack"))
    twins = [(image, mask, seed + 100, d) for image, mask, seed, d in jobs[:2]]   # regions of the same size
    together = synth.batch(jobs + twins, 8)
    assert max(r.timings["batch"]["size"] for r in together) > 1
    for (image, mask, seed, d), b in zip(jobs, together):
        a = synth(image, mask, seed, d)
        assert_close(a.image, b.image)
        assert np.array_equal(b.image[~mask], image[~mask])


def export(*args):
    return run_module("sard.export", *[str(a) for a in args])


def manifest(base: Path) -> list[dict]:
    return [json.loads(x) for x in (base / "manifest.jsonl").read_text().splitlines() if x.strip()]


def test_export_batch_4_regenerates_every_pair_bit_for_bit(tmp_path, tiny_data):
    ck = tiny_checkpoint(tmp_path / "ck")
    r = export("--checkpoint", ck, "--normals", tiny_data, "--per-type", "5", "--out", tmp_path / "out",
               "--seed", "2", "--batch", "4", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    base = tmp_path / "out" / "mt"
    lines = manifest(base)
    batched = [x for x in lines if "batch" in x]
    assert len(lines) == 10 and batched
    for x in batched:
        b = x["batch"]
        assert 1 < b["size"] == len(b["members"]) <= 4 and [x["defect"], x["index"]] in b["members"]
        assert len(b["shape"]) == 2
    for x in lines:
        img, mask = regenerate(x, manifest=lines)
        assert np.array_equal(img, read_image(base / x["image"])), (x["defect"], x["index"])
        assert np.array_equal(mask, np.array(Image.open(base / x["mask"])))
        src = read_image(x["source"])
        assert np.array_equal(img[mask == 0], src[mask == 0])
    with pytest.raises(SardInputError, match="manifest"):
        regenerate(batched[0])
    with pytest.raises(SardInputError, match="no line"):
        regenerate(batched[0], manifest=[batched[0]])


def test_export_batch_1_is_the_one_at_a_time_export(tmp_path, tiny_data):
    ck = tiny_checkpoint(tmp_path / "ck")
    args = ["--checkpoint", ck, "--normals", tiny_data, "--per-type", "3", "--seed", "4", "--device", "cpu"]
    assert export(*args, "--out", tmp_path / "plain").returncode == 0
    assert export(*args, "--out", tmp_path / "one", "--batch", "1").returncode == 0
    a, b = tmp_path / "plain" / "mt", tmp_path / "one" / "mt"
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    strip = lambda rows: [{k: v for k, v in x.items() if k != "seconds"} for x in rows]  # noqa: E731
    assert strip(manifest(a)) == strip(manifest(b))
    assert not any("batch" in x for x in manifest(b))       # lines as before: regenerate(line) alone


def test_a_baseline_export_ignores_batch(tmp_path, tiny_data):
    args = ["--method", "cutpaste", "--normals", tiny_data, "--masks", "ellipse", "--per-type", "3", "--seed", "1"]
    assert export(*args, "--out", tmp_path / "a").returncode == 0
    assert export(*args, "--out", tmp_path / "b", "--batch", "4").returncode == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_segmentation_pairs_batched_only_when_asked_and_in_their_own_folder(tmp_path, tiny_data):
    proto = seg_protocol.build_protocol(tiny_data, split_seed=0, defects=None)
    jobs = seg_protocol.make_jobs(proto.normals, proto.defects, 4, seed=0)
    method = common.parse_methods(f"sard={tiny_checkpoint(tmp_path / 'ck')}")[0]
    one = seg_pairs.pair_category(proto.data, 0, 0, method)
    assert one == f"mt-split0-seed0-{method.fingerprint}"[:64]          # the cache's folder name as before
    pairs1, s1 = seg_pairs.ensure_pairs(method, jobs, proto, tmp_path / "w", 0, 0, progress=False)
    pairs4, s4 = seg_pairs.ensure_pairs(method, jobs, proto, tmp_path / "w", 0, 0, progress=False, batch=4)
    assert Path(s1["folder"]).name == one and Path(s4["folder"]).name != one
    assert s4["written"] == len(pairs4) == len(pairs1) == 8 and not s4["failed"]
    for (d1, i1, m1), (d4, i4, m4) in zip(pairs1, pairs4):
        assert d1 == d4 and read_image(m1).tobytes() == read_image(m4).tobytes()
        assert_close(read_image(i1), read_image(i4))
    assert any("batch" in x for x in manifest(Path(s4["folder"])))


def test_export_batch_of_masks_refined_at_native_scale_regenerates_bit_for_bit(tmp_path, tiny_data):
    """A fit-crop checkpoint with a refine step: the scaled passes share calls, each refine pass runs alone."""
    ck = tiny_checkpoint(tmp_path / "ck")
    cfg = json.loads((ck / "config.json").read_text())
    cfg.update(fit_crops=0.5, res=8, refine=1, refine_carry=1.0, z_carry=8.0)   # res 8: every mask is refined
    (ck / "config.json").write_text(json.dumps(cfg))
    pipe = SardPipeline.from_pretrained(ck, device="cpu")
    r = export("--checkpoint", ck, "--normals", tiny_data, "--per-type", "5", "--out", tmp_path / "out",
               "--seed", "3", "--batch", "4", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    base = tmp_path / "out" / "mt"
    lines = manifest(base)
    refined = [x for x in lines if "batch" in x and pipe.scale_for(np.array(Image.open(base / x["mask"])) > 0) < 1]
    assert refined, "no refined pair shared a call"
    for x in lines:
        img, mask = regenerate(x, manifest=lines)
        assert np.array_equal(img, read_image(base / x["image"])), (x["defect"], x["index"])
    for x in refined:   # within a batched call's rounding of the pair made on its own
        mask = np.array(Image.open(base / x["mask"])) > 0
        alone = pipe(read_image(x["source"]), mask, seed=x["seed"], defect=x["defect"])
        assert len(alone.frames) == 5 and alone.frames[-1].scale == 1.0
        assert_close(alone.image, read_image(base / x["image"]))
