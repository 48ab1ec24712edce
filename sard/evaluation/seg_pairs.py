"""The segmentation benchmark's methods and their synthetic pairs: the default method list (real, the
baselines and the paper's four variants from the committed same-budget checkpoints), the checks a
SARD checkpoint must pass against the protocol, and the pair cache <work>/pairs/<method>/ filled
through sard.pair_recipe.write_pairs."""
from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

from sard.baselines import BASELINES
from sard.evaluation.common import Method
from sard.evaluation.seg_protocol import Protocol
from sard.io import SardInputError
from sard.pair_recipe import MaskSource, PairJob, write_pairs
from sard.pairs import PairWriter
from sard.synthesizers import LABELS as METHOD_LABELS, build
from sard.validate import check_defects

ABLATION = ("ddgan", "w_rcd", "w_dmg", "sard")   # Table IV columns, in the paper's order
ABLATION_FLAGS = {"ddgan": (False, False), "w_rcd": (True, False), "w_dmg": (False, True), "sard": (True, True)}
ABLATION_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "ablations"   # <category>/<variant>/
# The row names of the report: the references (constant scores), Real only and every method.
LABELS = {**METHOD_LABELS, "real": "Real only", "ddgan": "DDGAN", "w_rcd": "w/ RCD", "w_dmg": "w/ DMG",
          "all_defect": "All defect", "all_background": "All background"}
PAIR_DIGITS = 4          # file names NNNN.png: up to 10000 pairs per type
MAX_PAIRS = 10 ** PAIR_DIGITS
SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def label(name: str) -> str:
    return LABELS.get(name, name)


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


def pair_category(data: Path, split_seed: int, seed: int, method: Method, batch: int = 1) -> str:
    """Folder name of a method's pairs: what they depend on besides k (data, split, job seed, weights);
    pairs synthesized in batches (batch > 1) have a folder of their own, since a batched network call may
    round otherwise: the one-at-a-time folders, and the caches made from them, stay as they are."""
    batched = f"-batch{batch}" if batch > 1 else ""
    return SAFE.sub("_", f"{data.resolve().name}-split{split_seed}-seed{seed}{batched}-{method.fingerprint}")[:64]


def _missing(writer: PairWriter, jobs: list[PairJob]) -> list[PairJob]:
    """The jobs without a pair yet; a pair made from another job is refused (its folder is stale)."""
    todo = []
    for j in jobs:
        if not writer.done(j.defect, j.k):
            todo.append(j)
            continue
        rec = writer.lines[(j.defect, j.k)]
        made_from = (rec.get("normal"), rec.get("mask_seed"), rec.get("synth_seed"))
        if made_from != (str(j.normal), j.mask_seed, j.synth_seed):
            raise SardInputError(f"{writer.base}: pair {j.defect} #{j.k} was made from another job "
                                 f"({rec.get('normal')}); delete that folder (or use another --work) and rerun")
    return todo


def ensure_pairs(method: Method, jobs: dict[str, list[PairJob]], proto: Protocol, work: Path, split_seed: int,
                 seed: int, progress: bool = True, device=None,
                 batch: int = 1) -> tuple[list[tuple[str, Path, Path]], dict]:
    """Synthesize the method's missing pairs into <work>/pairs/<method>/ (SARD on `device`, default CUDA
    when present; a SARD checkpoint's at most `batch` a network call, opt-in, as batched pairs may differ
    from one-at-a-time ones by a grey level); return every pair's (type, image path, mask path) and a
    summary (written, reused, failed with why)."""
    batch = batch if method.checkpoint is not None else 1    # baselines: one at a time
    writer = PairWriter(work / "pairs" / method.name, pair_category(proto.data, split_seed, seed, method, batch),
                        digits=PAIR_DIGITS)
    all_jobs = [j for d in proto.defects for j in jobs[d]]
    todo = _missing(writer, all_jobs)
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    if todo:
        def record(pair) -> dict:
            j = pair.job
            return {"method": method.name, "checkpoint": str(method.checkpoint) if method.checkpoint else None,
                    "fingerprint": method.fingerprint, "normal": str(j.normal), "mask_seed": j.mask_seed,
                    "synth_seed": j.synth_seed, "mask": pair.mask_params,
                    **({"batch": pair.batch} if pair.batch else {})}
        write_pairs(todo, writer, build(method.name, method.checkpoint, sources=proto.textures, device=device),
                    MaskSource("bank", None, proto.bank), record, failed=failed, desc=f"synthesize {method.name}",
                    progress=progress, batch=batch)
    pairs = [(j.defect, *writer.paths(j.defect, j.k)) for j in all_jobs if writer.done(j.defect, j.k)]
    summary = {"folder": str(writer.base), "pairs": len(pairs), "written": len(todo) - len(failed),
               "reused": len(all_jobs) - len(todo), "failed": failed,
               "seconds": time.perf_counter() - t0}
    return pairs, summary
