"""python -m sard.evaluate segmentation: do a method's synthetic pairs help a segmenter? (issue 11)

Protocol
--------
1. Split (sard.data.split_defects, --split-seed): per defect type a deterministic third of the real
   defects trains the synthesizers; the other two thirds plus test/good are the test set. Of the
   third, the last quarter (VAL_SHARE, at least one image left to train on) is the validation
   split, with VAL_GOOD train/good images; the rest trains every segmenter and forms the mask bank.
   `assert_disjoint` checks by path that no test image reaches training, validation, synthesis or
   the bank, and no validation image reaches training, synthesis or the bank (SARD checkpoints must
   have been trained with the same split seed; a mismatch is refused).
2. One job list per defect type, k = 0..N-1: (normal image of train/good, mask seed, synthesis
   seed), a pure function of (--seed, type, k). Every synthetic method fills the same bank mask
   on the same normal image; pairs are cached at native size in <work>/pairs/<method>/.
3. Equal real exposure (seg_train.py): each batch holds a fixed share of real pairs
   (--real-fraction, one arm per value), drawn by a stream that depends on the seed alone, and the
   rest synthetic; Real only trains on that real stream alone. Real share 0 is the synthetic-only
   arm: it measures the synthesis itself. One segmenter per (method, arm, backbone, seed).
4. Native scale (--res 0): patches of --crop px cut from the images as they are, half centred on a
   defect, so a 20 px blowhole stays 20 px; at test time the fully convolutional net sees each
   whole image at native size. (--res N resizes whole images to N x N first, the old protocol.)
5. Scores: the threshold of best F1 on the validation split (its defects and normals pooled),
   never on the test set. Per type, over its test images plus all test/good images: pixel AP and
   IoU / F1 at that threshold; the false-alarm rate on test/good; the paper's IoU / Acc on defect
   images alone as secondary columns (sard.metrics). References "All defect" and "All background"
   (constant scores) and Real only sit in every table; seg_report.py gives the convergence verdict.
Every run is cached as one gzipped JSON in --results (default <work>/runs/; atomic), named by the hash of all it
depends on: a run stopped anywhere resumes at the first missing segmenter, so a benchmark may span
sessions; the committed reports/<category>/cache/ keeps them across fresh checkouts.

Steps: how the default was chosen (Real only, unet, seed 0, lr 2e-3, 4 real 64 px patches a step;
AP / pooled IoU / false alarms on test/good, means over types; one-off scripts over the library's
build_protocol, load_training, train_segmenter and evaluate; timings with another job on the other core):
  magnetic_tile, loss per tenth of the steps (last two) and figures:
     800 steps   1.17, 1.15 (falling)            9.1 /  3.7 / 100 %
    3000                                        15.9 /  6.0 / 100 %
    6000        0.73, 0.70 (-4.5 %)             40.0 / 12.6 /  95 %   7.5 min of training
   12000 (*)    0.49, 0.48 (-2.7 %)             49.4 / 18.0 /  93 %  15 min
   20000        0.44, 0.43 (-1.8 %)             50.3 / 18.7 /  97 %  24.5 min
  (*) with 100 train/good images as negatives (half the patches defect-centred, half from goods);
  at 6000 steps those negatives gave 38.3 / 11.6 / 99 %, the same as without.
  bottle, 6000 steps: 0.44, 0.41 (-8 %)        87.9 / 67.5 /  80 %   7.5 min
Default: 6000 steps. AP rises 40 -> 49 from 6000 to 12000 steps while the loss flattens; 12000 would
double the default run (magnetic tile: about 8 h on both cores instead of 4 h), so 6000 it is, and the
report prints Real only's loss by tenths so the reader sees how flat it was.
False alarms: no setting tried brings Real only under 30 % of the good tiles at the validation
threshold. Tried: more steps (above), good images as negatives (above; 2500-5000 steps with a quarter
of the patches defect-centred: 99-100 %), 128 px patches (1500 steps: 100 %), images at half scale
(6000 steps: 24.1 / 9.1 / 100 %), lr 5e-3 (6000 steps: 25.0 / 10.6 / 98 %). On a good tile the net
paints broad confident regions over smoothly shaded areas and along the tile's border: what 'uneven'
(a brightness change over much of a tile, loosely outlined) and 'fray' / 'break' (at the border) teach
~100 images from scratch. Fixed thresholds trade hits for false alarms at once (6000 steps, regions of
>= 10 px): threshold 0.9 / 0.98 / 0.99 -> false alarms 95 / 54 / 31 %, defect images hit 93 / 82 / 73 %,
pooled IoU 16.8 / 3.1 / 1.5 %; regions >= 100 px at 0.98: false alarms 6 %, but 44 % of defect images
hit. So the verdict ranks by AP and pooled IoU (both charge false-alarm pixels) and warns about the
image-level false alarms (seg_report.py).
Cost of the default run on magnetic_tile (references, real, cutpaste, draem, glass, ddgan, w_rcd,
w_dmg, sard; unet; 3 seeds; arms 0.5 and 0 -> 3 + 7 x 2 x 3 = 45 segmenters): a mixed-arm segmenter
(8 patches a step) about 0.13 s a step, Real only and the synthetic-only arm (4 patches, arm_batch)
0.073 s; test about 60 s each: 21 x 13 + 24 x 7.3 + 45 x 1 min ~ 500 min on one core, plus the
synthesis (~30 min). Two processes on disjoint --methods lists with one --work share the cache (the
run keys and pair folders do not collide), then a last run over all methods only reads the cache and
writes the report. Any run resumes at the first missing segmenter.
`--quick` (CI): the first 2 types, 6 pairs per type, 40 steps, 1 seed.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import re
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from sard.data import list_dataset, normal_images, split_defects
from sard.data.readers import Sample
from sard.evaluation.seg_report import chart_png, markdown, seed_summary, verdict
from sard.evaluation.seg_train import SegData, SegTrainConfig, predict, train_segmenter
from sard.imaging import match_channels
from sard.io import SardInputError, atomic_write_bytes, read_image, read_mask
from sard.metrics import (SCORE_BINS, ScoreCounts, average_precision, best_threshold, false_alarm, nanmean,
                          score_bins)
from sard.nets.segmentation import SEGMENTERS
from sard.pair_recipe import PairJob
from sard.store.model_folder import CONFIG_NAME, WEIGHTS_NAME, ModelConfig
from sard.store.tensors import file_hash
from sard.validate import check_defects

BASELINES = ("cutpaste", "draem", "glass")
ABLATION = ("ddgan", "w_rcd", "w_dmg", "sard")   # Table IV columns, in the paper's order
LABELS = {"real": "Real only", "cutpaste": "CutPaste", "draem": "DRAEM", "glass": "GLASS", "ddgan": "DDGAN",
          "w_rcd": "w/ RCD", "w_dmg": "w/ DMG", "sard": "SARD"}
REFERENCES = {"all_defect": 1.0, "all_background": 0.0}   # constant defect scores, no training
LABELS.update({"all_defect": "All defect", "all_background": "All background"})
ABLATION_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "ablations"   # <category>/<variant>/
DEFAULTS = {"backbones": "unet", "seeds": 3, "pairs_per_type": 40,
            "res": 0, "crop": 64, "iters": 6000, "batch": 8, "lr": 2e-3, "real_fraction": "0.5,0", "defects": None}
QUICK = {"seeds": 1, "pairs_per_type": 6, "iters": 40, "defects": 2}   # defects, an int: the first n types (sorted)
VAL_SHARE = 0.25         # of each type's real training third: the validation split (threshold choice)
VAL_GOOD = 20            # train/good images held out for validation (never backgrounds of pairs)
TEXTURE_SOURCES = 50     # train/good images DRAEM and GLASS take textures from
PAIR_DIGITS = 4          # file names NNNN.png: up to 10000 pairs per type
MAX_PAIRS = 10 ** PAIR_DIGITS
SAFE = re.compile(r"[^A-Za-z0-9_.-]")
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
TYPE_KEYS = ("AP", "IoU", "F1", "IoU_paper", "Acc_paper")


# -- methods ------------------------------------------------------------------------------------------

@dataclass
class Method:
    name: str                      # real, a baseline, or any label of a SARD checkpoint
    checkpoint: Path | None
    fingerprint: str               # what the pairs depend on besides the jobs
    config: ModelConfig | None = None     # a SARD checkpoint's

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    @property
    def synthetic(self) -> bool:
        return self.name != "real"


def parse_methods(text: str) -> list[Method]:
    """'real,cutpaste,sard=DIR' -> checked Methods; SardInputError naming a bad one."""
    out: list[Method] = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, eq, path = (s.strip() for s in item.partition("="))
        if not NAME.match(name):
            raise SardInputError(f"--methods: '{name}' is not a method name; expected lower-case letters, digits, "
                                 f"'_' or '-' (real, {', '.join(BASELINES)}, or NAME=CHECKPOINT_DIR)")
        if any(m.name == name for m in out):
            raise SardInputError(f"--methods: '{name}' is given twice")
        if name == "real" or name in BASELINES:
            if eq:
                raise SardInputError(f"--methods: '{name}' takes no checkpoint (got '{item}'); only SARD variants "
                                     f"are given as NAME=CHECKPOINT_DIR")
            out.append(Method(name, None, name))
            continue
        if not eq or not path:
            raise SardInputError(f"--methods: unknown method '{name}'; expected real, {', '.join(BASELINES)}, or a "
                                 f"SARD checkpoint as {name}=CHECKPOINT_DIR")
        folder = Path(path)
        if not folder.is_dir():
            raise SardInputError(f"--methods: checkpoint folder '{folder}' of method '{name}' does not exist; expected "
                                 f"a folder with {CONFIG_NAME} and {WEIGHTS_NAME} (python -m sard.train --out DIR)")
        config = ModelConfig.read(folder)
        if not (folder / WEIGHTS_NAME).is_file():
            raise SardInputError(f"--methods: checkpoint folder '{folder}' of method '{name}' has no {WEIGHTS_NAME}")
        out.append(Method(name, folder, f"{name}-{file_hash(folder / WEIGHTS_NAME)}", config))
    if not out:
        raise SardInputError("--methods: empty; expected e.g. "
                             "real,cutpaste,draem,glass,sard=checkpoints/sard-magnetic-tile")
    return out


ABLATION_FLAGS = {"ddgan": (False, False), "w_rcd": (True, False), "w_dmg": (False, True), "sard": (True, True)}


def ablation_folder(data: Path, root: Path = ABLATION_DIR) -> Path:
    """root/<category>: the committed same-budget checkpoints of a data set, relative to the working
    folder where it lies inside it (the report and its command then read as typed from here)."""
    folder = root / data.resolve().name
    return folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder


def default_methods(data: Path, root: Path = ABLATION_DIR) -> tuple[str, list[str]]:
    """The default --methods: real, the baselines and the paper's four variants from the committed
    same-budget checkpoints root/<category>/<variant> (scripts/train_ablations.sh ships them there);
    returns the list and the variants left out because their folder is missing."""
    folder = ablation_folder(data, root)
    present = [v for v in ABLATION if (folder / v).is_dir()]
    text = ",".join(["real", *BASELINES] + [f"{v}={folder / v}" for v in present])
    return text, [v for v in ABLATION if v not in present]


def check_checkpoint_split(m: Method, data: Path, split_seed: int, defects: list[str]) -> None:
    """A SARD checkpoint must have been trained on the synthesizer third of this split: refuse
    another split seed (its training defects would be in our test set); warn on a data-set name
    mismatch, and when an ablation label (ddgan, w_rcd, w_dmg, sard) does not match the rcd / dmg
    flags the checkpoint was trained with; refuse a multi-type checkpoint that does not know our types."""
    cfg = m.config
    if cfg is None:
        return
    if m.name in ABLATION_FLAGS:
        want, got = ABLATION_FLAGS[m.name], (cfg.rcd, cfg.dmg)
        if want != got:
            warnings.warn(f"method '{m.name}': {m.checkpoint} was trained with rcd={got[0]}, dmg={got[1]}; the label "
                          f"'{LABELS[m.name]}' means rcd={want[0]}, dmg={want[1]}")
    if cfg.split_seed != split_seed:
        raise SardInputError(f"--methods: checkpoint '{m.checkpoint}' of method '{m.name}' was trained with split seed "
                             f"{cfg.split_seed}, but --split-seed is {split_seed}: its training defects would be in "
                             f"the test set; pass --split-seed {cfg.split_seed} or retrain")
    if cfg.data and cfg.data != data.resolve().name:
        warnings.warn(f"method '{m.name}': {m.checkpoint} was trained on '{cfg.data}', evaluated on '{data.name}'")
    if len(cfg.defects) > 1:
        check_defects(defects, cfg.defects, f"checkpoint '{m.checkpoint}' of method '{m.name}'")


def check_backbones(text: str) -> list[str]:
    names = [x.strip().lower() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in SEGMENTERS]
    if bad or not names:
        raise SardInputError(f"--backbones: '{','.join(bad) or text}' unknown; expected a comma list of "
                             f"{', '.join(SEGMENTERS)}")
    return list(dict.fromkeys(names))


# -- the protocol: split, test set, jobs ---------------------------------------------------------------

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
    bank: object                    # sard.masks.MaskBank of train_real (validation masks left out)
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


def build_protocol(data: Path, split_seed: int, defects: list[str] | int | None) -> Protocol:
    """The split, the test set and the mask bank. Types given by name must be usable; of the
    default types, those left with no training mask or no held-out image are dropped (and said so).
    A layout without test normals (plain folder) gives every 10th normal image to the test set."""
    from sard.masks import MaskBank
    samples = list_dataset(data)
    all_types = sorted({s.defect for s in samples if not s.is_normal})
    named = isinstance(defects, list) and bool(defects)
    if isinstance(defects, int):
        defects = all_types[:defects]
    elif named:
        check_defects(sorted(set(defects)), all_types, str(data))
    else:
        defects = all_types
    split = split_defects(samples, split_seed)
    skipped: list[str] = []
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


# -- synthetic pairs ------------------------------------------------------------------------------------

def pair_category(data: Path, split_seed: int, seed: int, method: Method) -> str:
    """Folder name of a method's pairs: what they depend on besides k (data, split, job seed, weights)."""
    return SAFE.sub("_", f"{data.resolve().name}-split{split_seed}-seed{seed}-{method.fingerprint}")[:64]


def ensure_pairs(method: Method, jobs: dict[str, list[PairJob]], proto: Protocol, work: Path, split_seed: int,
                 seed: int, progress: bool = True) -> tuple[list[tuple[str, Path, Path]], dict]:
    """Synthesize the method's missing pairs into <work>/pairs/<method>/; return every pair's
    (type, image path, mask path) and a summary (written, reused, failed with why)."""
    from sard.pair_recipe import MaskSource, write_pairs
    from sard.pairs import PairWriter
    from sard.synthesizers import build
    writer = PairWriter(work / "pairs" / method.name, pair_category(proto.data, split_seed, seed, method),
                        digits=PAIR_DIGITS)
    all_jobs = [j for d in proto.defects for j in jobs[d]]
    todo = []
    for j in all_jobs:
        if not writer.done(j.defect, j.k):
            todo.append(j)
            continue
        rec = writer.lines[(j.defect, j.k)]
        made_from = (rec.get("normal"), rec.get("mask_seed"), rec.get("synth_seed"))
        if made_from != (str(j.normal), j.mask_seed, j.synth_seed):
            raise SardInputError(f"{writer.base}: pair {j.defect} #{j.k} was made from another job "
                                 f"({rec.get('normal')}); delete that folder (or use another --work) and rerun")
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    if todo:
        def record(pair) -> dict:
            j = pair.job
            return {"method": method.name, "checkpoint": str(method.checkpoint) if method.checkpoint else None,
                    "fingerprint": method.fingerprint, "normal": str(j.normal), "mask_seed": j.mask_seed,
                    "synth_seed": j.synth_seed, "mask": pair.mask_params}
        write_pairs(todo, writer, build(method.name, method.checkpoint, sources=proto.textures),
                    MaskSource("bank", None, proto.bank), record, failed=failed, desc=f"synthesize {method.name}",
                    progress=progress)
    pairs = [(j.defect, *writer.paths(j.defect, j.k)) for j in all_jobs if writer.done(j.defect, j.k)]
    summary = {"folder": str(writer.base), "pairs": len(pairs), "written": len(todo) - len(failed),
               "reused": len(all_jobs) - len(todo), "failed": failed,
               "seconds": time.perf_counter() - t0}
    return pairs, summary


# -- images for the segmenter -------------------------------------------------------------------------

def to_res(image: np.ndarray, res: int, channels: int) -> torch.Tensor:
    """uint8 [C, H, W] from a uint8/uint16 image [H, W(, 3)]: native size for res 0, else res x res (INTER_AREA)."""
    a = match_channels(image, channels)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if res:
        a = cv2.resize(a, (res, res), interpolation=cv2.INTER_AREA).reshape(res, res, channels)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def cover_at(mask: np.ndarray, res: int) -> torch.Tensor:
    """float16 [1, H, W]: the 0/1 mask at native size (res 0), else each pixel's defect share at res x res."""
    m = mask.astype(np.float32)
    if res:
        m = cv2.resize(m, (res, res), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(m[None].astype(np.float16))


def load_training(items: list[tuple[Path, Path]], res: int, channels: int) -> SegData:
    """Images and targets from (image, mask) files, at native size (res 0) or res x res."""
    xs, cs = [], []
    for img_path, mask_path in items:
        image = read_image(img_path)
        xs.append(to_res(image, res, channels))
        cs.append(cover_at(read_mask(mask_path, size=image.shape[:2]), res))
    return SegData(xs, cs)


@dataclass
class TestSet:
    images: list[torch.Tensor]      # uint8 [C, h, w] (native, or res x res)
    defects: list[str]              # per image: its type, or "good"
    masks: list[np.ndarray]         # per image: bool [H, W] at native size (all False for good)


def load_test(samples: list[Sample], res: int, channels: int) -> TestSet:
    xs, types, masks = [], [], []
    for s in samples:
        image = read_image(s.image)
        xs.append(to_res(image, res, channels))
        types.append(s.defect if s.mask is not None else "good")
        masks.append(read_mask(s.mask, size=image.shape[:2]) if s.mask is not None
                     else np.zeros(image.shape[:2], bool))
    return TestSet(xs, types, masks)


def model_scores(model) -> callable:
    """score(image uint8 [C, h, w], native (H, W)) -> defect probability float32 [H, W] (bilinear back
    to native size when the image was resized)."""
    def score(image: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        p = predict(model, image)
        return p if p.shape == size else cv2.resize(p, size[::-1], interpolation=cv2.INTER_LINEAR)
    return score


def constant_scores(value: float) -> callable:
    """The reference "segmenters": the same defect score everywhere."""
    return lambda image, size: np.full(size, value, np.float32)


def evaluate(score, val: TestSet, test: TestSet, defects: list[str]) -> dict:
    """Pick the threshold of best F1 on the validation images (their defects and normals pooled), then
    count the test images per type and for test/good at native size, per score bin; false alarms
    (a defect region >= 10 px) on test/good at that threshold. The test set never moves the threshold."""
    val_counts = ScoreCounts.empty()
    for image, gt in zip(val.images, val.masks):
        val_counts.update(score(image, gt.shape), gt)
    k = best_threshold(val_counts)
    counts = {d: ScoreCounts.empty() for d in defects + ["good"]}
    alarms = []
    for image, d, gt in zip(test.images, test.defects, test.masks):
        p = score(image, gt.shape)
        counts[d].update(p, gt)
        if d == "good":
            alarms.append(false_alarm(score_bins(p) >= k, min_region=10))
    return {"threshold_bin": k, "bins": SCORE_BINS, "val": val_counts.to_dict(),
            "counts": {d: c.to_dict() for d, c in counts.items()}, "false_alarms": int(sum(alarms)),
            "good_images": len(alarms)}


def run_metrics(ev: dict) -> dict:
    """The figures of one run from its counts: per type AP, IoU and F1 over the type's test images plus
    all test/good images (at the validation threshold), and the paper's IoU / Acc on the type's defect
    images alone (secondary); their means over types; the false-alarm rate on test/good."""
    k, good = ev["threshold_bin"], ScoreCounts.from_dict(ev["counts"]["good"])
    types = {}
    for d, c in ev["counts"].items():
        if d == "good":
            continue
        own = ScoreCounts.from_dict(c)
        pooled = own + good
        types[d] = {"AP": average_precision(pooled), "IoU": pooled.at(k).iou_defect, "F1": pooled.at(k).f1_defect,
                    "IoU_paper": own.at(k).iou_defect, "Acc_paper": own.at(k).acc_defect}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = {key: nanmean(r[key] for r in types.values()) for key in TYPE_KEYS}
    return {"types": types, **means, "threshold": k / ev["bins"],
            "false_alarm_rate": ev["false_alarms"] / ev["good_images"] if ev["good_images"] else math.nan}


# -- settings -----------------------------------------------------------------------------------------

@dataclass
class Settings:
    data: Path
    methods: str
    backbones: list[str]
    seeds: int
    pairs_per_type: int
    res: int
    crop: int
    iters: int
    batch: int
    lr: float
    real_fractions: list[float]
    defects: list[str] | int | None
    split_seed: int
    seed: int
    threads: int
    work: Path
    results: Path
    out: Path
    json: Path
    chart: Path
    quick: bool
    from_cache: bool = False       # report what --results holds, train nothing
    reading: Path | None = None    # Markdown: the reading of the figures, put in the report as written
    left_out: list[str] = field(default_factory=list)   # default variants without a committed checkpoint

    @property
    def main_fraction(self) -> float:
        """The real share of the mixed arm, which Real only trains with (0.5 when only 0 is given)."""
        return next((f for f in self.real_fractions if f > 0), 0.5)

    def command(self) -> str:
        """The explicit command that reruns exactly these settings."""
        flags = {"--data": self.data, "--methods": self.methods, "--backbones": ",".join(self.backbones),
                 "--seeds": self.seeds, "--pairs-per-type": self.pairs_per_type, "--res": self.res, "--crop": self.crop,
                 "--iters": self.iters, "--batch": self.batch, "--lr": self.lr,
                 "--real-fraction": ",".join(f"{f:g}" for f in self.real_fractions), "--split-seed": self.split_seed,
                 "--seed": self.seed, "--threads": self.threads, "--work": self.work, "--results": self.results,
                 "--out": self.out,
                 "--json": self.json, "--chart": self.chart}
        args = ["python", "-m", "sard.evaluate", "segmentation"] + [str(x) for kv in flags.items() for x in kv]
        if self.reading:
            args += ["--reading", str(self.reading)]
        if self.defects:
            args += ["--defects", ",".join(self.defects) if isinstance(self.defects, list) else str(self.defects)]
        return shlex.join(args)


def parse_fractions(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(not (0 <= v < 1) for v in values):
        raise SardInputError(f"--real-fraction: '{text}'; expected a comma list of shares in [0, 1), e.g. 0.5,0 "
                             f"(0 = the synthetic-only arm)")
    return list(dict.fromkeys(values))


def resolve_settings(a: argparse.Namespace) -> Settings:
    """Flags given win; else the --quick values; else the defaults."""
    def pick(key):
        v = getattr(a, key)
        if v is not None:
            return v
        return QUICK[key] if a.quick and key in QUICK else DEFAULTS[key]
    defects = pick("defects")
    if isinstance(defects, str):
        defects = list(dict.fromkeys(x.strip() for x in defects.split(",") if x.strip())) or None
    methods, missing = a.methods, []
    if methods is None:
        methods, missing = default_methods(Path(a.data))
        if missing:
            warnings.warn(f"--methods: no same-budget checkpoint of {', '.join(missing)} in "
                          f"{ablation_folder(Path(a.data))}; the default run leaves them out "
                          f"(train them: bash scripts/train_ablations.sh 1000 {a.data})")
    s = Settings(data=Path(a.data), methods=methods, backbones=check_backbones(pick("backbones")),
                 seeds=pick("seeds"), pairs_per_type=pick("pairs_per_type"), res=pick("res"), crop=pick("crop"),
                 iters=pick("iters"), batch=pick("batch"), lr=pick("lr"),
                 real_fractions=parse_fractions(str(pick("real_fraction"))), defects=defects,
                 split_seed=a.split_seed, seed=a.seed, threads=a.threads or max(1, os.cpu_count() or 1),
                 work=Path(a.work), results=Path(a.results) if a.results else Path(a.work) / "runs",
                 out=Path(a.out), json=Path(a.json) if a.json else Path(a.out).with_suffix(".json"),
                 chart=Path(a.chart) if a.chart else Path(a.out).with_suffix(".png"), quick=bool(a.quick),
                 from_cache=bool(getattr(a, "from_cache", False)), left_out=missing,
                 reading=Path(a.reading) if getattr(a, "reading", None) else None)
    for name, v, lo in (("--seeds", s.seeds, 1), ("--pairs-per-type", s.pairs_per_type, 1), ("--res", s.res, 0),
                        ("--crop", s.crop, 0), ("--iters", s.iters, 1), ("--batch", s.batch, 1),
                        ("--threads", s.threads, 1)):
        if v < lo:
            raise SardInputError(f"{name}: expected at least {lo}, got {v}")
    if 0 < s.res < 32:
        raise SardInputError(f"--res: expected 0 (native scale) or at least 32, got {s.res}")
    if s.crop == 0 and s.res == 0:
        raise SardInputError("--crop 0 (whole images) needs --res N: native images differ in size")
    if s.pairs_per_type > MAX_PAIRS:
        raise SardInputError(f"--pairs-per-type: at most {MAX_PAIRS}, got {s.pairs_per_type}")
    if not (s.lr > 0 and math.isfinite(s.lr)):
        raise SardInputError(f"--lr: expected a positive learning rate, got {s.lr}")
    n_real = round(s.main_fraction * s.batch)
    if n_real < 1 or ("bisenetv2" in s.backbones and n_real < 2):
        raise SardInputError(f"--batch {s.batch}: with --real-fraction {s.main_fraction:g} it holds {n_real} real "
                             f"pairs; need at least {2 if 'bisenetv2' in s.backbones else 1}")
    if s.out.suffix.lower() != ".md":
        raise SardInputError(f"--out {s.out}: expected a Markdown file name ending in .md")
    if s.reading and not s.reading.is_file():
        raise SardInputError(f"--reading {s.reading}: no such file; expected a Markdown file with the reading of "
                             f"the figures (why a method wins or loses)")
    for flag, folder in (("--work", s.work), ("--results", s.results)):
        if folder.exists() and not folder.is_dir():
            raise SardInputError(f"{flag} {folder}: is a file; expected a folder (created if missing)")
    return s


def run_key(s: Settings, method: Method, backbone: str, seed: int, defects: list[str], fraction: float) -> dict:
    """Everything a run's result depends on; its hash names the cached JSON."""
    return {"data": str(s.data.resolve()), "defects": defects, "split_seed": s.split_seed, "pair_seed": s.seed,
            "pairs_per_type": s.pairs_per_type if method.synthetic else 0, "method": method.name,
            "method_fingerprint": method.fingerprint, "backbone": backbone, "seed": seed, "res": s.res,
            "crop": s.crop, "iters": s.iters, "batch": arm_batch(s, fraction), "lr": s.lr, "real_fraction": fraction,
            "protocol": f"val{VAL_SHARE}+{VAL_GOOD}/std/patches/ce+dice/scores{SCORE_BINS}/v3"}


def run_path(results: Path, key: dict) -> Path:
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return results / key["method"] / f"{key['backbone']}-real{key['real_fraction']:g}-seed{key['seed']}-{h}.json.gz"


def write_run(path: Path, rec: dict) -> None:
    """A run's record, gzipped JSON (its score histograms are ~140 kB as text, ~15 kB zipped), atomic."""
    atomic_write_bytes(path, gzip.compress(json.dumps(rec).encode(), mtime=0))


def read_run(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


def machine(threads: int) -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} torch threads, "
            f"torch {torch.__version__}, no GPU used")


def arms(s: Settings, m: Method) -> list[float]:
    """The real shares a method trains with: Real only one (the mixed arm's), a synthetic method each."""
    return s.real_fractions if m.synthetic else [s.main_fraction]


def arm_batch(s: Settings, fraction: float) -> int:
    """Patches per step: --batch in a mixed arm; in the synthetic-only arm as many as Real only gets
    (the mixed arm's real share), so synthetic alone and real alone are compared patch for patch."""
    return s.batch if fraction > 0 else round(s.main_fraction * s.batch)


# -- the benchmark ------------------------------------------------------------------------------------

def run(a: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    s = resolve_settings(a)
    a.json = s.json                                  # the CLI writes the report there
    torch.set_num_threads(s.threads)
    cv2.setNumThreads(s.threads)
    methods = parse_methods(s.methods)
    proto = build_protocol(s.data, s.split_seed, s.defects)
    s.defects = proto.defects                        # names, for the explicit command
    for m in methods:
        if m.checkpoint is not None:
            check_checkpoint_split(m, s.data, s.split_seed, proto.defects)
    from sard.data.crops import infer_channels
    channels = infer_channels([Sample(p, None, "good", "train") for p in proto.normals])
    jobs = make_jobs(proto.normals, proto.defects, s.pairs_per_type, s.seed)
    say = lambda msg: print(f"segmentation: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"{len(proto.defects)} types {proto.defects}; train real {len(proto.train_real)}, validation "
        f"{len(proto.val_defects)} defect + {len(proto.val_good)} good, test {len(proto.test_defects)} defect + "
        f"{len(proto.test_good)} good images; {len(proto.skipped)} skipped; {s.iters} steps x batch {s.batch} of "
        f"{s.crop or s.res} px patches ({'native scale' if not s.res else f'images at {s.res} px'}), real share "
        f"{', '.join(f'{f:g}' for f in s.real_fractions)}, {s.seeds} seed(s), {s.threads} thread(s)")

    val = load_test(proto.val_defects + proto.val_good, s.res, channels)
    test = load_test(proto.test_defects + proto.test_good, s.res, channels)
    references = {}
    for name, value in REFERENCES.items():
        ev = evaluate(constant_scores(value), val, test, proto.defects)
        references[name] = {"eval": ev, "metrics": run_metrics(ev)}
    real_set: SegData | None = None
    runs: dict[str, dict[float, dict[str, list[dict]]]] = {}
    synthesis: dict[str, dict] = {}
    fresh = cached = 0
    pending: dict[str, dict[str, int]] = {}          # --from-cache: method -> arm -> runs not in the cache
    for m in methods:
        todo = [(f, b, seed, run_path(s.results, run_key(s, m, b, seed, proto.defects, f)))
                for f in arms(s, m) for b in s.backbones for seed in range(s.seeds)]
        todo = [t for t in todo if not t[3].is_file()]
        if s.from_cache:                 # listed as pending, not trained; only complete arms are reported
            for f, *_ in todo:
                pending.setdefault(m.name, {}).setdefault(f"{f:g}", 0)
                pending[m.name][f"{f:g}"] += 1
            todo = []
        if todo:
            if real_set is None:
                real_set = load_training([(x.image, x.mask) for x in proto.train_real], s.res, channels)
            synthetic = None
            if m.synthetic:
                pairs, synthesis[m.name] = ensure_pairs(m, jobs, proto, s.work, s.split_seed, s.seed)
                say(f"{m.name}: {len(pairs)} pairs ({synthesis[m.name]['written']} new, "
                    f"{len(synthesis[m.name]['failed'])} failed) in {synthesis[m.name]['seconds']:.0f} s")
                synthetic = load_training([(i, k) for _, i, k in pairs], s.res, channels)
            for f, b, seed, path in todo:
                cfg = SegTrainConfig(backbone=b, in_channels=channels, iters=s.iters, batch=arm_batch(s, f), lr=s.lr,
                                     crop=s.crop, real_fraction=f, seed=seed)
                model, log = train_segmenter(cfg, real_set, synthetic, desc=f"{m.name}/{b}/real{f:g}/seed{seed}")
                t0 = time.perf_counter()
                ev = evaluate(model_scores(model), val, test, proto.defects)
                rec = {"key": run_key(s, m, b, seed, proto.defects, f),
                       "train": {**log, "real_images": len(real_set), "synthetic_images": len(synthetic or [])},
                       "test_seconds": time.perf_counter() - t0, "eval": ev, "metrics": run_metrics(ev)}
                write_run(path, rec)
                fresh += 1
                r = rec["metrics"]
                say(f"{m.name}/{b}/real{f:g}/seed{seed}: AP {100 * r['AP']:.1f} IoU {100 * r['IoU']:.1f} false alarms "
                    f"{100 * r['false_alarm_rate']:.0f} % ({log['seconds']:.0f} s train, {rec['test_seconds']:.0f} s test)")
        done = [f for f in arms(s, m) if f"{f:g}" not in pending.get(m.name, {})]
        runs[m.name] = {f: {b: [read_run(run_path(s.results, run_key(s, m, b, seed, proto.defects, f)))
                                for seed in range(s.seeds)] for b in s.backbones} for f in done}
        cached += len(done) * s.seeds * len(s.backbones) - len(todo)
    report = build_report(s, methods, proto, runs, references, synthesis, channels)
    report["runs_trained"], report["runs_cached"], report["pending"] = fresh, cached, pending
    report["left_out"] = {"methods": [LABELS[v] for v in s.left_out], "folder": str(ablation_folder(s.data)),
                          "train": f"bash scripts/train_ablations.sh 1000 {s.data}"} if s.left_out else None
    report["reading"] = {"file": str(s.reading), "text": s.reading.read_text(encoding="utf-8")} if s.reading else None
    report["wall_seconds"] = time.perf_counter() - t_start
    atomic_write_bytes(s.out, markdown(report).encode())
    atomic_write_bytes(s.chart, chart_png(report))
    say(f"wrote {s.out}, {s.chart} ({fresh} runs trained, {cached} from cache, {report['wall_seconds']:.0f} s)")
    return report


# -- aggregation --------------------------------------------------------------------------------------

def _figures(recs: list[dict]) -> dict:
    """Per-seed metrics of one method, arm and backbone -> {key: {mean, std, values}} (seed_summary)."""
    m = [r["metrics"] for r in recs]
    out = {"types": {d: {k: seed_summary([x["types"][d][k] for x in m]) for k in TYPE_KEYS} for d in m[0]["types"]},
           **{k: seed_summary([x[k] for x in m]) for k in TYPE_KEYS + ("threshold", "false_alarm_rate")}}
    if "train" in recs[0]:
        out["train_seconds"] = seed_summary([r["train"]["seconds"] for r in recs])
        out["loss_tenths"] = [float(np.mean(t)) for t in zip(*(r["train"]["loss_tenths"] for r in recs))]
    return out


def build_report(s: Settings, methods: list[Method], proto: Protocol, runs: dict, references: dict, synthesis: dict,
                 channels: int) -> dict:
    """Every figure as {mean, std, values over seeds} per backbone, arm (real share) and method; the
    references (constant scores, no seeds) are in every arm; verdict and marks by seg_report."""
    results: dict = {}
    for b in s.backbones:
        results[b] = {}
        for f in s.real_fractions:
            per = {n: _figures([r]) for n, r in references.items()}
            per["real"] = _figures(runs["real"][s.main_fraction][b]) if s.main_fraction in runs.get("real", {}) \
                else None
            per.update({m.name: _figures(runs[m.name][f][b]) for m in methods if m.synthetic and f in runs[m.name]})
            results[b][f"{f:g}"] = {n: v for n, v in per.items() if v is not None}
    labels = {n: LABELS[n] for n in REFERENCES} | {m.name: m.label for m in methods}
    report = {
        "benchmark": "segmentation", "protocol": "v3 (pooled with good images, validation threshold, equal real share)",
        "data": str(s.data), "defects": proto.defects, "quick": s.quick,
        "methods": {n: {"label": labels[n], "reference": n in REFERENCES,
                        "checkpoint": next((str(m.checkpoint) for m in methods if m.name == n and m.checkpoint), None)}
                    for n in labels},
        "settings": {"backbones": s.backbones, "seeds": s.seeds, "pairs_per_type": s.pairs_per_type, "res": s.res,
                     "crop": s.crop, "iters": s.iters, "batch": s.batch, "lr": s.lr, "real_fractions": s.real_fractions,
                     "main_fraction": s.main_fraction, "optimizer": "AdamW (weight decay 0.01)",
                     "schedule": "linear warm-up 5 %, cosine to 1 %",
                     "input": (f"native scale, {s.crop} px patches" if not s.res else
                               f"whole images resized to {s.res} px, " + (f"{s.crop} px patches" if s.crop else
                                                                          "whole")) +
                              f", half centred on a defect pixel, random h/v flips; {channels} channel(s), each image "
                              f"standardised; scored at native resolution",
                     "loss": "soft cross-entropy + soft Dice of the defect class per patch "
                             "(BiSeNetV2: + its 4 booster heads)",
                     "validation": f"{VAL_SHARE:.0%} of each type's real training third + {len(proto.val_good)} "
                                   f"train/good images; threshold of best pooled F1 on it, in steps of 1/{SCORE_BINS}",
                     "pretrained": False, "split_seed": s.split_seed, "pair_seed": s.seed, "threads": s.threads,
                     "work": str(s.work), "results": str(s.results)},
        "split": {"train_real": len(proto.train_real), "val_defects": len(proto.val_defects),
                  "val_good": len(proto.val_good), "test_defects": len(proto.test_defects),
                  "test_good": len(proto.test_good), "normals": len(proto.normals),
                  "bank_masks": len(proto.bank), "skipped": proto.skipped,
                  "per_type": {d: {"train_real": sum(x.defect == d for x in proto.train_real),
                                   "val": sum(x.defect == d for x in proto.val_defects),
                                   "test": sum(x.defect == d for x in proto.test_defects)} for d in proto.defects}},
        "synthesis": synthesis, "results": results, "machine": machine(s.threads),
        "command": "python -m sard.evaluate " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).stem == "evaluate"
                   else s.command(),
        "command_explicit": s.command(),
    }
    report["verdict"] = verdict(report)
    return report


# -- command line -------------------------------------------------------------------------------------

def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("segmentation", help="do synthetic pairs help? segmenters trained on each method's pairs",
                       description=__doc__.split("\n")[0])
    d = DEFAULTS
    p.add_argument("--data", required=True, type=Path, help="data set root (MVTec, BTAD or plain folder layout)")
    p.add_argument("--methods", help=f"comma list: real, {', '.join(BASELINES)}, and SARD variants as "
                                     f"NAME=CHECKPOINT_DIR (ddgan, w_rcd, w_dmg, sard are labelled as the paper) "
                                     f"(default: real,{','.join(BASELINES)} and the variants of "
                                     f"checkpoints/ablations/<category>/ that exist)")
    p.add_argument("--backbones", help=f"comma list of {', '.join(SEGMENTERS)} (default {d['backbones']})")
    p.add_argument("--seeds", type=int, help=f"segmenters per method and backbone (default {d['seeds']})")
    p.add_argument("--pairs-per-type", type=int,
                   help=f"synthetic pairs per defect type (default {d['pairs_per_type']}; the paper: 500)")
    p.add_argument("--res", type=int, help=f"0 = native scale; N = whole images resized to N x N first (the old "
                                         f"protocol) (default {d['res']})")
    p.add_argument("--crop", type=int, help=f"training patches of crop x crop px, 0 = whole images (needs --res) "
                                          f"(default {d['crop']})")
    p.add_argument("--iters", type=int, help=f"segmenter training steps (default {d['iters']})")
    p.add_argument("--batch", type=int, help=f"segmenter batch (default {d['batch']})")
    p.add_argument("--lr", type=float, help=f"AdamW learning rate (default {d['lr']:g})")
    p.add_argument("--real-fraction", help=f"comma list of real shares of each batch, one arm each; 0 = the "
                                           f"synthetic-only arm (default {d['real_fraction']})")
    p.add_argument("--defects", help="comma list of defect types (default: all)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the real-defect split (as the checkpoints')")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthesis job list")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--work", default="runs/segmentation", help="cache of pairs and per-run results (resumable)")
    p.add_argument("--results", help="per-run records, gzipped JSON of ~15 kB each (default: WORK/runs); a folder in the "
                                     "repository lets a run span sessions on fresh checkouts (the pairs are "
                                     "remade from the job list)")
    p.add_argument("--out", default="reports/segmentation.md", help="Markdown report")
    p.add_argument("--json", help="JSON report (default: --out with .json)")
    p.add_argument("--chart", help="bar chart PNG (default: --out with .png)")
    p.add_argument("--reading", type=Path,
                   help="Markdown file with the reading of the figures (where a method wins or loses, and why), "
                        "put in the report under 'Reading' as written (e.g. reports/<category>/segmentation_reading.md)")
    p.add_argument("--from-cache", action="store_true",
                   help="train nothing: report the runs --results already holds and list the missing ones as "
                        "pending (a partial report while a long run goes on)")
    p.add_argument("--quick", action="store_true",
                   help=f"CI-sized run: first 2 types, {QUICK['pairs_per_type']} pairs, {QUICK['iters']} steps, 1 seed "
                        f"(flags given explicitly still win)")
    return p
