"""The data set readers on tiny layouts built here: BTAD and plain folders (MVTec-AD is what
`tiny_data` and the real data use), pairs matched by stem, normals and splits, and what a broken
layout is told."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import texture
from sard.data import defect_types, list_dataset, normals, split_defects
from sard.io import SardInputError


def put(path: Path, seed: int, mask: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask:
        a = np.zeros((32, 32), np.uint8)
        a[8 + seed % 8:16 + seed % 8, 10:20] = 255
    else:
        a = texture((32, 32), seed)
    Image.fromarray(a).save(path)
    return path


def rel(root: Path, p: Path | None) -> str | None:
    return None if p is None else p.relative_to(root).as_posix()


def test_btad_layout(tmp_path):
    root = tmp_path / "btad01"
    for i in range(3):
        put(root / "train" / "ok" / f"{i:04d}.bmp", i)
    put(root / "test" / "ok" / "0100.bmp", 100)
    for i in range(4):
        put(root / "test" / "ko" / f"{i:04d}.bmp", 10 + i)
        # BTAD names a mask like its image (.png); "_mask" is taken too
        put(root / "ground_truth" / "ko" / (f"{i:04d}.png" if i % 2 else f"{i:04d}_mask.png"), i, mask=True)
    samples = list_dataset(root)
    assert defect_types(samples) == ["ko"]
    assert [rel(root, s.image) for s in normals(samples, "train")] == [f"train/ok/{i:04d}.bmp" for i in range(3)]
    assert [rel(root, s.image) for s in normals(samples, "test")] == ["test/ok/0100.bmp"]
    pairs = [(rel(root, s.image), rel(root, s.mask), s.split) for s in samples if not s.is_normal]
    assert pairs == [("test/ko/0000.bmp", "ground_truth/ko/0000_mask.png", "test"),
                     ("test/ko/0001.bmp", "ground_truth/ko/0001.png", "test"),
                     ("test/ko/0002.bmp", "ground_truth/ko/0002_mask.png", "test"),
                     ("test/ko/0003.bmp", "ground_truth/ko/0003.png", "test")]
    assert all(s.defect == "good" for s in samples if s.is_normal)
    split = split_defects(samples)   # the synthesizer's share and the held-out rest take each defect image once
    assert sorted(s.image for s in split.synth + split.held_out) == sorted(s.image for s in samples if not s.is_normal)
    assert split.defects() == ["ko"]


def test_btad_defect_image_without_its_mask_is_named(tmp_path):
    root = tmp_path / "btad"
    put(root / "train" / "ok" / "0000.png", 0)
    put(root / "test" / "ko" / "0007.png", 7)
    put(root / "ground_truth" / "ko" / "0001.png", 1, mask=True)
    with pytest.raises(SardInputError, match=r"0007.png: defect image has no mask; expected .*ko/0007_mask.png"):
        list_dataset(root)


def test_plain_folder_with_defect_subfolders_and_normals(tmp_path):
    root = tmp_path / "plain"
    for d, defect in enumerate(("dent", "scratch")):
        for i in range(2):
            put(root / "images" / defect / f"{defect}{i}.jpg", 10 * d + i)
            put(root / "masks" / defect / f"{defect}{i}_mask.png", i, mask=True)
    put(root / "good" / "g0.png", 50)
    put(root / "normal" / "n0.png", 51)
    (root / "images" / "notes.txt").write_text("not an image")   # ignored
    samples = list_dataset(root)
    assert defect_types(samples) == ["dent", "scratch"]
    assert [(rel(root, s.image), rel(root, s.mask)) for s in samples if not s.is_normal] == [
        ("images/dent/dent0.jpg", "masks/dent/dent0_mask.png"), ("images/dent/dent1.jpg", "masks/dent/dent1_mask.png"),
        ("images/scratch/scratch0.jpg", "masks/scratch/scratch0_mask.png"),
        ("images/scratch/scratch1.jpg", "masks/scratch/scratch1_mask.png")]
    assert [rel(root, s.image) for s in normals(samples, "train")] == ["good/g0.png", "normal/n0.png"]


def test_plain_flat_folder_is_one_defect_type_with_masks_named_as_images(tmp_path):
    root = tmp_path / "flat"
    for i in range(3):
        put(root / "images" / f"p{i}.png", i)
        put(root / "masks" / f"p{i}.png", i, mask=True)
    samples = list_dataset(root)
    assert [(s.defect, rel(root, s.image), rel(root, s.mask), s.split) for s in samples] == [
        ("defect", f"images/p{i}.png", f"masks/p{i}.png", "test") for i in range(3)]
    assert normals(samples) == []


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no_masks"])
def test_a_broken_layout_is_named_with_what_is_expected(tmp_path, case):
    root = tmp_path / "d"
    if case == "file":
        root.write_text("x")
    elif case == "empty":
        (root / "images").mkdir(parents=True)
    elif case == "no_masks":
        put(root / "images" / "a.png", 0)
    expected = {"missing": "does not exist", "file": "is a file", "empty": "holds no images",
                "no_masks": r"a.png: defect image has no mask"}[case]
    with pytest.raises(SardInputError, match=expected) as e:
        list_dataset(root)
    assert case == "no_masks" or "plain folder (images/ + masks/" in str(e.value)
