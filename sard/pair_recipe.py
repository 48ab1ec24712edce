"""One image/mask pair, made one way, and the loop that writes many: a normal image, a mask from a
MaskSource, a synthesizer of sard.synthesizers, a manifest line. Export and the segmentation
benchmark write their pairs with `write_pairs`; `regenerate` rebuilds a pair from its line.

Every pair k of defect type d is a pure function of (seed, d, k): which normal image, which mask,
which synthesis seed (sard.pairs.pair_rng), so a manifest line rebuilds it bit for bit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from sard.data import list_dataset, normal_images
from sard.data.readers import Sample
from sard.io import IMAGE_EXTENSIONS, SardInputError, is_image_file, read_image, read_mask_file
from sard.masks import MASK_KINDS, mask_from_params, object_foreground, random_mask
from sard.pairs import PairWriter, pair_rng, pair_seed
from sard.results import SynthesisResult
from sard.synthesizers import Synthesizer, from_record
from sard.validate import write_error

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
    normals = normal_images(samples, "train")
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
            m = read_mask_file(path)
            if m.shape != shape:
                if not self.resize:
                    raise SardInputError(f"--masks {path}: {m.shape[1]}x{m.shape[0]} does not match the normal image's "
                                         f"{shape[1]}x{shape[0]}; pass --resize-masks to resize (nearest)")
                m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            return m.astype(np.uint8) * 255, {"kind": "file", "file": str(path.resolve()), "resized": bool(self.resize)}
        fg = object_foreground(image) if self.on_part else None
        bank_defect = defect if self.bank is not None and defect in getattr(self.bank, "defects", []) else None
        return random_mask(self.spec, shape, seed, self.area, foreground=fg, bank=self.bank, defect=bank_defect,
                           **self.params)


def mask_from_record(params: dict, image: np.ndarray, bank=None) -> np.ndarray:
    if params.get("kind") == "file":
        m = read_mask_file(params["file"])
        if m.shape != image.shape[:2]:
            m = cv2.resize(m.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        return m.astype(np.uint8) * 255
    fg = object_foreground(image) if params.get("foreground") else None
    return mask_from_params(params, foreground=fg, bank=bank)


@dataclass(frozen=True)
class PairJob:
    """Pair k of a defect type: the normal image it starts from, the mask's seed, the synthesis seed."""
    defect: str
    k: int
    seed: int          # the run's seed: the pair's random streams are (seed, defect, k)
    normal: Path
    mask_seed: int
    synth_seed: int

    @classmethod
    def of(cls, normals: list[Path], seed: int, defect: str, k: int, synth_stream: int | None = None) -> "PairJob":
        """The job (seed, defect, k) names; synth_stream None: the mask's seed synthesizes too (export)."""
        normal = normals[int(pair_rng(seed, defect, k).integers(len(normals)))]
        mask_seed = pair_seed(seed, defect, k)
        synth_seed = mask_seed if synth_stream is None else \
            int(pair_rng(seed, defect, k, stream=synth_stream).integers(0, 2 ** 31 - 1))
        return cls(defect, k, seed, normal, mask_seed, synth_seed)


@dataclass
class Pair:
    job: PairJob
    source: Path                   # the normal image it was made on
    result: SynthesisResult
    mask_params: dict
    seconds: float                 # synthesis alone


def make_pair(job: PairJob, source: Path, image: np.ndarray, synth: Synthesizer, masks: MaskSource) -> Pair:
    """Draw the job's mask on `image` and synthesize in it; errors name the normal image."""
    try:
        mask, mask_params = masks.make(image, job.defect, job.mask_seed, pair_rng(job.seed, job.defect, job.k, stream=1))
        t = time.perf_counter()
        result = synth(image, mask, seed=job.synth_seed, defect=job.defect)
    except SardInputError as e:
        raise SardInputError(f"normal image {source}: {e}") from None
    return Pair(job, source, result, mask_params, time.perf_counter() - t)


def read_normal(job: PairJob) -> tuple[Path, np.ndarray]:
    return job.normal, read_image(job.normal)


def write_pairs(jobs: Iterable[PairJob], writer: PairWriter, synth: Synthesizer, masks: MaskSource,
                record: Callable[[Pair], dict], open_normal: Callable = read_normal, failed: dict | None = None,
                desc: str = "", progress: bool = True) -> None:
    """Make and write each job's pair with its manifest line record(pair). failed None: the first bad
    job stops the run; a dict: it collects why ("defect #k": message) and the run goes on."""
    for job in tqdm(list(jobs), desc=desc, unit="pair", disable=not progress, dynamic_ncols=True, mininterval=1):
        try:
            source, image = open_normal(job)
            pair = make_pair(job, source, image, synth, masks)
        except SardInputError as e:
            if failed is None:
                raise
            failed[f"{job.defect} #{job.k}"] = str(e)
            continue
        writer.write(job.defect, job.k, np.asarray(pair.result.image), np.asarray(pair.result.mask), record(pair))


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


def run_export(plan: ExportPlan, writer: PairWriter, synth: Synthesizer, masks: MaskSource,
               progress: bool = True) -> dict:
    bad: dict[Path, str] = {}
    todo = [PairJob.of(plan.normals, plan.seed, d, k) for d, k in plan.jobs() if not writer.done(d, k)]
    before, t0 = writer.count(), time.perf_counter()

    def record(pair: Pair) -> dict:
        return {"source": str(pair.source.resolve()), "mask_params": pair.mask_params, "seed": pair.job.synth_seed,
                "method": synth.name, "method_params": synth.params, "checkpoint": synth.params.get("checkpoint_hash"),
                "steps": synth.params.get("steps"), "colour": pair.result.colour, "seconds": round(pair.seconds, 4),
                "export_seed": plan.seed}
    try:
        write_pairs(todo, writer, synth, masks, record, lambda job: pick_normal(plan, job.defect, job.k, bad),
                    desc=f"sard.export {synth.name}", progress=progress)
    except OSError as e:
        raise ExportFailed(f"{write_error(e, e.filename or writer.base)}, then rerun to complete: "
                           f"{writer.count() - before} pairs written in this run, {writer.count()} in {writer.base} "
                           f"in all; no partial file was left") from None
    elapsed, written = time.perf_counter() - t0, writer.count() - before
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
    synth = from_record(record, checkpoint, texture_dir, sources)
    result = synth(image, mask, record["seed"], record["defect"])
    return np.asarray(result.image), np.asarray(result.mask)
