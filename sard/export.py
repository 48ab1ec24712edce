"""python -m sard.export: write synthetic defect image/mask pairs in the MVTec-AD (or folder) layout.

Every pair k of defect type d is a pure function of (seed, d, k): which normal image, which mask,
which synthesis seed. Its manifest line records all of it, so `regenerate` rebuilds the pair
bit for bit. Nothing is lost: files go through temporary names, the manifest line is written
before the final renames, existing pairs are never overwritten, and a rerun (resume is the
default) completes exactly the pairs that are missing.

`python -m sard.export --write-bank CHECKPOINT --data DATASET_ROOT` gives a model folder its real-mask
bank instead (sard.masks.write_bank), so the studio and `--masks bank` work without the data set.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from sard.baselines import make_baseline
from sard.data import list_dataset, split_defects
from sard.data.readers import Sample
from sard.io import IMAGE_EXTENSIONS, SardInputError, is_image_file, read_image, read_mask
from sard.masks import (BANK_PLACEMENTS, MASK_KINDS, MaskBank, mask_from_params, object_foreground, random_mask,
                        read_bank, write_bank)
from sard.pairs import PairWriter, pair_rng, pair_seed, safe_name
from sard.pipeline import DEFAULT_CHECKPOINT, SardPipeline, resolve_checkpoint
from sard.validate import seed as check_seed, writable_folder, write_error

METHODS = ("sard", "cutpaste", "draem", "glass")
DEFAULT_AREA = (0.005, 0.05)


def find_normals(path: Path) -> tuple[list[Path], list[Sample]]:
    """Normal images from a folder of images, or from a data set root (its train normals).
    Returns (normals, the data set's samples or []), with absolute paths for the manifest."""
    path = Path(path).resolve()
    if not path.exists():
        raise SardInputError(f"--normals {path}: does not exist; expected a folder of normal images or a data set root")
    if path.is_file():
        raise SardInputError(f"--normals {path}: is a file; expected a folder")
    direct = sorted(p for p in path.iterdir() if is_image_file(p))
    if direct:
        return direct, []
    try:
        samples = list_dataset(path)
    except SardInputError:
        samples = []
    normals = [s.image for s in samples if s.is_normal and s.split == "train"] or \
              [s.image for s in samples if s.is_normal]
    if not normals:
        raise SardInputError(f"--normals {path}: holds no normal images; expected {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} "
                             f"files, or a data set root with train/good")
    return normals, samples


class MaskSource:
    """Masks for pair k: a random generator (kind) or a folder of mask files."""

    def __init__(self, spec: str, area: tuple[float, float] | None, bank=None, on_part: bool = False,
                 resize: bool = False, bank_params: dict | None = None):
        if area is None and spec != "bank":
            area = DEFAULT_AREA  # the bank keeps real masks at their natural size unless asked
        self.spec, self.area, self.bank, self.on_part, self.resize = spec, area, bank, on_part, resize
        self.params = dict(bank_params or {}) if spec == "bank" else {}
        self.files: list[Path] = []
        if spec not in MASK_KINDS:
            folder = Path(spec)
            if not folder.is_dir():
                raise SardInputError(f"--masks {spec}: expected one of {', '.join(MASK_KINDS)} or a folder of masks")
            self.files = sorted(p for p in folder.iterdir() if is_image_file(p))
            if not self.files:
                raise SardInputError(f"--masks {spec}: the folder holds no mask images")
        elif spec == "bank" and (bank is None or len(bank) == 0):
            raise SardInputError("--masks bank: needs real masks; pass a data set root as --normals or --bank DIR, "
                                  "or a checkpoint that carries its bank")

    def make(self, image: np.ndarray, defect: str, seed: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        shape = image.shape[:2]
        if self.files:
            path = self.files[int(rng.integers(len(self.files)))]
            m = read_mask(path)
            if m.shape != shape:
                if not self.resize:
                    raise SardInputError(f"--masks {path}: {m.shape[1]}x{m.shape[0]} does not match the normal image's "
                                         f"{shape[1]}x{shape[0]}; pass --resize-masks to resize (nearest)")
                m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            if not m.any():
                raise SardInputError(f"--masks {path}: mask is empty")
            return m.astype(np.uint8) * 255, {"kind": "file", "file": str(path.resolve()), "resized": bool(self.resize)}
        fg = object_foreground(image) if self.on_part else None
        bank_defect = defect if self.bank is not None and defect in getattr(self.bank, "defects", []) else None
        return random_mask(self.spec, shape, seed, self.area, foreground=fg, bank=self.bank, defect=bank_defect,
                           **self.params)


def mask_from_record(params: dict, image: np.ndarray, bank=None) -> np.ndarray:
    if params.get("kind") == "file":
        m = read_mask(params["file"])
        if m.shape != image.shape[:2]:
            m = cv2.resize(m.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        return m.astype(np.uint8) * 255
    fg = object_foreground(image) if params.get("foreground") else None
    return mask_from_params(params, foreground=fg, bank=bank)


Synthesizer = Callable[..., "object"]


def make_method(method: str, checkpoint: Path | None = None, steps: int | None = None, roi: bool = True,
                rcd: bool = True, texture_dir: Path | None = None, sources: list | None = None,
                device: str | None = None) -> tuple[Synthesizer, dict]:
    """(callable(image, mask, seed=, defect=) -> SynthesisResult, the method's parameters for the manifest)."""
    if method == "sard":
        ck = resolve_checkpoint(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        pipe = SardPipeline.from_pretrained(ck, device=device)
        params = {"checkpoint": str(ck), "checkpoint_hash": pipe.checkpoint_hash, "defects": pipe.defects,
                  "steps": steps or pipe.schedule.num_steps, "roi": roi, "rcd": rcd}

        def synthesize(image, mask, seed, defect):
            # A single-type checkpoint takes any folder name; a multi-type one needs one of its types.
            label = defect if defect in pipe.defects or len(pipe.defects) > 1 else None
            return pipe(image, mask, seed=seed, defect=label, steps=steps, roi=roi, rcd=rcd)
        return synthesize, params
    if method not in METHODS:
        raise SardInputError(f"--method: expected one of {', '.join(METHODS)}, got '{method}'")
    kwargs = {}
    if method in ("draem", "glass"):
        kwargs = {"texture_dir": texture_dir, "sources": sources}
    base = make_baseline(method, **kwargs)
    params = {"texture_dir": str(texture_dir) if texture_dir else None,
              "sources": len(sources) if sources and method in ("draem", "glass") else 0}
    return (lambda image, mask, seed, defect: base(image, mask, seed=seed, defect=defect)), params


# -- the export run -------------------------------------------------------------------------------
@dataclass
class ExportPlan:
    normals: list[Path]
    defects: list[str]
    per_type: int
    seed: int
    shard: tuple[int, int] = (0, 1)

    def jobs(self) -> list[tuple[str, int]]:
        all_jobs = [(d, k) for d in self.defects for k in range(self.per_type)]
        i, n = self.shard
        return [job for g, job in enumerate(all_jobs) if g % n == i]


def pick_normal(plan: ExportPlan, defect: str, k: int, bad: dict[Path, str]) -> tuple[Path, np.ndarray]:
    """The normal image of pair k (deterministic), skipping unreadable ones (recorded in `bad`)."""
    start = int(pair_rng(plan.seed, defect, k).integers(len(plan.normals)))
    for j in range(len(plan.normals)):
        p = plan.normals[(start + j) % len(plan.normals)]
        if p in bad:
            continue
        try:
            return p, read_image(p)
        except SardInputError as e:
            bad[p] = str(e)
    reasons = "; ".join(list(bad.values())[:3])
    raise SardInputError(f"--normals: none of the {len(plan.normals)} normal images is readable: {reasons}")


def run_export(plan: ExportPlan, writer: PairWriter, method: Synthesizer, method_name: str, method_params: dict,
               masks: MaskSource, progress: bool = True) -> dict:
    bad: dict[Path, str] = {}
    todo = [(d, k) for d, k in plan.jobs() if not writer.done(d, k)]
    written, t0 = 0, time.perf_counter()
    bar = tqdm(todo, desc=f"sard.export {method_name}", unit="pair", disable=not progress, dynamic_ncols=True)
    try:
        for defect, k in bar:
            src, image = pick_normal(plan, defect, k, bad)
            seed = pair_seed(plan.seed, defect, k)
            t = time.perf_counter()
            try:
                mask, mask_params = masks.make(image, defect, seed, pair_rng(plan.seed, defect, k, stream=1))
                t = time.perf_counter()
                result = method(image, mask, seed, defect)
            except SardInputError as e:
                raise SardInputError(f"normal image {src}: {e}") from None
            seconds = time.perf_counter() - t
            rec = {"source": str(src.resolve()), "mask_params": mask_params, "seed": seed, "method": method_name,
                   "method_params": method_params, "checkpoint": method_params.get("checkpoint_hash"),
                   "steps": method_params.get("steps"), "colour": result.colour, "seconds": round(seconds, 4),
                   "export_seed": plan.seed}
            writer.write(defect, k, np.asarray(result.image), np.asarray(result.mask), rec)
            written += 1
    except OSError as e:
        raise ExportFailed(f"{write_error(e, e.filename or writer.base)}, then rerun to complete: {written} pairs "
                           f"written in this run, {writer.count()} in {writer.base} in all; "
                           f"no partial file was left") from None
    elapsed = time.perf_counter() - t0
    return {"written": written, "skipped_existing": len(plan.jobs()) - len(todo), "seconds": elapsed,
            "pairs_per_second": written / elapsed if elapsed > 0 and written else 0.0,
            "unreadable": {str(p): why for p, why in bad.items()}}


class ExportFailed(RuntimeError):
    pass


def regenerate(record: dict, bank=None, checkpoint: Path | None = None, texture_dir=None,
               sources: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild a pair from its manifest line: (image, mask uint8 0/255)."""
    image = read_image(record["source"])
    mask = mask_from_record(record["mask_params"], image, bank)
    mp = record["method_params"]
    method, _ = make_method(record["method"], checkpoint or (Path(mp["checkpoint"]) if mp.get("checkpoint") else None),
                            mp.get("steps"), mp.get("roi", True), mp.get("rcd", True), texture_dir, sources)
    result = method(image, mask, record["seed"], record["defect"])
    return np.asarray(result.image), np.asarray(result.mask)


# -- command line ---------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sard.export", description=__doc__.split("\n")[0])
    p.add_argument("--method", default="sard", help=f"one of {', '.join(METHODS)} (default sard)")
    p.add_argument("--checkpoint", help=f"model folder or shipped name for --method sard (default {DEFAULT_CHECKPOINT.name})")
    p.add_argument("--normals", required=True, help="folder of normal images, or a data set root (its train normals)")
    p.add_argument("--masks", default="bank", help="perlin, ellipse, scratch, polygon, bank (real masks) or a folder of masks")
    p.add_argument("--bank", help="data set root whose synthesizer third gives the mask bank (default: --normals if a data set)")
    p.add_argument("--area", help="mask area range as fractions of the image (default 0.005,0.05; "
                                  "bank masks keep their natural size unless given)")
    p.add_argument("--bank-placement", choices=BANK_PLACEMENTS, default="source",
                   help="bank masks where they sat in their own image, edges kept (default), or anywhere")
    p.add_argument("--bank-rotation", type=float, default=15.0,
                   help="bank masks rotated by at most this many degrees (default 15; 180: any orientation)")
    p.add_argument("--on-part", action="store_true", help="keep masks on the part (Otsu foreground; for object categories)")
    p.add_argument("--defects", help="comma-separated defect types (default: the checkpoint's or the bank's)")
    p.add_argument("--per-type", type=int, default=500, help="pairs per defect type (default 500, as the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="export root; pairs go to <out>/<category>/")
    p.add_argument("--layout", default="mvtec", help="mvtec (test/<defect>, ground_truth/<defect>) or folder")
    p.add_argument("--category", help="category folder name (default: the data set folder's name)")
    p.add_argument("--copy-normals", action="store_true", help="copy the normal images to train/good")
    p.add_argument("--link-normals", action="store_true", help="symlink the normal images into train/good")
    p.add_argument("--resize-masks", action="store_true", help="resize mask files to each normal image (nearest)")
    p.add_argument("--shard", help="i/n: this process writes every n-th pair starting at i (default: torchrun's rank)")
    p.add_argument("--steps", type=int, help="reverse steps for sard (default the checkpoint's T)")
    p.add_argument("--no-roi", action="store_true", help="run the network on the whole image, not the mask's region")
    p.add_argument("--no-rcd", action="store_true", help="plain DDGAN sampling (changes the background)")
    p.add_argument("--texture-dir", help="texture images for draem/glass (default: other normal images)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--no-resume", action="store_true", help="refuse to add to a folder that already has pairs")
    return p.parse_args(argv)


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        return 0, 1
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise SardInputError(f"--shard '{text}': expected i/n with 0 <= i < n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def parse_area(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise SardInputError(f"--area '{text}': expected two fractions lo,hi such as 0.005,0.05") from None
    if not 0 < lo <= hi <= 1:
        raise SardInputError(f"--area '{text}': expected 0 < lo <= hi <= 1")
    return lo, hi


def write_bank_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sard.export --write-bank",
                                description="Give a model folder the real-mask bank of its training third.")
    p.add_argument("--write-bank", required=True, metavar="CHECKPOINT", help="model folder or shipped name")
    p.add_argument("--data", required=True, help="the data set root the checkpoint was trained on")
    a = p.parse_args(argv)
    try:
        bank = write_bank(resolve_checkpoint(a.write_bank, "--write-bank"), a.data)
    except SardInputError as e:
        print(f"sard.export: error: {e}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in bank.rglob("*.png"))
    print(f"sard.export: {len(list(bank.rglob('*.png')))} masks ({size / 1000:.0f} kB) in {bank}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--write-bank" in argv:
        return write_bank_main(argv)
    try:
        a = parse_args(argv)
        if a.per_type < 1:
            raise SardInputError(f"--per-type: expected a positive number of pairs per defect type, got {a.per_type}")
        if a.method not in METHODS:
            raise SardInputError(f"--method: expected one of {', '.join(METHODS)}, got '{a.method}'")
        check_seed("--seed", a.seed)
        shard = parse_shard(a.shard)
        out = writable_folder("--out", a.out)
        normals_root = Path(a.normals)
        normals, samples = find_normals(normals_root)
        bank_root = Path(a.bank) if a.bank else (normals_root if samples else None)
        bank = None
        if bank_root is not None:
            bank_samples = samples if bank_root == normals_root and samples else list_dataset(bank_root)
            bank = MaskBank.from_samples(split_defects(bank_samples).synth)
        elif a.masks == "bank" and a.method == "sard":   # no data set: the checkpoint's own bank
            bank = read_bank(resolve_checkpoint(a.checkpoint or DEFAULT_CHECKPOINT))
        category = a.category or normals_root.resolve().name
        sources = normals if a.method in ("draem", "glass") else None
        method, params = make_method(a.method, Path(a.checkpoint) if a.checkpoint else None, a.steps,
                                     not a.no_roi, not a.no_rcd, Path(a.texture_dir) if a.texture_dir else None,
                                     sources, a.device)
        if a.defects:
            defects = [d.strip() for d in a.defects.split(",") if d.strip()]
        elif a.method == "sard" and params.get("defects"):
            defects = params["defects"]
        elif bank is not None and bank.defects:
            defects = list(bank.defects)
        else:
            defects = ["synthetic"]
        for d in defects:
            safe_name(d, "defect")
        if a.masks == "bank" and bank is not None and a.defects:
            unknown = [d for d in defects if d not in bank.defects]
            if unknown:
                raise SardInputError(f"--defects {unknown}: the mask bank of {bank_root} holds {list(bank.defects)}")
        if a.method == "sard" and params.get("defects") and len(params["defects"]) > 1:
            unknown = [d for d in defects if d not in params["defects"]]
            if unknown:
                raise SardInputError(f"--defects {unknown}: the checkpoint knows {params['defects']}")
        writer = PairWriter(out, category, a.layout)
        if a.no_resume and writer.lines:
            raise SardInputError(f"--out {writer.base}: already holds {len(writer.lines)} pairs and --no-resume was given")
        masks = MaskSource(a.masks, parse_area(a.area), bank, a.on_part, a.resize_masks,
                           {"placement": a.bank_placement, "rotation": a.bank_rotation})
        if a.copy_normals or a.link_normals:
            writer.link_normals(normals, copy=not a.link_normals)
        plan = ExportPlan(normals, defects, a.per_type, a.seed, shard)
        summary = run_export(plan, writer, method, a.method, params, masks)
    except SardInputError as e:
        print(f"sard.export: error: {e}", file=sys.stderr)
        return 2
    except ExportFailed as e:
        print(f"sard.export: failed: {e}", file=sys.stderr)
        return 1
    print(f"sard.export: {summary['written']} pairs written, {summary['skipped_existing']} already there, "
          f"{summary['pairs_per_second']:.2f} pairs/s, in {writer.base}", file=sys.stderr)
    if summary["unreadable"]:
        print(f"sard.export: {len(summary['unreadable'])} unreadable normal images skipped:", file=sys.stderr)
        for p, why in summary["unreadable"].items():
            print(f"  {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
