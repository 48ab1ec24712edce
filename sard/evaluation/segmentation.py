"""python -m sard.evaluate segmentation: the paper's benchmark (Tables I and IV) on one data set.

Protocol
--------
1. Split (sard.data.split_defects, --split-seed): per defect type a deterministic third of the real
   defects trains the synthesizers and forms the mask bank; the other two thirds plus test/good
   are the test set. `assert_disjoint` checks by path that no test image reaches a segmenter's
   training set, a synthesizer's sources or the mask bank (SARD checkpoints must have been trained
   with the same split seed; a mismatch is refused).
2. One job list per defect type, k = 0..N-1: (normal image of train/good, mask seed, synthesis
   seed), a pure function of (--seed, type, k). Every synthetic method fills the same bank mask
   (random_mask "bank", natural size) on the same normal image; pairs are cached at native size in
   <work>/pairs/<method>/ by PairWriter, so a rerun (or a larger N, whose jobs extend the list)
   reuses them.
3. Training set of a method = the synthesizer third of the real defects (empty masks skipped) +
   its N pairs per type; `real` is the real third alone. One segmenter per (method, backbone,
   seed), identical settings (seg_train.py: AdamW, warm-up + cosine, flips, CE + Dice).
4. Test: every held-out defect image and every test/good image. The segmenter sees the whole
   tile resized to res x res; its defect probability is resized back (bilinear) to the tile's
   native size and thresholded at 0.5, and all metrics are counted at native resolution against
   the original masks, so a defect lost by the resize counts as missed.
   Per type: IoU and Acc (TP / (TP + FN)) of the defect class, pooled over its images; "mIoU" /
   "Acc" = their mean over types (as the paper's tables). Pooled over the whole test set: mIoU over
   {background, defect} and aAcc. On test/good: the false-alarm rate (share of good images with a
   predicted defect region >= 10 px). Each figure: mean ± sample std over the seeds; † marks a
   method whose mean is within the larger of the two spreads of the best one (within_spread).

Input (measured on magnetic_tile, masks only): an oracle that predicts the resized mask exactly and
is scored at native size reaches, at res 128, IoU 0.65 (blowhole) / 0.47 (crack) when masks are
resized nearest-neighbour, 0.84 / 0.71 with the area coverage thresholded at 0.5, and 0.93 / 0.84
with the soft coverage upsampled bilinearly; at res 160 the last gives 0.96 / 0.93, at 192
0.98 / 0.97 (break, fray, uneven >= 0.99 from 128 on). So whole tiles are resized to res x res,
targets are coverages, predictions are upsampled probabilities, and res 160 keeps the smallest
defects within a few per cent of perfect. Training takes 96 px windows of the 160 px images and
standardises each image (seg_train.py says why; without standardisation SegFormer-B0 stayed at
"all background").

Defaults and the timing behind them. Measured on this 2-core machine with 1 torch thread while a
1-thread training job held the other core (an idle machine with --threads 2 is faster):
  one AdamW step, gray input, BiSeNetV2 with its 4 booster heads:
      whole 128 px images, batch 8:   SegFormer-B0 0.56-0.62 s, BiSeNetV2 0.73-0.84 s
      whole 160 px images, batch 8:   SegFormer-B0 0.80-0.97 s, BiSeNetV2 1.16-1.19 s
      whole 256 px images, batch 8:   SegFormer-B0 2.42-2.47 s, BiSeNetV2 3.65-3.81 s
      96 px windows, batch 8:         SegFormer-B0 0.34 s,      BiSeNetV2 0.57-0.60 s
  one run with the defaults (res 160, 96 px windows, batch 8, 250 steps), magnetic_tile, 5 types:
      SegFormer-B0 86 s training + 16 s test, BiSeNetV2 143 s + 18 s
      (test = 257 held-out defect tiles + 100 good tiles, forward at 160 px, scored at native size)
  synthesis per pair at native size: CutPaste 2 ms, DRAEM 4 ms, GLASS 9 ms; the magnetic-tile SARD
  checkpoint (64 px training, base width 16, T = 4) with RCD (ROI around the mask) 1.0 s, without
  RCD (whole tile resampled, as DDGAN and w/ DMG sample) 3.5 s.
Full benchmark, 8 methods (real, cutpaste, draem, glass, ddgan, w_rcd, w_dmg, sard) x 2 backbones
x 3 seeds = 48 segmenters:
  training    8 x 3 x (86 + 143) s                       = 5500 s
  test        8 x 3 x (16 + 18) s                        =  820 s
  synthesis   5 types x 40 pairs x (1.0 + 1.0 + 3.5 + 3.5) s + baselines
                                                         = 1800 s
  loading     protocol, pairs and test tiles, ~5 s per method = 50 s
  total                                                  ~ 8200 s = 2.3 h at 1 thread (under 3 h
  with 25 % to spare); 300 steps would give 2.6 h, too little margin. Real only, res 160, 250
  steps, one seed: mIoU 6.6 % (SegFormer-B0), 7.5 % (BiSeNetV2) - from scratch on a CPU budget.
`--pairs-per-type 500` (the paper's number) adds 5 x 460 x 9 s = 5.8 h of SARD-family synthesis
on this CPU, once (cached in --work); training time does not grow with it (fixed steps).
`--quick` (CI): the first 2 types, 6 pairs per type, res 96, 64 px windows, 100 steps of batch 8,
1 seed, SegFormer-B0: about 25 s per method here; its settings are printed in the report.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import platform
import re
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from sard.data import list_dataset, split_defects
from sard.data.readers import Sample
from sard.evaluation.seg_train import SegTrainConfig, predict, train_segmenter
from sard.imaging import match_channels
from sard.io import SardInputError, atomic_write_bytes, atomic_write_json, read_image, read_mask
from sard.metrics import SegCounts, false_alarm, mean_spread, per_type_table, within_spread
from sard.nets.segmentation import SEGMENTERS

BASELINES = ("cutpaste", "draem", "glass")
ABLATION = ("ddgan", "w_rcd", "w_dmg", "sard")   # Table IV columns, in the paper's order
LABELS = {"real": "Real only", "cutpaste": "CutPaste", "draem": "DRAEM", "glass": "GLASS", "ddgan": "DDGAN",
          "w_rcd": "w/ RCD", "w_dmg": "w/ DMG", "sard": "SARD"}
DEFAULTS = {"methods": "real,cutpaste,draem,glass", "backbones": "segformer-b0,bisenetv2", "seeds": 3,
            "pairs_per_type": 40, "res": 160, "crop": 96, "iters": 250, "batch": 8, "lr": 1e-3, "defects": None}
QUICK = {"backbones": "segformer-b0", "seeds": 1, "pairs_per_type": 6, "res": 96, "crop": 64, "iters": 100,
         "batch": 8, "defects": 2}   # an int: the first n defect types (sorted)
TEXTURE_SOURCES = 50     # train/good images DRAEM and GLASS take textures from
PAIR_DIGITS = 4          # file names NNNN.png: up to 10000 pairs per type
MAX_PAIRS = 10 ** PAIR_DIGITS
SAFE = re.compile(r"[^A-Za-z0-9_.-]")
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DAGGER = "†"
SUMMARY_KEYS = ("mIoU", "Acc", "mIoU_2class", "aAcc", "false_alarm_rate")


# -- methods ------------------------------------------------------------------------------------------

@dataclass
class Method:
    name: str                      # real, a baseline, or any label of a SARD checkpoint
    checkpoint: Path | None
    fingerprint: str               # what the pairs depend on besides the jobs
    config: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    @property
    def synthetic(self) -> bool:
        return self.name != "real"


def parse_methods(text: str) -> list[Method]:
    """'real,cutpaste,sard=DIR' -> checked Methods; SardInputError naming a bad one."""
    from sard.checkpoint import CONFIG_NAME, WEIGHTS_NAME, file_hash, read_config
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
        config = read_config(folder / CONFIG_NAME)
        if not (folder / WEIGHTS_NAME).is_file():
            raise SardInputError(f"--methods: checkpoint folder '{folder}' of method '{name}' has no {WEIGHTS_NAME}")
        out.append(Method(name, folder, f"{name}-{file_hash(folder / WEIGHTS_NAME)}", config))
    if not out:
        raise SardInputError("--methods: empty; expected e.g. "
                             "real,cutpaste,draem,glass,sard=checkpoints/sard-magnetic-tile")
    return out


ABLATION_FLAGS = {"ddgan": (False, False), "w_rcd": (True, False), "w_dmg": (False, True), "sard": (True, True)}


def check_checkpoint_split(m: Method, data: Path, split_seed: int, defects: list[str]) -> None:
    """A SARD checkpoint must have been trained on the synthesizer third of this split: refuse
    another split seed (its training defects would be in our test set); warn on a data-set name
    mismatch, and when an ablation label (ddgan, w_rcd, w_dmg, sard) does not match the rcd / dmg
    flags the checkpoint was trained with; refuse a multi-type checkpoint that does not know our types."""
    cfg = m.config
    if m.name in ABLATION_FLAGS and "rcd" in cfg and "dmg" in cfg:
        want, got = ABLATION_FLAGS[m.name], (bool(cfg["rcd"]), bool(cfg["dmg"]))
        if want != got:
            warnings.warn(f"method '{m.name}': {m.checkpoint} was trained with rcd={got[0]}, dmg={got[1]}; the label "
                          f"'{LABELS[m.name]}' means rcd={want[0]}, dmg={want[1]}")
    if cfg.get("split_seed") is None:
        warnings.warn(f"method '{m.name}': {m.checkpoint} does not record its split seed; assuming {split_seed}")
    elif int(cfg["split_seed"]) != split_seed:
        raise SardInputError(f"--methods: checkpoint '{m.checkpoint}' of method '{m.name}' was trained with split seed "
                             f"{cfg['split_seed']}, but --split-seed is {split_seed}: its training defects would be in "
                             f"the test set; pass --split-seed {cfg['split_seed']} or retrain")
    if cfg.get("data") and cfg["data"] != data.resolve().name:
        warnings.warn(f"method '{m.name}': {m.checkpoint} was trained on '{cfg['data']}', evaluated on '{data.name}'")
    known = cfg.get("defects") or []
    if len(known) > 1 and not set(defects) <= set(known):
        raise SardInputError(f"--methods: checkpoint '{m.checkpoint}' of method '{m.name}' knows the types {known}, "
                             f"not {sorted(set(defects) - set(known))}; pass --defects")


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
    train_real: list[Sample]        # the synthesizer third (masks non-empty), in every training set
    test_defects: list[Sample]      # held-out defect images with non-empty masks
    test_good: list[Sample]         # normal images of the test split
    normals: list[Path]             # train/good: backgrounds of the synthetic pairs
    textures: list[Path]            # DRAEM / GLASS texture sources (some of the normals)
    bank: object                    # sard.masks.MaskBank of the synthesizer third
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
        unknown = sorted(set(defects) - set(all_types))
        if unknown:
            raise SardInputError(f"--defects: {unknown} not in {data}; it has {all_types}")
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
    test_defects = [s for s in test_defects if s.defect in defects]
    normals = [s.image for s in samples if s.is_normal and s.split == "train"]
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
    if not normals:
        raise SardInputError(f"--data {data}: no normal training images (train/good or train/ok); the synthesizers "
                             f"need them as backgrounds")
    p = Protocol(data, list(defects), train_real, test_defects, good, normals, normals[:TEXTURE_SOURCES],
                 MaskBank.from_samples(train_real), skipped)
    assert_disjoint(p)
    return p


def assert_disjoint(p: Protocol) -> None:
    """No test image (held-out defects, test/good) is a training image, a synthesis background or
    texture, or a mask of the bank; checked on resolved paths. Raises AssertionError otherwise
    (an explicit raise, so python -O does not drop it)."""
    def res(paths):
        return {Path(x).resolve() for x in paths}
    test_images = res([s.image for s in p.test_defects] + [s.image for s in p.test_good])
    test_masks = res([s.mask for s in p.test_defects])
    seen_images = res([s.image for s in p.train_real] + p.normals + p.textures)
    bank_masks = res([m for d in p.bank.defects for m in p.bank.sources(d)])
    bad = sorted(test_images & seen_images) + sorted(test_masks & bank_masks) + sorted(test_images & bank_masks)
    if bad:
        raise AssertionError(f"{len(bad)} test files reach training, synthesis or the mask bank, e.g. {bad[0]}")


@dataclass(frozen=True)
class Job:
    defect: str
    k: int
    normal: Path
    mask_seed: int
    synth_seed: int


def make_jobs(normals: list[Path], defects: list[str], n: int, seed: int) -> dict[str, list[Job]]:
    """Per type the n jobs every synthetic method does; job k depends on (seed, type, k) only, so the
    list for n is a prefix of the list for any larger n."""
    from sard.pairs import pair_rng, pair_seed
    jobs = {}
    for d in defects:
        jobs[d] = [Job(d, k, normals[int(pair_rng(seed, d, k).integers(len(normals)))], pair_seed(seed, d, k),
                       int(pair_rng(seed, d, k, stream=3).integers(0, 2 ** 31 - 1))) for k in range(n)]
    return jobs


# -- synthetic pairs ------------------------------------------------------------------------------------

def pair_category(data: Path, split_seed: int, seed: int, method: Method) -> str:
    """Folder name of a method's pairs: what they depend on besides k (data, split, job seed, weights)."""
    return SAFE.sub("_", f"{data.resolve().name}-split{split_seed}-seed{seed}-{method.fingerprint}")[:64]


def ensure_pairs(method: Method, jobs: dict[str, list[Job]], proto: Protocol, work: Path, split_seed: int,
                 seed: int, progress: bool = True) -> tuple[list[tuple[str, Path, Path]], dict]:
    """Synthesize the method's missing pairs into <work>/pairs/<method>/; return every pair's
    (type, image path, mask path) and a summary (written, reused, failed with why)."""
    from sard.evaluation.methods import load_synthesizer
    from sard.pairs import PairWriter
    from sard.masks import random_mask
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
        synth = load_synthesizer(method.name, method.checkpoint, sources=proto.textures)
        for j in tqdm(todo, desc=f"synthesize {method.name}", disable=not progress, mininterval=5):
            try:
                image = read_image(j.normal)
                mask, mask_params = random_mask("bank", image.shape[:2], j.mask_seed, None, bank=proto.bank,
                                                defect=j.defect)
                r = synth(image, mask, seed=j.synth_seed, defect=j.defect)
            except SardInputError as e:
                failed[f"{j.defect} #{j.k}"] = str(e)
                continue
            writer.write(j.defect, j.k, np.asarray(r.image), np.asarray(r.mask),
                         {"method": method.name, "checkpoint": str(method.checkpoint) if method.checkpoint else None,
                          "fingerprint": method.fingerprint, "normal": str(j.normal), "mask_seed": j.mask_seed,
                          "synth_seed": j.synth_seed, "mask": mask_params})
    pairs = [(j.defect, *writer.paths(j.defect, j.k)) for j in all_jobs if writer.done(j.defect, j.k)]
    summary = {"folder": str(writer.base), "pairs": len(pairs), "written": len(todo) - len(failed),
               "reused": len(all_jobs) - len(todo), "failed": failed,
               "seconds": time.perf_counter() - t0}
    return pairs, summary


# -- tensors at the segmenter's resolution ------------------------------------------------------------

def to_res(image: np.ndarray, res: int, channels: int) -> np.ndarray:
    """uint8 [C, res, res] from a uint8/uint16 image [H, W(, 3)] (INTER_AREA)."""
    a = match_channels(image, channels)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    small = cv2.resize(a, (res, res), interpolation=cv2.INTER_AREA).reshape(res, res, channels)
    return np.ascontiguousarray(small.transpose(2, 0, 1))


def cover_at(mask: np.ndarray, res: int) -> np.ndarray:
    """float16 [1, res, res]: each pixel's defect share (INTER_AREA of the 0/1 mask)."""
    return cv2.resize(mask.astype(np.float32), (res, res), interpolation=cv2.INTER_AREA)[None].astype(np.float16)


def load_training(items: list[tuple[Path, Path]], res: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, C, res, res], covers float16 [N, 1, res, res]) from (image, mask) files."""
    xs, cs = [], []
    for img_path, mask_path in items:
        image = read_image(img_path)
        xs.append(to_res(image, res, channels))
        cs.append(cover_at(read_mask(mask_path, size=image.shape[:2]), res))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(cs))


@dataclass
class TestSet:
    images: torch.Tensor            # uint8 [N, C, res, res]
    defects: list[str]              # per image: its type, or "good"
    masks: list[np.ndarray]         # per image: bool [H, W] at native size (all False for good)


def load_test(proto: Protocol, res: int, channels: int) -> TestSet:
    xs, types, masks = [], [], []
    for s in proto.test_defects + proto.test_good:
        image = read_image(s.image)
        xs.append(to_res(image, res, channels))
        types.append(s.defect if s.mask is not None else "good")
        masks.append(read_mask(s.mask, size=image.shape[:2]) if s.mask is not None
                     else np.zeros(image.shape[:2], bool))
    return TestSet(torch.from_numpy(np.stack(xs)), types, masks)


def evaluate(model, test: TestSet, defects: list[str]) -> dict:
    """Counts per type and pooled, at native resolution; false alarms on the good images."""
    probs = predict(model, test.images)
    counts = {d: SegCounts() for d in defects}
    pooled, alarms = SegCounts(), []
    for p, d, gt in zip(probs, test.defects, test.masks):
        H, W = gt.shape
        pred = cv2.resize(p, (W, H), interpolation=cv2.INTER_LINEAR) >= 0.5
        pooled.update(pred, gt)
        if d == "good":
            alarms.append(false_alarm(pred, min_region=10))
        else:
            counts[d].update(pred, gt)
    return {"counts": {d: asdict(c) for d, c in counts.items()}, "pooled": asdict(pooled),
            "false_alarms": int(sum(alarms)), "good_images": len(alarms)}


def run_metrics(ev: dict) -> dict:
    """The figures of one run from its counts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = per_type_table({d: SegCounts(**c) for d, c in ev["counts"].items()})
    pooled = SegCounts(**ev["pooled"])
    return {"types": {d: {"IoU": r["IoU"], "Acc": r["Acc"]} for d, r in table["types"].items()},
            "mIoU": table["mIoU"], "Acc": table["Acc"], "mIoU_2class": pooled.miou_2class, "aAcc": pooled.aacc,
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
    defects: list[str] | int | None
    split_seed: int
    seed: int
    threads: int
    work: Path
    out: Path
    json: Path
    chart: Path
    quick: bool

    def command(self) -> str:
        """The explicit command that reruns exactly these settings."""
        flags = {"--data": self.data, "--methods": self.methods, "--backbones": ",".join(self.backbones),
                 "--seeds": self.seeds, "--pairs-per-type": self.pairs_per_type, "--res": self.res, "--crop": self.crop,
                 "--iters": self.iters, "--batch": self.batch, "--lr": self.lr, "--split-seed": self.split_seed,
                 "--seed": self.seed, "--threads": self.threads, "--work": self.work, "--out": self.out,
                 "--json": self.json, "--chart": self.chart}
        args = ["python", "-m", "sard.evaluate", "segmentation"] + [str(x) for kv in flags.items() for x in kv]
        if self.defects:
            args += ["--defects", ",".join(self.defects) if isinstance(self.defects, list) else str(self.defects)]
        return shlex.join(args)


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
    s = Settings(data=Path(a.data), methods=pick("methods"), backbones=check_backbones(pick("backbones")),
                 seeds=pick("seeds"), pairs_per_type=pick("pairs_per_type"), res=pick("res"), crop=pick("crop"),
                 iters=pick("iters"), batch=pick("batch"), lr=pick("lr"), defects=defects, split_seed=a.split_seed,
                 seed=a.seed, threads=a.threads or max(1, os.cpu_count() or 1), work=Path(a.work),
                 out=Path(a.out), json=Path(a.json) if a.json else Path(a.out).with_suffix(".json"),
                 chart=Path(a.chart) if a.chart else Path(a.out).with_suffix(".png"), quick=bool(a.quick))
    for name, v, lo in (("--seeds", s.seeds, 1), ("--pairs-per-type", s.pairs_per_type, 1), ("--res", s.res, 32),
                        ("--crop", s.crop, 0), ("--iters", s.iters, 1), ("--batch", s.batch, 1),
                        ("--threads", s.threads, 1)):
        if v < lo:
            raise SardInputError(f"{name}: expected at least {lo}, got {v}")
    if s.pairs_per_type > MAX_PAIRS:
        raise SardInputError(f"--pairs-per-type: at most {MAX_PAIRS}, got {s.pairs_per_type}")
    if not (s.lr > 0 and math.isfinite(s.lr)):
        raise SardInputError(f"--lr: expected a positive learning rate, got {s.lr}")
    if "bisenetv2" in s.backbones and s.batch < 2:
        raise SardInputError("--batch: bisenetv2 trains on batches of at least 2")
    if s.out.suffix.lower() != ".md":
        raise SardInputError(f"--out {s.out}: expected a Markdown file name ending in .md")
    if s.work.exists() and not s.work.is_dir():
        raise SardInputError(f"--work {s.work}: is a file; expected a folder (created if missing)")
    return s


def run_key(s: Settings, method: Method, backbone: str, seed: int, defects: list[str]) -> dict:
    """Everything a run's result depends on; its hash names the cached JSON."""
    return {"data": str(s.data.resolve()), "defects": defects, "split_seed": s.split_seed, "pair_seed": s.seed,
            "pairs_per_type": s.pairs_per_type if method.synthetic else 0, "method": method.name,
            "method_fingerprint": method.fingerprint, "backbone": backbone, "seed": seed, "res": s.res,
            "crop": min(s.crop, s.res), "iters": s.iters, "batch": s.batch, "lr": s.lr,
            "protocol": "whole-tile/std/crops/coverage/ce+dice/v2"}


def run_path(work: Path, key: dict) -> Path:
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return work / "runs" / key["method"] / f"{key['backbone']}-seed{key['seed']}-{h}.json"


def machine(threads: int) -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} torch threads, "
            f"torch {torch.__version__}, no GPU used")


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
    say(f"{len(proto.defects)} types {proto.defects}; train real {len(proto.train_real)}, test "
        f"{len(proto.test_defects)} defect + {len(proto.test_good)} good images; {len(proto.skipped)} skipped; "
        f"res {s.res}, {s.iters} steps x batch {s.batch} of {s.crop} px crops, {s.seeds} seed(s), "
        f"{s.threads} thread(s)")

    test: TestSet | None = None
    real_set: tuple[torch.Tensor, torch.Tensor] | None = None
    runs: dict[str, dict[str, list[dict]]] = {}
    synthesis: dict[str, dict] = {}
    fresh = cached = 0
    for m in methods:
        runs[m.name] = {}
        todo = []
        for b in s.backbones:
            for seed in range(s.seeds):
                path = run_path(s.work, run_key(s, m, b, seed, proto.defects))
                if not path.is_file():
                    todo.append((b, seed, path))
        if todo:
            if real_set is None:
                real_set = load_training([(x.image, x.mask) for x in proto.train_real], s.res, channels)
            images, covers = real_set
            if m.synthetic:
                pairs, synthesis[m.name] = ensure_pairs(m, jobs, proto, s.work, s.split_seed, s.seed)
                say(f"{m.name}: {len(pairs)} pairs ({synthesis[m.name]['written']} new, "
                    f"{len(synthesis[m.name]['failed'])} failed) in {synthesis[m.name]['seconds']:.0f} s")
                px, pc = load_training([(i, k) for _, i, k in pairs], s.res, channels)
                images, covers = torch.cat([images, px]), torch.cat([covers, pc])
            if test is None:
                test = load_test(proto, s.res, channels)
            for b, seed, path in todo:
                cfg = SegTrainConfig(backbone=b, in_channels=channels, iters=s.iters, batch=s.batch, lr=s.lr,
                                     crop=s.crop, seed=seed)
                model, log = train_segmenter(cfg, images, covers, desc=f"{m.name}/{b}/seed{seed}")
                t0 = time.perf_counter()
                ev = evaluate(model, test, proto.defects)
                rec = {"key": run_key(s, m, b, seed, proto.defects), "train": {**log, "images": len(images)},
                       "test_seconds": time.perf_counter() - t0, "eval": ev, "metrics": run_metrics(ev)}
                atomic_write_json(path, rec)
                fresh += 1
                say(f"{m.name}/{b}/seed{seed}: mIoU {100 * rec['metrics']['mIoU']:.1f} Acc "
                    f"{100 * rec['metrics']['Acc']:.1f} ({log['seconds']:.0f} s train, "
                    f"{rec['test_seconds']:.0f} s test)")
        for b in s.backbones:
            runs[m.name][b] = []
            for seed in range(s.seeds):
                rec = json.loads(run_path(s.work, run_key(s, m, b, seed, proto.defects)).read_text())
                runs[m.name][b].append(rec)
        cached += s.seeds * len(s.backbones) - len(todo)
    report = build_report(s, methods, proto, runs, synthesis, channels)
    report["runs_trained"], report["runs_cached"] = fresh, cached
    report["wall_seconds"] = time.perf_counter() - t_start
    atomic_write_bytes(s.out, markdown(report).encode())
    atomic_write_bytes(s.chart, chart_png(report))
    say(f"wrote {s.out}, {s.chart} ({fresh} runs trained, {cached} from cache, {report['wall_seconds']:.0f} s)")
    return report


# -- aggregation --------------------------------------------------------------------------------------

def _ms(values: list[float]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m, sd = mean_spread(values)
    return {"mean": m, "std": sd, "values": values}


def _within(a: list[float], b: list[float]) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return within_spread(a, b)


def build_report(s: Settings, methods: list[Method], proto: Protocol, runs: dict, synthesis: dict,
                 channels: int) -> dict:
    """Every figure as {mean, std, values over seeds}, with best and † marks per row and backbone."""
    names = [m.name for m in methods]
    results: dict = {}
    for b in s.backbones:
        per = {}
        for n in names:
            recs = [r["metrics"] for r in runs[n][b]]
            per[n] = {"types": {d: {k: _ms([r["types"][d][k] for r in recs]) for k in ("IoU", "Acc")}
                                for d in proto.defects},
                      **{k: _ms([r[k] for r in recs]) for k in SUMMARY_KEYS},
                      "train_seconds": _ms([r["train"]["seconds"] for r in runs[n][b]])}
        results[b] = {"methods": per, "marks": marks(per, names, proto.defects)}
        ablation = [n for n in ABLATION if n in names]
        if len(ablation) >= 2:
            results[b]["ablation_marks"] = marks(per, ablation, proto.defects)
    sard_words = verdict(results, names)
    return {
        "benchmark": "segmentation", "data": str(s.data), "defects": proto.defects, "quick": s.quick,
        "methods": {m.name: {"label": m.label, "checkpoint": str(m.checkpoint) if m.checkpoint else None,
                             "fingerprint": m.fingerprint} for m in methods},
        "settings": {"backbones": s.backbones, "seeds": s.seeds, "pairs_per_type": s.pairs_per_type, "res": s.res,
                     "crop": s.crop if s.crop < s.res else 0, "iters": s.iters, "batch": s.batch, "lr": s.lr,
                     "optimizer": "AdamW (weight decay 0.01)", "schedule": "linear warm-up 5 %, cosine to 1 %",
                     "augmentation": (f"{s.crop} px windows of the {s.res} px image, half centred on a defect pixel; "
                                      f"random h/v flips") if 0 < s.crop < s.res else "whole images; random h/v flips",
                     "loss": "soft cross-entropy + soft Dice of the defect class per window "
                             "(BiSeNetV2: + its 4 booster heads)",
                     "input": f"whole image resized to {s.res}x{s.res} (INTER_AREA), {channels} channel(s), each "
                              f"image standardised; targets = mask coverage; scored at native resolution",
                     "pretrained": False, "split_seed": s.split_seed, "pair_seed": s.seed, "threads": s.threads,
                     "work": str(s.work)},
        "split": {"train_real": len(proto.train_real), "test_defects": len(proto.test_defects),
                  "test_good": len(proto.test_good), "normals": len(proto.normals),
                  "bank_masks": len(proto.bank), "skipped": proto.skipped,
                  "per_type": {d: {"train_real": sum(x.defect == d for x in proto.train_real),
                                   "test": sum(x.defect == d for x in proto.test_defects)} for d in proto.defects}},
        "synthesis": synthesis, "results": results, "verdict": sard_words, "machine": machine(s.threads),
        "command": "python -m sard.evaluate " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).stem == "evaluate"
                   else s.command(),
        "command_explicit": s.command(),
    }


def marks(per: dict, names: list[str], defects: list[str]) -> dict:
    """Per row (type or Average) and metric: the best method by mean, and those within its spread."""
    out = {}
    rows = [(d, lambda n, k, d=d: per[n]["types"][d][k]) for d in defects] + \
           [("Average", lambda n, k: per[n]["mIoU" if k == "IoU" else "Acc"])]
    extra = [("mIoU_2class", True), ("aAcc", True), ("false_alarm_rate", False)]
    for row, get in rows:
        out[row] = {}
        for k in ("IoU", "Acc"):
            out[row][k] = _best(names, lambda n: get(n, k))
    out["extra"] = {k: _best(names, lambda n, k=k: per[n][k], higher) for k, higher in extra}
    return out


def _best(names: list[str], get, higher: bool = True) -> dict:
    """{"best": the methods with the best mean (several on a tie), "within": the others whose values
    are within the seed spread of the first best one}."""
    scored = [(n, get(n)) for n in names if not math.isnan(get(n)["mean"])]
    if not scored:
        return {"best": [], "within": []}
    top = (max if higher else min)(v["mean"] for _, v in scored)
    best = [n for n, v in scored if abs(v["mean"] - top) <= 1e-12]
    bv = get(best[0])["values"]
    return {"best": best, "within": [n for n, v in scored if n not in best and _within(v["values"], bv)]}


def verdict(results: dict, names: list[str]) -> dict:
    """Honest words per backbone on where SARD stands (or that no SARD checkpoint was given)."""
    out = {}
    for b, r in results.items():
        per, mk = r["methods"], r["marks"]["Average"]["IoU"]
        if not mk["best"]:
            out[b] = "no method produced a finite mIoU"
            continue
        best = mk["best"][0]
        bm = per[best]["mIoU"]
        best_labels = [LABELS.get(n, n) for n in mk["best"]]
        tied = ", ".join(best_labels[:-1]) + " and " + best_labels[-1]
        if len(mk["best"]) > 1:
            out[b] = (f"{tied} tie for the highest mean mIoU ({100 * bm['mean']:.1f} %)" +
                      ("" if "sard" in names else "; no SARD checkpoint was evaluated") + ".")
        elif "sard" not in names:
            out[b] = (f"{LABELS.get(best, best)} has the highest mean mIoU ({100 * bm['mean']:.1f} %); no SARD "
                      f"checkpoint was evaluated (give one as sard=CHECKPOINT_DIR).")
        elif best == "sard":
            rest = sorted((n for n in names if n != "sard"), key=lambda n: -per[n]["mIoU"]["mean"])
            if not rest:
                out[b] = f"SARD was the only method ({100 * bm['mean']:.1f} % mIoU)."
                continue
            second = rest[0]
            close = second in mk["within"]
            out[b] = (f"SARD has the highest mean mIoU ({100 * bm['mean']:.1f} % vs {LABELS.get(second, second)} "
                      f"{100 * per[second]['mIoU']['mean']:.1f} %)" +
                      ("; the margin is within the seed spread, so it is not a clear win." if close else
                       "; the margin is larger than the seed spread."))
        else:
            sm = per["sard"]["mIoU"]
            close = "sard" in mk["within"]
            out[b] = (f"SARD does not win here: {LABELS.get(best, best)} has the highest mean mIoU "
                      f"({100 * bm['mean']:.1f} %), SARD {100 * sm['mean']:.1f} %" +
                      (" (within the seed spread)." if close else " (the gap is larger than the seed spread)."))
    return out


# -- output -------------------------------------------------------------------------------------------

def _cell(v: dict, name: str, mk: dict, digits: int = 1) -> str:
    if v["mean"] is None or math.isnan(v["mean"]):
        return "n/a"
    text = f"{100 * v['mean']:.{digits}f} ± {100 * v['std']:.{digits}f}"
    if name in mk.get("best", []):
        return f"**{text}**"
    return text + (f" {DAGGER}" if name in mk.get("within", []) else "")


def _table(report: dict, backbone: str, names: list[str]) -> list[str]:
    """Table I / IV rows; bold and † among the methods of this table."""
    per = report["results"][backbone]["methods"]
    mk = marks(per, names, report["defects"])
    labels = [report["methods"][n]["label"] for n in names]
    lines = ["| Category | " + " | ".join(f"{lb} mIoU ↑ | {lb} Acc ↑" for lb in labels) + " |",
             "|---|" + "---|---|" * len(names)]
    for d in report["defects"]:
        row = {n: per[n]["types"][d] for n in names}
        cells = [f"{_cell(row[n]['IoU'], n, mk[d]['IoU'])} | {_cell(row[n]['Acc'], n, mk[d]['Acc'])}" for n in names]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    cells = [f"{_cell(per[n]['mIoU'], n, mk['Average']['IoU'])} | {_cell(per[n]['Acc'], n, mk['Average']['Acc'])}"
             for n in names]
    lines.append("| **Average** | " + " | ".join(cells) + " |")
    return lines


def _method_words(name: str, m: dict) -> str:
    return f"{m['label']} (`{name}`" + (f", checkpoint `{m['checkpoint']}`)" if m["checkpoint"] else ")")


def markdown(report: dict) -> str:
    st, sp = report["settings"], report["split"]
    names = list(report["methods"])
    data_name = Path(report["data"]).name
    L = [f"# Segmentation benchmark on {data_name}" + (" (--quick)" if report["quick"] else ""), ""]
    if report["quick"]:
        L += ["**Quick run**: a small CI-sized version of the benchmark (few types, pairs, steps and one seed); "
              "its figures check the pipeline, they are not results.", ""]
    L += ["Protocol of the paper's Tables I and IV (DESIGN.md section 2): per defect type a deterministic third of the "
          "real defects trains the synthesizers, forms the mask bank and joins every segmentation training set "
          "(\"Real only\" is that third alone); each synthetic method adds the same number of pairs per type, made "
          "from the same normal images and the same bank masks. The held-out two thirds and test/good are the test "
          "set, never seen by a synthesizer, a mask bank or a segmenter (checked by path).", "",
          "Cells: IoU and Acc (= TP / (TP + FN)) of the defect class in %, mean ± std over "
          f"{st['seeds']} seed(s); **bold** = best mean of the row, {DAGGER} = within the seed spread of the best "
          "(|difference| < the larger std)" + (" (one seed: no spread, so no marks)" if st["seeds"] == 1 else "") +
          ". Average = the mean over types (the paper's \"mIoU\" and \"Acc\").", ""]
    for b in st["backbones"]:
        L += [f"## Table I: {b} (trained from scratch)", ""] + _table(report, b, names) + [""]
    abl = [n for n in ABLATION if n in names]
    if len(abl) >= 2:
        for b in st["backbones"]:
            L += [f"## Table IV: ablation of RCD and DMG, {b}", ""] + _table(report, b, abl) + [""]
    L += ["## Other figures", "",
          "mIoU over {background, defect} and aAcc pooled over the whole test set (defect and good images); "
          "false-alarm rate = share of test/good images with a predicted defect region of at least 10 px (lower is "
          "better).", "",
          "| Method | " + " | ".join(f"{b} mIoU 2-class ↑ | {b} aAcc ↑ | {b} false alarms ↓"
                                   for b in st["backbones"]) + " |",
          "|---|" + "---|---|---|" * len(st["backbones"])]
    for n in names:
        cells = []
        for b in st["backbones"]:
            per, mk = report["results"][b]["methods"][n], report["results"][b]["marks"]["extra"]
            cells += [_cell(per[k], n, mk[k]) for k in ("mIoU_2class", "aAcc", "false_alarm_rate")]
        L.append(f"| {report['methods'][n]['label']} | " + " | ".join(cells) + " |")
    L += ["", "## Verdict", ""] + [f"- {b}: {w}" for b, w in report["verdict"].items()] + [""]
    L += ["## Settings", "",
          f"- Data: `{report['data']}`, types {', '.join(report['defects'])}; training real defects "
          f"{sp['train_real']}, test {sp['test_defects']} defect + {sp['test_good']} good images; mask bank "
          f"{sp['bank_masks']} masks; backgrounds from {sp['normals']} normal training images.",
          f"- Left out ({len(sp['skipped'])}): " + ("; ".join(sp["skipped"][:8]) or "nothing")
          + (f"; and {len(sp['skipped']) - 8} more (see the JSON)" if len(sp["skipped"]) > 8 else "") + ".",
          "- Per type (train real / test): "
          + ", ".join(f"{d} {v['train_real']}/{v['test']}" for d, v in sp["per_type"].items()) + ".",
          f"- Resolution {st['res']} px: {st['input']}. Each tile's defect probability is resized back to its native "
          "size (bilinear) and thresholded at 0.5, so defects lost by the resize count as missed.",
          f"- Pairs per type: {st['pairs_per_type']} (the paper: 500, `--pairs-per-type 500`); split seed "
          f"{st['split_seed']}, pair seed {st['pair_seed']}.",
          f"- Segmenters: {', '.join(st['backbones'])}; {st['iters']} steps, batch {st['batch']}, {st['optimizer']}, "
          f"lr {st['lr']:g}, {st['schedule']}; training data: {st['augmentation']}; loss: {st['loss']}. "
          "The loss is Dice + CE because small defects cover 0.1-1 % of an image (magnetic-tile blowholes and "
          "cracks): CE alone lets a net trained from scratch settle on \"all background\"; Dice per window weighs a "
          "small defect as much as a large one (details: sard/evaluation/seg_train.py).",
          "- **Trained from scratch**: no pretrained weights can be downloaded here, and each segmenter gets only "
          "a few hundred CPU steps, so absolute figures are far below the paper's; compare the methods with each "
          "other, not with the paper.",
          "- Methods: " + "; ".join(_method_words(n, v) for n, v in report["methods"].items()) + ".",
          f"- Machine: {report['machine']}. Wall time {report['wall_seconds']:.0f} s "
          f"({report['runs_trained']} runs trained, {report['runs_cached']} from the cache in `{st['work']}`).",
          f"- Command: `{report['command']}`", f"- Explicit: `{report['command_explicit']}`", ""]
    failed = {n: v["failed"] for n, v in report["synthesis"].items() if v.get("failed")}
    if failed:
        L += ["Synthesis failures (pairs left out): " + "; ".join(f"{n}: {len(f)}" for n, f in failed.items()), ""]
    return "\n".join(L)


def chart_png(report: dict) -> bytes:
    """Bar chart: mean mIoU (the paper's, mean over types) per method and backbone, std error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(report["methods"])
    backbones = report["settings"]["backbones"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 3.6), dpi=120)
    width = 0.8 / len(backbones)
    x = np.arange(len(names))
    for i, b in enumerate(backbones):
        per = report["results"][b]["methods"]
        means = [100 * np.nan_to_num(per[n]["mIoU"]["mean"]) for n in names]
        stds = [100 * np.nan_to_num(per[n]["mIoU"]["std"]) for n in names]
        ax.bar(x + (i - (len(backbones) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=b)
    ax.set_xticks(x, [report["methods"][n]["label"] for n in names], rotation=20)
    ax.set_ylabel("mIoU of the defect class (%)")
    title = f"{Path(report['data']).name}: segmenters from scratch, {report['settings']['seeds']} seed(s)"
    ax.set_title(title + (" (quick)" if report["quick"] else ""), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# -- command line -------------------------------------------------------------------------------------

def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("segmentation", help="the paper's benchmark: segmenters trained on each method's pairs",
                       description=__doc__.split("\n")[0])
    d = DEFAULTS
    p.add_argument("--data", required=True, type=Path, help="data set root (MVTec, BTAD or plain folder layout)")
    p.add_argument("--methods", help=f"comma list: real, {', '.join(BASELINES)}, and SARD variants as "
                                     f"NAME=CHECKPOINT_DIR (ddgan, w_rcd, w_dmg, sard are labelled as the paper) "
                                     f"(default {d['methods']})")
    p.add_argument("--backbones", help=f"comma list of {', '.join(SEGMENTERS)} (default {d['backbones']})")
    p.add_argument("--seeds", type=int, help=f"segmenters per method and backbone (default {d['seeds']})")
    p.add_argument("--pairs-per-type", type=int,
                   help=f"synthetic pairs per defect type (default {d['pairs_per_type']}; the paper: 500)")
    p.add_argument("--res", type=int, help=f"segmenter input size, whole tiles resized (default {d['res']})")
    p.add_argument("--crop", type=int, help=f"training windows of the res x res images, 0 = whole images "
                                          f"(default {d['crop']})")
    p.add_argument("--iters", type=int, help=f"segmenter training steps (default {d['iters']})")
    p.add_argument("--batch", type=int, help=f"segmenter batch (default {d['batch']})")
    p.add_argument("--lr", type=float, help=f"AdamW learning rate (default {d['lr']:g})")
    p.add_argument("--defects", help="comma list of defect types (default: all)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the real-defect split (as the checkpoints')")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthesis job list")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--work", default="runs/segmentation", help="cache of pairs and per-run results (resumable)")
    p.add_argument("--out", default="reports/segmentation.md", help="Markdown report")
    p.add_argument("--json", help="JSON report (default: --out with .json)")
    p.add_argument("--chart", help="bar chart PNG (default: --out with .png)")
    p.add_argument("--quick", action="store_true",
                   help="CI-sized run: first 2 types, 6 pairs, res 96, 64 px crops, 100 steps, batch 8, 1 seed, "
                        "segformer-b0 (flags given explicitly still win)")
    return p
