"""The segmentation benchmark's protocol: which real images train, validate and test, the mask bank,
and the synthesis job list every method shares.

Per defect type a deterministic third of the real defects (sard.data.split_defects, --split-seed)
trains the synthesizers; the other two thirds plus test/good are the test set. Of the third, the last
quarter (VAL_SHARE, at least one image left to train on) is the validation split, with VAL_GOOD
train/good images; the rest trains every segmenter and forms the mask bank. `assert_disjoint` checks
by path that no test image reaches training, validation, synthesis or the bank. Job k of a type is a
pure function of (--seed, type, k), so every synthetic method fills the same bank mask on the same
normal image. How the protocol and its defaults were chosen: reports/segmentation_protocol.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sard.data import list_dataset, normal_images, split_defects
from sard.data.readers import Sample
from sard.io import SardInputError, read_mask
from sard.masks import MaskBank
from sard.pair_recipe import PairJob
from sard.validate import check_defects

VAL_SHARE = 0.25         # of each type's real training third: the validation split (threshold choice)
VAL_GOOD = 20            # train/good images held out for validation (never backgrounds of pairs)
TEXTURE_SOURCES = 50     # train/good images DRAEM and GLASS take textures from


@dataclass
class Protocol:
    data: Path
    defects: list[str]
    train_real: list[Sample]        # the synthesizer third (masks non-empty) less validation: in every training set
    val_defects: list[Sample]       # validation: a share of each type's synthesizer third, never trained on
    val_good: list[Sample]          # validation normals, from train/good (not backgrounds of pairs)
    test_defects: list[Sample]      # held-out defect images with non-empty masks
    test_good: list[Sample]         # normal images of the test split
    normals: list[Path]             # train/good: backgrounds of the synthetic pairs
    textures: list[Path]            # DRAEM / GLASS texture sources (some of the normals)
    bank: MaskBank                  # of train_real (validation masks left out)
    skipped: list[str]              # samples left out, with why


def _nonempty(samples: list[Sample], skipped: list[str]) -> list[Sample]:
    keep = []
    for s in samples:
        try:
            m = read_mask(s.mask)
        except SardInputError as e:
            skipped.append(str(e))
            continue
        if m.any():
            keep.append(s)
        else:
            skipped.append(f"{s.mask}: empty mask ({s.defect}), not a defect example")
    return keep


def _pick_types(data: Path, all_types: list[str], defects: list[str] | int | None) -> tuple[list[str], bool]:
    """The types asked for (an int: the first n, sorted) and whether they were given by name."""
    named = isinstance(defects, list) and bool(defects)
    if isinstance(defects, int):
        return all_types[:defects], named
    if named:
        check_defects(sorted(set(defects)), all_types, str(data))
        return defects, named
    return all_types, named


def _real_defects(data: Path, samples: list[Sample], split_seed: int, defects: list[str] | int | None,
                  skipped: list[str]) -> tuple[list[str], list[Sample], list[Sample], list[Sample]]:
    """The usable types and their real (train, validation, test) defect images. Types given by name
    must be usable; of the default types, those left with no training mask or no held-out image are
    dropped (and said so)."""
    defects, named = _pick_types(data, sorted({s.defect for s in samples if not s.is_normal}), defects)
    split = split_defects(samples, split_seed)
    train_real = _nonempty([s for s in split.synth if s.defect in defects], skipped)
    test_defects = _nonempty([s for s in split.held_out if s.defect in defects], skipped)
    unusable = [d for d in defects if not any(s.defect == d for s in train_real)
                or not any(s.defect == d for s in test_defects)]
    if unusable and named:
        raise SardInputError(f"--defects: {unusable} in {data} lack a non-empty training mask or a held-out image "
                             f"(a type needs at least 2 usable defect images)")
    for d in unusable:
        skipped.append(f"type '{d}': dropped, no non-empty training mask or no held-out image")
    defects = [d for d in defects if d not in unusable]
    if not defects:
        raise SardInputError(f"--data {data}: no defect type with masks to train on and images to test on")
    train_real = [s for s in train_real if s.defect in defects]
    val_defects = []
    for d in defects:                    # the last share of each type's (shuffled) third; one stays to train on
        of_type = [s for s in train_real if s.defect == d]
        val_defects += of_type[len(of_type) - min(len(of_type) - 1, math.ceil(VAL_SHARE * len(of_type))):]
    train_real = [s for s in train_real if s not in val_defects]
    test_defects = [s for s in test_defects if s.defect in defects]
    return defects, train_real, val_defects, test_defects


def _normals(data: Path, samples: list[Sample], skipped: list[str]) -> tuple[list[Path], list[Sample], list[Sample]]:
    """(backgrounds of pairs, validation normals, test normals). A layout without test normals (plain
    folder) gives every 10th normal image to the test set."""
    normals = normal_images(samples, "train", fallback=False)
    good = [s for s in samples if s.is_normal and s.split == "test"]
    if not normals and not good:
        raise SardInputError(f"--data {data}: no normal images (train/good, train/ok or good/); the synthesizers "
                             f"need them as backgrounds and the false-alarm rate needs some to test on")
    if not good:
        if len(normals) < 2:
            raise SardInputError(f"--data {data}: only {len(normals)} normal image; need at least 2 (backgrounds "
                                 f"and the false-alarm test)")
        good = [Sample(p, None, "good", "test") for p in normals[::10]]
        normals = [p for k, p in enumerate(normals) if k % 10]
        skipped.append(f"no test normals: every 10th normal image ({len(good)}) is held out for the false-alarm rate")
    n_val = min(VAL_GOOD, len(normals) // 4)
    val_good = [Sample(x, None, "good", "train") for x in normals[::max(1, len(normals) // max(1, n_val))][:n_val]]
    normals = [x for x in normals if x not in {v.image for v in val_good}]
    if not normals:
        raise SardInputError(f"--data {data}: no normal training images (train/good or train/ok); the synthesizers "
                             f"need them as backgrounds")
    return normals, val_good, good


def build_protocol(data: Path, split_seed: int, defects: list[str] | int | None) -> Protocol:
    """The split, the test set and the mask bank, checked disjoint."""
    samples = list_dataset(data)
    skipped: list[str] = []
    defects, train_real, val_defects, test_defects = _real_defects(data, samples, split_seed, defects, skipped)
    normals, val_good, good = _normals(data, samples, skipped)
    p = Protocol(data, list(defects), train_real, val_defects, val_good, test_defects, good, normals,
                 normals[:TEXTURE_SOURCES], MaskBank.from_samples(train_real), skipped)
    assert_disjoint(p)
    return p


def assert_disjoint(p: Protocol) -> None:
    """No test image (held-out defects, test/good) is a training or validation image, a synthesis
    background or texture, or a mask of the bank; no validation image is a training image, a
    background, a texture or a bank mask. Checked on resolved paths. Raises AssertionError otherwise
    (an explicit raise, so python -O does not drop it)."""
    def res(paths):
        return {Path(x).resolve() for x in paths}
    test_images = res([s.image for s in p.test_defects] + [s.image for s in p.test_good])
    test_masks = res([s.mask for s in p.test_defects])
    val_images = res([s.image for s in p.val_defects + p.val_good])
    val_masks = res([s.mask for s in p.val_defects])
    seen_images = res([s.image for s in p.train_real] + p.normals + p.textures)
    bank_masks = res([m for d in p.bank.defects for m in p.bank.sources(d)])
    bad = (sorted(test_images & (seen_images | val_images)) + sorted(test_masks & (bank_masks | val_masks))
           + sorted(test_images & bank_masks) + sorted(val_images & seen_images) + sorted(val_masks & bank_masks))
    if bad:
        raise AssertionError(f"{len(bad)} test files reach training, synthesis or the mask bank, e.g. {bad[0]}")


def make_jobs(normals: list[Path], defects: list[str], n: int, seed: int) -> dict[str, list[PairJob]]:
    """Per type the n jobs every synthetic method does; job k depends on (seed, type, k) only, so the
    list for n is a prefix of the list for any larger n."""
    return {d: [PairJob.of(normals, seed, d, k, synth_stream=3) for k in range(n)] for d in defects}
