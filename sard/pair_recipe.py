"""One image/mask pair, made one way, and the loop that writes many: a normal image, a mask from a
MaskSource, a synthesizer of sard.synthesizers, a manifest line. Export and the segmentation
benchmark write their pairs with `write_pairs`; `regenerate` rebuilds a pair from its line.

Every pair k of defect type d is a pure function of (seed, d, k): which normal image, which mask,
which synthesis seed (sard.pairs.pair_rng), so a manifest line rebuilds it bit for bit.
"""
from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from sard.data import list_dataset, normal_images
from sard.data.readers import Sample
from sard.io import IMAGE_EXTENSIONS, SardInputError, is_image_file, read_image, read_mask_file, utf8_path
from sard.masks import MASK_KINDS, mask_from_params, object_foreground, part_for_masks, random_mask
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

    def __init__(self, spec: str, area: tuple[float, float] | None, bank=None, on_part: str = "off",
                 resize: bool = False, bank_params: dict | None = None):
        """on_part: "on", "off" or "auto" (on the part of an object image where one is found; part_for_masks)."""
        if area is None and spec != "bank":
            area = DEFAULT_AREA  # the bank keeps real masks at their natural size unless asked
        self.spec, self.area, self.bank, self.on_part, self.resize = spec, area, bank, on_part, resize
        self.placed: Counter[str] = Counter()     # where the masks went, in words, and how many
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

    @property
    def kind(self) -> str:
        """The mask_params kind its masks record: a generator's name, or "file"."""
        return "file" if self.files else self.spec

    def make(self, image: np.ndarray, defect: str, seed: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        shape = image.shape[:2]
        if self.files:
            path = self.files[int(rng.integers(len(self.files)))]
            utf8_path(path, "mask file")
            m = read_mask_file(path)
            if m.shape != shape:
                if not self.resize:
                    raise SardInputError(f"--masks {path}: {m.shape[1]}x{m.shape[0]} does not match the normal image's "
                                         f"{shape[1]}x{shape[0]}; pass --resize-masks to resize (nearest)")
                m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            return m.astype(np.uint8) * 255, {"kind": "file", "file": str(path.resolve()), "resized": bool(self.resize)}
        part = part_for_masks(image, self.on_part)
        self.placed[part.why] += 1
        fg = part.mask
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
    seconds: float                 # synthesis alone (a batch's time shared by its pairs)
    batch: dict | None = None      # made in a batched call: its size, network input shape, members [[defect, k]]


def draw_mask(job: PairJob, source: Path, image: np.ndarray, masks: MaskSource) -> tuple[np.ndarray, dict]:
    """The job's mask on `image` and its parameters; errors name the normal image."""
    try:
        return masks.make(image, job.defect, job.mask_seed, pair_rng(job.seed, job.defect, job.k, stream=1))
    except SardInputError as e:
        raise SardInputError(f"normal image {source}: {e}") from None


def make_pair(job: PairJob, source: Path, image: np.ndarray, synth: Synthesizer, masks: MaskSource) -> Pair:
    """Draw the job's mask on `image` and synthesize in it; errors name the normal image."""
    return synthesize_pair(job, source, image, *draw_mask(job, source, image, masks), synth)


def synthesize_pair(job: PairJob, source: Path, image: np.ndarray, mask: np.ndarray, mask_params: dict,
                    synth: Synthesizer) -> Pair:
    """The job's pair in a mask already drawn; errors name the normal image."""
    try:
        t = time.perf_counter()
        result = synth(image, mask, seed=job.synth_seed, defect=job.defect)
    except SardInputError as e:
        raise SardInputError(f"normal image {source}: {e}") from None
    return Pair(job, source, result, mask_params, time.perf_counter() - t)


def make_pairs_together(drawn: list[tuple], synth: Synthesizer, size: int) -> list[Pair]:
    """The pairs of (job, source, image, mask, mask_params) synthesized in calls of at most `size` jobs
    (Synthesizer.batch); a pair that shared its call records the call's members by job id."""
    t = time.perf_counter()
    results = synth.batch([(image, mask, job.synth_seed, job.defect) for job, _, image, mask, _ in drawn], size)
    seconds = (time.perf_counter() - t) / len(drawn)
    pairs = []
    for (job, source, _, _, params), result in zip(drawn, results):
        b = result.timings.get("batch")
        members = [[drawn[n][0].defect, drawn[n][0].k] for n in b["members"]] if b and b["size"] > 1 else None
        pairs.append(Pair(job, source, result, params, seconds,
                          {"size": b["size"], "shape": b["shape"], "members": members} if members else None))
    return pairs


def read_normal(job: PairJob) -> tuple[Path, np.ndarray]:
    return job.normal, read_image(job.normal)


def _failed(job: PairJob, e: SardInputError, failed: dict | None) -> None:
    if failed is None:
        raise e
    failed[f"{job.defect} #{job.k}"] = str(e)


def make_pairs(jobs: list[PairJob], synth: Synthesizer, masks: MaskSource, open_normal: Callable,
               failed: dict | None, size: int) -> Iterator[Pair]:
    """The jobs' pairs, one at a time (size 1) or synthesized together; a job that fails goes to `failed`,
    or raises without it. One job the network refuses in a batch: each job of the batch alone."""
    drawn = []
    for job in jobs:
        try:
            source, image = open_normal(job)
            if size > 1:
                drawn.append((job, source, image, *draw_mask(job, source, image, masks)))
                continue
            pair = make_pair(job, source, image, synth, masks)
        except SardInputError as e:
            _failed(job, e, failed)
            continue
        yield pair
    try:
        together = make_pairs_together(drawn, synth, size) if drawn else []
    except SardInputError:
        together = []
        for job, source, image, mask, mask_params in drawn:     # the masks drawn once, kept
            try:
                together.append(synthesize_pair(job, source, image, mask, mask_params, synth))
            except SardInputError as e:
                _failed(job, e, failed)
    yield from together


BATCH_WINDOW = 4    # batches' worth of jobs grouped by region size at once, so that one size fills a batch
MAX_BATCH = 1024    # jobs a network call at most: a bound on the flags (the regions must also fit the device)


def write_pairs(jobs: Iterable[PairJob], writer: PairWriter, synth: Synthesizer, masks: MaskSource,
                record: Callable[[Pair], dict], open_normal: Callable = read_normal, failed: dict | None = None,
                desc: str = "", progress: bool = True, total: int | None = None, batch: int = 1) -> None:
    """Make and write each job's pair with its manifest line record(pair). failed None: the first bad
    job stops the run; a dict: it collects why ("defect #k": message) and the run goes on. batch > 1:
    SARD takes BATCH_WINDOW * batch jobs at a time, at most `batch` of them a network call."""
    size = batch if synth.run_batch is not None else 1
    todo = iter(tqdm(jobs, desc=desc, unit="pair", disable=not progress, dynamic_ncols=True, mininterval=1,
                     total=total))
    while window := list(islice(todo, BATCH_WINDOW * size if size > 1 else 1)):
        for pair in make_pairs(window, synth, masks, open_normal, failed, size):
            writer.write(pair.job.defect, pair.job.k, np.asarray(pair.result.image), np.asarray(pair.result.mask),
                         record(pair))


# -- the export run -------------------------------------------------------------------------------
@dataclass
class ExportPlan:
    normals: list[Path]
    defects: list[str]
    per_type: int
    seed: int
    shard: tuple[int, int] = (0, 1)

    def _ranges(self) -> Iterator[tuple[str, range]]:
        """Per type, this shard's k: job g = (type index) * per_type + k goes to shard g % n."""
        i, n = self.shard
        for t, d in enumerate(self.defects):
            yield d, range((i - t * self.per_type) % n, self.per_type, n)

    def jobs(self) -> Iterator[tuple[str, int]]:
        """(defect, k) of this shard, made as they are taken: a huge plan costs no memory up front."""
        return ((d, k) for d, ks in self._ranges() for k in ks)

    def count(self) -> int:
        return sum(len(ks) for _, ks in self._ranges())


def check_room(plan: ExportPlan, out: Path) -> None:
    """Refuse a plan the disk cannot hold even at a generous PNG compression (a quarter of the raw
    pixels a pair), naming --per-type and the largest value that fits."""
    try:
        with Image.open(plan.normals[0]) as img:          # the header only: size and channels
            w, h, bands, wide = img.width, img.height, len(img.getbands()), img.mode.startswith("I;16")
    except (OSError, ValueError, Image.DecompressionBombError):   # pick_normal refuses or skips it, saying why
        return
    least, free = w * h * bands * (2 if wide else 1) // 4 + w * h // 8, shutil.disk_usage(out).free
    if plan.count() * least > free:
        fits = free // least * plan.shard[1] // len(plan.defects)
        raise SardInputError(f"--per-type {plan.per_type}: {plan.count()} pairs of at least {least / 1e6:.2f} MB need "
                             f"{plan.count() * least / 1e9:.1f} GB, {out} has {free / 1e9:.1f} GB free; "
                             f"at most {fits} a type fit")


def pick_normal(plan: ExportPlan, defect: str, k: int, bad: dict[Path, str]) -> tuple[Path, np.ndarray]:
    """The normal image of pair k (deterministic), skipping unreadable ones (recorded in `bad`)."""
    start = int(pair_rng(plan.seed, defect, k).integers(len(plan.normals)))
    for j in range(len(plan.normals)):
        p = plan.normals[(start + j) % len(plan.normals)]
        if p in bad:
            continue
        try:
            utf8_path(p, "normal image")
            return p, read_image(p)
        except SardInputError as e:
            bad[p] = str(e)
    reasons = "; ".join(list(bad.values())[:3])
    raise SardInputError(f"--normals: none of the {len(plan.normals)} normal images is readable: {reasons}")


def made_differently(rec: dict, synth: Synthesizer, masks: MaskSource, seed: int) -> str | None:
    """How a pair already in the folder was made unlike this run would make it, in words (None: alike)."""
    then = {"method": rec.get("method"), "checkpoint": rec.get("checkpoint"),
            "masks": (rec.get("mask_params") or {}).get("kind"), "--seed": rec.get("export_seed")}
    now = {"method": synth.name, "checkpoint": synth.params.get("checkpoint_hash"), "masks": masks.kind, "--seed": seed}
    return ", ".join(f"{k} {then[k]} (this run: {now[k]})" for k in now if then[k] != now[k]) or None


def run_export(plan: ExportPlan, writer: PairWriter, synth: Synthesizer, masks: MaskSource,
               progress: bool = True, batch: int = 1) -> dict:
    """Write the plan's missing pairs (SARD: at most `batch` a network call); the summary says what was
    written, kept, skipped and how the pairs already there differ from this run's (they are kept, never remade)."""
    bad: dict[Path, str] = {}
    kept, unlike = [0], {}
    before, t0 = writer.count(), time.perf_counter()

    def todo() -> Iterator[PairJob]:
        for d, k in plan.jobs():
            if not writer.done(d, k):
                yield PairJob.of(plan.normals, plan.seed, d, k)
                continue
            kept[0] += 1
            why = made_differently(writer.lines[(d, k)], synth, masks, plan.seed)
            if why:
                unlike[why] = unlike.get(why, 0) + 1

    def record(pair: Pair) -> dict:
        return {"source": str(pair.source.resolve()), "mask_params": pair.mask_params, "seed": pair.job.synth_seed,
                "method": synth.name, "method_params": synth.params, "checkpoint": synth.params.get("checkpoint_hash"),
                "steps": synth.params.get("steps"), "colour": pair.result.colour, "seconds": round(pair.seconds, 4),
                "export_seed": plan.seed, **({"batch": pair.batch} if pair.batch else {})}
    try:
        write_pairs(todo(), writer, synth, masks, record, lambda job: pick_normal(plan, job.defect, job.k, bad),
                    desc=f"sard.export {synth.name}", progress=progress, total=max(plan.count() - before, 0) or None,
                    batch=batch)
    except OSError as e:
        raise ExportFailed(f"{write_error(e, e.filename or writer.base)}, then rerun to complete: "
                           f"{writer.count() - before} pairs written in this run, {writer.count()} in {writer.base} "
                           f"in all; no partial file was left") from None
    elapsed, written = time.perf_counter() - t0, writer.count() - before
    return {"written": written, "skipped_existing": kept[0], "made_differently": unlike, "seconds": elapsed,
            "pairs_per_second": written / elapsed if elapsed > 0 and written else 0.0,
            "unreadable": {str(p): why for p, why in bad.items()}}


class ExportFailed(RuntimeError):
    pass


def regenerate(record: dict, bank=None, checkpoint: Path | None = None, texture_dir=None,
               sources: list | None = None, manifest: Iterable[dict] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild a pair from its manifest line: (image, mask uint8 0/255). A pair made in a batched call
    (its line's `batch`) is made in that call again, with its members' lines from `manifest` (the lines
    of its manifest.jsonl): a batched network call may round otherwise than a call of one."""
    if record.get("batch"):
        return regenerate_batched(record, batch_members(record, manifest), bank, checkpoint, texture_dir, sources)
    image = read_image(record["source"])
    mask = mask_from_record(record["mask_params"], image, bank)
    synth = from_record(record, checkpoint, texture_dir, sources)
    result = synth(image, mask, record["seed"], record["defect"])
    return np.asarray(result.image), np.asarray(result.mask)


def batch_members(record: dict, manifest: Iterable[dict] | None) -> list[dict]:
    """The manifest lines of the pairs a batched pair was made with, in their call's order."""
    members = [tuple(m) for m in record["batch"]["members"]]
    what = f"pair {record['defect']} #{record['index']} was made in a batch of {len(members)}"
    if (record["defect"], record["index"]) not in members:
        raise SardInputError(f"{what} that does not hold it (members {record['batch']['members']}); the line is damaged")
    if manifest is None:
        raise SardInputError(f"{what}; pass manifest= the lines of its manifest.jsonl to rebuild it")
    lines = {(r["defect"], r["index"]): r for r in manifest}
    missing = [f"{d} #{k}" for d, k in members if (d, k) not in lines]
    if missing:
        raise SardInputError(f"{what}; the manifest given has no line for {', '.join(missing)}")
    return [lines[m] for m in members]


def regenerate_batched(record: dict, members: list[dict], bank, checkpoint, texture_dir, sources
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The batched call of `members` made again; the result of `record`, checked to have run as recorded."""
    jobs = []
    for r in members:
        image = read_image(r["source"])
        jobs.append((image, mask_from_record(r["mask_params"], image, bank), r["seed"], r["defect"]))
    synth = from_record(record, checkpoint, texture_dir, sources)
    ids = [(r["defect"], r["index"]) for r in members]
    result = synth.batch(jobs, len(jobs))[ids.index((record["defect"], record["index"]))]
    ran = result.timings.get("batch") or {}
    if (ran.get("size"), ran.get("shape")) != (record["batch"]["size"], record["batch"]["shape"]):
        raise SardInputError(f"pair {record['defect']} #{record['index']}: its batch ran as {ran.get('size')} jobs of "
                             f"{ran.get('shape')}, the manifest says {record['batch']['size']} of "
                             f"{record['batch']['shape']}; the checkpoint or the sources have changed")
    return np.asarray(result.image), np.asarray(result.mask)
