"""python -m sard.export: layout, manifest, regeneration, kill-and-resume, sharding, bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_killed, run_module, texture, tiny_checkpoint
from sard.data import list_dataset
from sard.export import main as export_main
from sard.pair_recipe import regenerate
from sard.pairs import PairWriter
from sard.io import SardInputError, read_image


def normals_dir(tmp_path: Path, n: int = 6, size=(96, 80)) -> Path:
    """A folder of small synthetic normal tiles."""
    d = tmp_path / "normals"
    d.mkdir()
    for i in range(n):
        Image.fromarray(texture(size, 50 + i)).save(d / f"n{i:02d}.png")
    return d


def export(*args, **kw):
    return run_module("sard.export", *args, **kw)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_layout_is_read_back_by_the_mvtec_reader_and_manifest_regenerates_pairs(tmp_path, tiny_data):
    ck = tiny_checkpoint(tmp_path / "ck")
    out = tmp_path / "out"
    r = export("--method", "sard", "--checkpoint", ck, "--normals", tiny_data, "--masks", "bank",
               "--per-type", "3", "--out", out, "--copy-normals", "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert "pairs/s" in r.stderr
    base = out / "mt"
    samples = list_dataset(base)
    defects = sorted({s.defect for s in samples if not s.is_normal})
    assert defects == ["blowhole", "crack"]
    pairs = [s for s in samples if not s.is_normal]
    assert len(pairs) == 6 and len([s for s in samples if s.is_normal]) == 4
    for s in pairs:
        m = Image.open(s.mask)
        assert m.mode == "L" and s.mask.suffix == ".png"
        assert set(np.unique(np.array(m))) == {0, 255}
    manifest = lines(base / "manifest.jsonl")
    assert len(manifest) == 6 and len({(x["defect"], x["index"]) for x in manifest}) == 6
    rec = manifest[4]
    assert rec["method"] == "sard" and rec["checkpoint"] and rec["steps"] == 4 and rec["mask_params"]["kind"] == "bank"
    img, mask = regenerate(rec)
    assert np.array_equal(img, read_image(base / rec["image"]))
    assert np.array_equal(mask, np.array(Image.open(base / rec["mask"])))
    # the folder's sampler changed since (ModelConfig.z_carry): the pair is still made as it was
    cfg = json.loads((ck / "config.json").read_text())
    cfg["z_carry"] = cfg.get("z_carry", 0) + 4
    (ck / "config.json").write_text(json.dumps(cfg))
    img2, _ = regenerate(rec)
    assert np.array_equal(img2, img)
    now = export("--method", "sard", "--checkpoint", ck, "--normals", tiny_data, "--masks", "bank",
                 "--per-type", "3", "--out", tmp_path / "now", "--seed", "5")
    assert now.returncode == 0, now.stderr
    again = lines(tmp_path / "now" / "mt" / "manifest.jsonl")[4]
    assert again["method_params"]["checkpoint_hash"].endswith(f"-zc{cfg['z_carry']:g}")
    assert np.array_equal(regenerate(again)[0], read_image(tmp_path / "now" / "mt" / again["image"]))


@pytest.mark.parametrize("method", ["cutpaste", "draem", "glass"])
def test_baselines_export_and_regenerate(tmp_path, method):
    out = tmp_path / "out"
    r = export("--method", method, "--normals", normals_dir(tmp_path), "--masks", "ellipse", "--area", "0.01,0.05",
               "--defects", "spot", "--per-type", "2", "--out", out, "--category", "tiles")
    assert r.returncode == 0, r.stderr
    rec = lines(out / "tiles" / "manifest.jsonl")[1]
    img, mask = regenerate(rec, sources=sorted((tmp_path / "normals").iterdir()))
    saved = read_image(out / "tiles" / rec["image"])
    assert np.array_equal(mask, np.array(Image.open(out / "tiles" / rec["mask"])))
    assert np.array_equal(img, saved)
    src = read_image(rec["source"])
    assert np.array_equal(saved[mask == 0], src[mask == 0])


def test_rerun_skips_what_is_there_and_never_overwrites(tmp_path):
    out, normals = tmp_path / "out", normals_dir(tmp_path)
    args = ["--method", "cutpaste", "--normals", normals, "--masks", "polygon", "--defects", "a,b",
            "--per-type", "2", "--out", out, "--category", "c"]
    assert export(*args).returncode == 0
    first = out / "c" / "test" / "a" / "000.png"
    stamp = first.stat().st_mtime_ns
    r = export(*args[:-4], "--per-type", "3", "--out", out, "--category", "c")
    assert r.returncode == 0 and "2 pairs written, 4 already there" in r.stderr
    assert first.stat().st_mtime_ns == stamp
    assert len(lines(out / "c" / "manifest.jsonl")) == 6


def tree(base: Path) -> dict[str, bytes]:
    """Every pair file under an export folder, by relative path (the manifest apart)."""
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*.png"))}


def without_timing(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows), key=lambda r: (r["defect"], r["index"]))


KILL_ARGS = ["--method", "cutpaste", "--masks", "ellipse", "--defects", "a,b", "--per-type", "2", "--category", "c"]


@pytest.mark.parametrize("func,k", [("replace", 1), ("replace", 2), ("replace", 3), ("replace", 4),
                                    ("write", 1), ("write", 2)])
def test_a_kill_at_each_write_boundary_then_a_rerun_gives_exactly_the_pairs(tmp_path, func, k):
    """os.replace k: 1 kills between the manifest line and the image rename, 2 between the image and
    the mask renames (then the same for the second pair); os.write: a manifest line cut mid-write."""
    normals = normals_dir(tmp_path)
    assert export_main([*KILL_ARGS, "--normals", str(normals), "--out", str(tmp_path / "ref")]) == 0
    ref = tmp_path / "ref" / "c"
    out = tmp_path / "out"
    r = run_killed(func, k, "sard.export", *KILL_ARGS, "--normals", normals, "--out", out)
    assert r.returncode == 137, r.stderr
    left = tree(out / "c")
    assert len(left) < len(tree(ref)), "the kill came before the last file"
    if k % 2 == 0 and func == "replace":   # between the renames: an image without its mask
        assert sum(n.startswith("test/") for n in left) > sum(n.startswith("ground_truth/") for n in left)
    assert export_main([*KILL_ARGS, "--normals", str(normals), "--out", str(out)]) == 0
    assert tree(out / "c") == tree(ref)
    assert without_timing(lines(out / "c" / "manifest.jsonl")) == without_timing(lines(ref / "manifest.jsonl"))
    assert len(lines(out / "c" / "manifest.jsonl")) == 4
    assert not list((out / "c").rglob("*.tmp"))


def crack_export(tmp_path: Path, per_type: int) -> tuple[list[str], Path]:
    """Arguments of a cutpaste export of `per_type` cracks, run once; and its category folder."""
    args = ["--method", "cutpaste", "--normals", str(normals_dir(tmp_path)), "--masks", "ellipse",
            "--defects", "crack", "--per-type", str(per_type), "--out", str(tmp_path / "x")]
    assert export_main(args) == 0
    return args, tmp_path / "x" / "normals"


def test_a_pair_missing_its_mask_is_checked_and_completed(tmp_path):
    args, base = crack_export(tmp_path, 5)
    before = tree(base)
    image = base / "test" / "crack" / "002.png"
    stamp = image.stat().st_mtime_ns
    (base / "ground_truth" / "crack" / "002_mask.png").unlink()
    assert export_main(args) == 0
    assert tree(base) == before and image.stat().st_mtime_ns == stamp   # the image kept, its mask made again
    assert len(lines(base / "manifest.jsonl")) == 5


def test_a_half_pair_that_differs_is_replaced_and_its_line_follows(tmp_path):
    args, base = crack_export(tmp_path, 2)
    before = tree(base)
    (base / "ground_truth" / "crack" / "001_mask.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(base / "test" / "crack" / "001.png")   # not this run's
    assert export_main(args) == 0
    assert tree(base) == before
    assert len(lines(base / "manifest.jsonl")) == 2


def test_growing_an_export_from_10_to_1001_keeps_every_name(tmp_path):
    normals, out = normals_dir(tmp_path, n=2, size=(24, 24)), tmp_path / "g"
    args = ["--method", "cutpaste", "--normals", str(normals), "--masks", "ellipse", "--defects", "d",
            "--out", str(out), "--category", "g"]
    assert export_main([*args, "--per-type", "10"]) == 0
    first = tree(out / "g")
    assert export_main([*args, "--per-type", "1001"]) == 0
    names = sorted(p.name for p in (out / "g" / "test" / "d").iterdir())
    assert len(names) == 1001 and "0000.png" not in names and {"000.png", "999.png", "1000.png"} <= set(names)
    assert all(tree(out / "g")[n] == b for n, b in first.items())
    manifest = lines(out / "g" / "manifest.jsonl")
    assert sorted(x["index"] for x in manifest) == list(range(1001))
    assert {x["image"] for x in manifest} == {f"test/d/{n}" for n in names}


def test_manifest_paths_stay_inside_the_category_folder(tmp_path):
    base = tmp_path / "r" / "c"
    base.mkdir(parents=True)
    rec = {"defect": "d", "index": 0, "image": "../../evil.png", "mask": "ground_truth/d/000_mask.png"}
    (base / "manifest.jsonl").write_text(json.dumps(rec) + "\n")
    w = PairWriter(tmp_path / "r", "c")
    with pytest.raises(SardInputError, match="outside"):
        w.write("d", 0, np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8), {})
    assert not (tmp_path / "evil.png").exists()


def test_writer_add_writes_a_pair_once(tmp_path):
    w = PairWriter(tmp_path, "s")
    img, m = texture((16, 16), 1), np.eye(16, dtype=np.uint8)
    rec, new = w.add("crack", img, m, {"seed": 1})
    again, new2 = PairWriter(tmp_path, "s").add("crack", img, m, {"seed": 1})
    other, new3 = w.add("crack", img, 1 - m, {"seed": 2})
    assert (new, new2, new3) == (True, False, True)
    assert again["image"] == rec["image"] and other["image"] != rec["image"]
    assert len(lines(tmp_path / "s" / "manifest.jsonl")) == 2


def test_shards_write_disjoint_pairs_into_one_folder(tmp_path):
    out, normals = tmp_path / "out", normals_dir(tmp_path)
    base = ["--method", "cutpaste", "--normals", normals, "--masks", "scratch", "--defects", "s",
            "--per-type", "7", "--out", out, "--category", "sh"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "sard.export", *map(str, base), "--shard", f"{i}/2"], cwd=REPO,
                              env=env, stderr=subprocess.PIPE, text=True) for i in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert "4 pairs written" in errs[0] and "3 pairs written" in errs[1]
    manifest = lines(out / "sh" / "manifest.jsonl")
    assert sorted(x["index"] for x in manifest) == list(range(7))
    assert len(list((out / "sh" / "test" / "s").iterdir())) == 7


# -- bad input --------------------------------------------------------------------------------------
def test_empty_normals_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = export("--method", "cutpaste", "--normals", tmp_path / "empty", "--masks", "ellipse", "--out", tmp_path / "o")
    assert r.returncode == 2 and "holds no normal images" in r.stderr


def test_unreadable_images_are_skipped_listed_and_the_run_goes_on(tmp_path):
    normals = normals_dir(tmp_path)
    (normals / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    data = (normals / sorted(os.listdir(normals))[1]).read_bytes()
    (normals / "truncated.png").write_bytes(data[: len(data) // 2])
    r = export("--method", "cutpaste", "--normals", normals, "--masks", "ellipse", "--defects", "d",
               "--per-type", "12", "--out", tmp_path / "o", "--category", "u")
    assert r.returncode == 0, r.stderr
    assert "unreadable normal images skipped" in r.stderr
    assert "broken.png" in r.stderr and "truncated.png" in r.stderr
    assert len(lines(tmp_path / "o" / "u" / "manifest.jsonl")) == 12


def test_mask_folder_of_other_sizes_needs_resize_masks(tmp_path):
    normals = normals_dir(tmp_path)
    masks = tmp_path / "masks"
    masks.mkdir()
    m = np.zeros((40, 30), np.uint8)
    m[10:20, 5:15] = 255
    Image.fromarray(m).save(masks / "m1.png")
    args = ["--method", "cutpaste", "--normals", normals, "--masks", masks, "--defects", "d", "--per-type", "2",
            "--out", tmp_path / "o", "--category", "m"]
    r = export(*args)
    assert r.returncode == 2 and "m1.png" in r.stderr and "--resize-masks" in r.stderr
    r = export(*args, "--resize-masks")
    assert r.returncode == 0, r.stderr
    saved = np.array(Image.open(tmp_path / "o" / "m" / "ground_truth" / "d" / "000_mask.png"))
    assert saved.shape == (96, 80) and saved.max() == 255


@pytest.mark.parametrize("kind", ["huge", "bomb"])
def test_oversized_images_are_refused_with_the_limit(tmp_path, kind):
    normals = tmp_path / "n"
    normals.mkdir()
    if kind == "huge":   # 60 megapixels (a 1-bit image keeps the file small)
        Image.new("1", (10000, 6000)).save(normals / "huge.png")
    else:                # a PNG whose header claims 200 000 x 200 000 pixels
        Image.new("1", (200000, 2000)).save(normals / "bomb.png")
    r = export("--method", "cutpaste", "--normals", normals, "--masks", "ellipse", "--defects", "d",
               "--per-type", "1", "--out", tmp_path / "o", "--category", "b")
    assert r.returncode == 2
    assert "50 megapixels" in r.stderr


@pytest.mark.parametrize("n", ["0", "-3"])
def test_per_type_must_be_positive(tmp_path, n):
    r = export("--method", "cutpaste", "--normals", tmp_path, "--per-type", n, "--out", tmp_path / "o")
    assert r.returncode == 2 and "--per-type" in r.stderr


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    r = export("--method", "cutpaste", "--normals", normals_dir(tmp_path), "--masks", "ellipse",
               "--per-type", "1", "--out", tmp_path / "file")
    assert r.returncode == 2 and "is a file" in r.stderr


def test_full_disk_leaves_no_partial_file_and_says_how_many_were_written(tmp_path):
    """The disk fills at the 9th fsync (three a pair: image, mask, manifest line; so the third pair's line)."""
    normals, out = normals_dir(tmp_path), tmp_path / "small"
    r = run_killed("fsync", 9, "sard.export", "--method", "draem", "--normals", normals, "--masks", "ellipse",
                   "--defects", "d", "--per-type", "40", "--out", out, "--category", "f", fault="enospc")
    assert r.returncode == 1, r.stderr
    assert "disk is full" in r.stderr and "free space" in r.stderr and "Traceback" not in r.stderr
    assert "pairs written in this run" in r.stderr and "no partial file" in r.stderr
    assert not list(out.rglob("*.tmp"))
    for p in out.rglob("*.png"):
        Image.open(p).load()   # every final file is complete
    written = int(r.stderr.split(" pairs written in this run")[0].split()[-1])
    assert written == 2 == len(list((out / "f" / "test" / "d").glob("*.png")))
    assert len(lines(out / "f" / "manifest.jsonl")) == 2


@pytest.mark.parametrize("bad", [["--seed", "-1"], ["--seed", str(2**70)], ["--out", "UNWRITABLE"]])
def test_bad_flags_exit_2_naming_the_flag_without_a_traceback(tmp_path, unwritable, bad):
    args = {"--method": "cutpaste", "--normals": str(normals_dir(tmp_path)), "--masks": "ellipse",
            "--out": str(tmp_path / "o"), "--per-type": "1"}
    args[bad[0]] = bad[1].replace("UNWRITABLE", str(unwritable))
    r = export(*[x for kv in args.items() for x in kv])
    assert r.returncode == 2 and bad[0] in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_folder_layout_is_read_back_by_the_plain_folder_reader(tmp_path):
    out, normals = tmp_path / "out", normals_dir(tmp_path, n=3)
    r = export("--method", "cutpaste", "--normals", normals, "--masks", "ellipse", "--defects", "dent,spot",
               "--per-type", "2", "--out", out, "--category", "flat", "--layout", "folder", "--copy-normals")
    assert r.returncode == 0, r.stderr
    base = out / "flat"
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("*.png")) == sorted(
        [f"images/{d}/{k:03d}.png" for d in ("dent", "spot") for k in range(2)] +
        [f"masks/{d}/{k:03d}.png" for d in ("dent", "spot") for k in range(2)] + [f"good/n{i:02d}.png" for i in range(3)])
    samples = list_dataset(base)
    assert sorted({s.defect for s in samples if not s.is_normal}) == ["dent", "spot"]
    assert [s.image.name for s in samples if s.is_normal] == ["n00.png", "n01.png", "n02.png"]
    for rec in lines(base / "manifest.jsonl"):
        assert rec["image"] == f"images/{rec['defect']}/{rec['index']:03d}.png"
        assert rec["mask"] == f"masks/{rec['defect']}/{rec['index']:03d}.png"
    r = export("--method", "cutpaste", "--normals", normals, "--out", out, "--layout", "zigzag", "--defects", "a")
    assert r.returncode == 2 and "--layout: expected mvtec or folder, got 'zigzag'" in r.stderr


def test_link_normals_symlinks_train_good_and_a_rerun_keeps_them(tmp_path):
    out, normals = tmp_path / "out", normals_dir(tmp_path, n=3)
    args = ["--method", "cutpaste", "--normals", normals, "--masks", "ellipse", "--defects", "spot",
            "--per-type", "1", "--out", out, "--category", "c", "--link-normals"]
    assert export(*args).returncode == 0
    good = sorted((out / "c" / "train" / "good").iterdir())
    assert [p.name for p in good] == ["n00.png", "n01.png", "n02.png"]
    assert all(p.is_symlink() and p.resolve() == (normals / p.name).resolve() for p in good)
    r = export(*args, "--per-type", "2")   # a rerun adds a pair (the last flag counts), links stay
    assert r.returncode == 0, r.stderr
    assert sorted((out / "c" / "train" / "good").iterdir()) == good and all(p.is_symlink() for p in good)
    assert len(lines(out / "c" / "manifest.jsonl")) == 2


def part_images(tmp_path: Path, n: int = 3) -> Path:
    """Objects on a dark background: a bright textured disk in the middle of each image."""
    d = tmp_path / "parts"
    d.mkdir()
    yy, xx = np.mgrid[:96, :96]
    disk = (yy - 48) ** 2 + (xx - 48) ** 2 < 22 ** 2
    for i in range(n):
        a = np.full((96, 96), 15, np.uint8)
        a[disk] = 150 + texture((96, 96), i)[disk] // 4
        Image.fromarray(a).save(d / f"part{i}.png")
    return d


def test_on_part_keeps_every_mask_on_the_part_and_is_the_default_for_objects(tmp_path):
    parts = part_images(tmp_path)
    disk = np.array(Image.open(parts / "part0.png")) > 100
    common = ["--method", "cutpaste", "--normals", parts, "--masks", "ellipse", "--area", "0.01,0.03",
              "--defects", "dent", "--per-type", "8"]
    assert export(*common, "--out", tmp_path / "on", "--on-part").returncode == 0
    r = export(*common, "--out", tmp_path / "auto")
    assert r.returncode == 0 and "masks on the part: 8" in r.stderr, r.stderr
    assert export(*common, "--out", tmp_path / "off", "--on-part", "off").returncode == 0
    off_part = {}
    for run in ("on", "auto", "off"):
        base = tmp_path / run / "parts"
        recs = lines(base / "manifest.jsonl")
        assert len(recs) == 8 and all(r["mask_params"]["foreground"] == (run != "off") for r in recs)
        off_part[run] = sum(int((np.array(Image.open(base / r["mask"])) > 0)[~disk].sum()) for r in recs)
    assert off_part["on"] == off_part["auto"] == 0
    assert off_part["off"] > 0   # off: the masks land anywhere, the background too


def test_a_part_that_cannot_be_found_is_said_and_masks_go_anywhere(tmp_path):
    """A dark part on a background nearly as dark, with one bright highlight: Otsu keeps the highlight
    (a few pixels); auto mode says so and does not clip the masks to it."""
    d = tmp_path / "dark"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        a = rng.normal(20, 2, (96, 96))
        a[20:76, 20:76] += 4
        a[40:44, 40:44] = 250
        a = np.clip(a, 0, 255).astype(np.uint8)
        Image.fromarray(a).save(d / f"dark{i}.png")
    r = export("--method", "cutpaste", "--normals", d, "--masks", "ellipse", "--defects", "dent", "--per-type", "3",
               "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "the part could not be found: Otsu kept 0 % of the image" in r.stderr
    recs = lines(tmp_path / "out" / "dark" / "manifest.jsonl")
    assert len(recs) == 3 and not any(r["mask_params"]["foreground"] for r in recs)
    for rec in recs:      # regenerate holds: the record says no foreground was used
        assert rec["mask_params"]["foreground_crc"] is None


def test_bank_flag_takes_masks_from_another_data_set(tmp_path, tiny_data):
    normals = normals_dir(tmp_path, n=2, size=(64, 64))
    out = tmp_path / "out"
    r = export("--method", "cutpaste", "--normals", normals, "--masks", "bank", "--bank", tiny_data,
               "--per-type", "2", "--out", out, "--category", "banked")
    assert r.returncode == 0, r.stderr
    recs = lines(out / "banked" / "manifest.jsonl")
    assert sorted({r["defect"] for r in recs}) == ["blowhole", "crack"]   # the bank's defect types
    for r in recs:
        drawn = Path(r["mask_params"]["drawn"]["source"])
        assert r["mask_params"]["kind"] == "bank" and drawn.parent == tiny_data / "ground_truth" / r["defect"]
    r = export("--method", "cutpaste", "--normals", normals, "--masks", "bank", "--bank", tmp_path / "nope",
               "--per-type", "1", "--out", out)
    assert r.returncode == 2 and "nope" in r.stderr and "does not exist" in r.stderr


def test_no_resume_refuses_a_folder_with_pairs_and_changes_nothing(tmp_path):
    out, normals = tmp_path / "out", normals_dir(tmp_path, n=2)
    args = ["--method", "cutpaste", "--normals", normals, "--masks", "ellipse", "--defects", "spot",
            "--per-type", "2", "--out", out, "--category", "c", "--no-resume"]
    assert export(*args).returncode == 0   # a new folder: fine
    before = {p: p.read_bytes() for p in (out / "c").rglob("*") if p.is_file()}
    r = export(*args, "--per-type", "3")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "already holds 2 pairs and --no-resume was given" in r.stderr
    assert {p: p.read_bytes() for p in (out / "c").rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("flag,value", [("--steps", "0"), ("--steps", "9"), ("--bank-rotation", "nan"),
                                        ("--bank-rotation", "-1"), ("--category", "")])
def test_a_bad_flag_is_blamed_on_the_flag_not_on_an_image(tmp_path, flag, value):
    normals = normals_dir(tmp_path, n=2)
    r = export("--normals", normals, "--masks", "ellipse", "--per-type", "1", "--out", tmp_path / "o", flag, value)
    assert r.returncode == 2 and flag in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "normal image" not in r.stderr
    assert not list((tmp_path / "o").rglob("*.png"))


def test_an_export_into_a_category_made_otherwise_says_how_its_pairs_differ(tmp_path):
    normals = normals_dir(tmp_path, n=2)
    common = ["--normals", normals, "--per-type", "2", "--defects", "d", "--out", tmp_path / "o", "--category", "c"]
    assert export("--method", "cutpaste", "--masks", "ellipse", *common).returncode == 0
    r = export("--method", "draem", "--masks", "perlin", *common)
    assert r.returncode == 0, r.stderr
    assert "0 pairs written, 2 already there" in r.stderr
    assert "2 of the pairs already there were made otherwise" in r.stderr
    assert "method cutpaste (this run: draem)" in r.stderr and "masks ellipse (this run: perlin)" in r.stderr
    r = export("--method", "cutpaste", "--masks", "ellipse", *common)       # the same recipe: nothing to say
    assert "made otherwise" not in r.stderr


def test_a_huge_export_plan_costs_no_memory_up_front(tmp_path):
    from sard.pair_recipe import ExportPlan
    plan = ExportPlan([tmp_path / "n.png"], ["a", "b"], 10 ** 15, 0, (1, 3))
    assert plan.count() == (2 * 10 ** 15 - 1) // 3 + 1
    first = list(zip(range(4), plan.jobs()))
    assert [job for _, job in first] == [("a", 1), ("a", 4), ("a", 7), ("a", 10)]
    small = ExportPlan([tmp_path / "n.png"], ["a", "b"], 5, 0, (1, 3))
    assert list(small.jobs()) == [("a", 1), ("a", 4), ("b", 2)] and small.count() == 3


def test_a_normal_image_whose_name_is_not_utf8_is_skipped_saying_so_and_the_manifest_stays_strict_json(tmp_path):
    normals = normals_dir(tmp_path, n=2)
    os.rename(normals / "n01.png", os.path.join(os.fsencode(normals), b"n\xff.png"))
    r = export("--method", "cutpaste", "--masks", "ellipse", "--normals", normals, "--per-type", "4", "--defects", "d",
               "--out", tmp_path / "o", "--category", "c")
    assert r.returncode == 0, r.stderr
    assert "not valid UTF-8" in r.stderr and "n\\xff.png" in r.stderr
    raw = (tmp_path / "o" / "c" / "manifest.jsonl").read_bytes()
    assert b"\\ud" not in raw and len(raw.decode("utf-8", "strict").splitlines()) == 4


def test_a_per_type_the_disk_cannot_hold_is_refused_at_once_naming_the_largest_that_fits(tmp_path):
    normals = normals_dir(tmp_path, n=2)
    r = export("--method", "cutpaste", "--masks", "ellipse", "--normals", normals, "--per-type", str(10 ** 15),
               "--defects", "a,b", "--out", tmp_path / "o", timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--per-type 1000000000000000" in r.stderr and "a type fit" in r.stderr
    fits = int(r.stderr.split("at most ")[1].split()[0])
    assert 0 < fits < 10 ** 15 and not list((tmp_path / "o").rglob("*.png"))
