"""The segmentation benchmark's command line: its flags, their defaults (and --quick's), and the
checked Settings a run takes from them."""
from __future__ import annotations

import argparse
import os
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sard.baselines import BASELINES
from sard.devices import pick_device
from sard.evaluation.seg_pairs import MAX_PAIRS, ablation_folder, default_methods
from sard.io import SardInputError
from sard.nets.bounds import MAX_ITERS
from sard.nets.segmentation import SEGMENTERS
from sard.validate import MAX_THREADS, SEED_MAX, number, whole_number

DESCRIPTION = "python -m sard.evaluate segmentation: do a method's synthetic pairs help a segmenter?"
DEFAULTS = {"backbones": "unet", "seeds": 3, "pairs_per_type": 40,
            "res": 0, "crop": 64, "iters": 6000, "batch": 8, "lr": 2e-3, "real_fraction": "0.5,0", "defects": None}
QUICK = {"seeds": 1, "pairs_per_type": 6, "iters": 40, "defects": 2}   # defects, an int: the first n types (sorted)
MAX_SIZE, MIN_SIZE = 4096, {"--res": 32, "--crop": 16}     # --res and --crop: 0 or MIN_SIZE..MAX_SIZE px
BOUNDS = {"--seeds": (1, 1000), "--pairs-per-type": (1, MAX_PAIRS), "--res": (0, MAX_SIZE),
          "--crop": (0, MAX_SIZE), "--iters": (1, MAX_ITERS), "--batch": (1, 1024), "--synth-batch": (1, 1024), "--threads": (1, MAX_THREADS),
          "--split-seed": (0, SEED_MAX), "--seed": (0, SEED_MAX)}   # whole numbers, before anything is read


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
    # where segmenters train and SARD synthesizes; no part of a run's cache key (records say it)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    synth_batch: int = 1           # SARD pairs a network call (1: one at a time, the cached records' pairs)

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
        if self.synth_batch > 1:
            args += ["--synth-batch", str(self.synth_batch)]
        if self.defects:
            args += ["--defects", ",".join(self.defects) if isinstance(self.defects, list) else str(self.defects)]
        return shlex.join(args)


def check_backbones(text: str) -> list[str]:
    names = [x.strip().lower() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in SEGMENTERS]
    if bad or not names:
        raise SardInputError(f"--backbones: '{','.join(bad) or text}' unknown; expected a comma list of "
                             f"{', '.join(SEGMENTERS)}")
    return list(dict.fromkeys(names))


def parse_fractions(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(not (0 <= v < 1) for v in values):
        raise SardInputError(f"--real-fraction: '{text}'; expected a comma list of shares in [0, 1), e.g. 0.5,0 "
                             f"(0 = the synthetic-only arm)")
    return list(dict.fromkeys(values))


def default_out(data: Path) -> Path:
    """reports/<category>/segmentation.md, the category being the data folder's name."""
    return Path("reports") / data.resolve().name / "segmentation.md"


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
    out = Path(a.out) if a.out else default_out(Path(a.data))
    s = Settings(data=Path(a.data), methods=methods, backbones=check_backbones(pick("backbones")),
                 seeds=pick("seeds"), pairs_per_type=pick("pairs_per_type"), res=pick("res"), crop=pick("crop"),
                 iters=pick("iters"), batch=pick("batch"), lr=pick("lr"),
                 real_fractions=parse_fractions(str(pick("real_fraction"))), defects=defects,
                 split_seed=a.split_seed, seed=a.seed,
                 threads=a.threads if a.threads is not None else max(1, os.cpu_count() or 1),
                 work=Path(a.work), results=Path(a.results) if a.results else Path(a.work) / "runs",
                 out=out, json=Path(a.json) if a.json else out.with_suffix(".json"),
                 chart=Path(a.chart) if a.chart else out.with_suffix(".png"), quick=bool(a.quick),
                 from_cache=bool(getattr(a, "from_cache", False)), left_out=missing,
                 reading=Path(a.reading) if getattr(a, "reading", None) else None,
                 device=pick_device(getattr(a, "device", None), "--device"),
                 synth_batch=1 if getattr(a, "synth_batch", None) is None else a.synth_batch)
    check_settings(s)
    return s


def check_settings(s: Settings) -> None:
    """SardInputError naming the first flag out of range (bounds: BOUNDS; pairs: MAX_PAIRS)."""
    for flag, (lo, hi) in BOUNDS.items():
        whole_number(flag, getattr(s, flag[2:].replace("-", "_")), lo, hi)
    for flag, v in (("--res", s.res), ("--crop", s.crop)):
        if 0 < v < MIN_SIZE[flag]:
            raise SardInputError(f"{flag}: expected 0 ({'native scale' if flag == '--res' else 'whole images'}) "
                                 f"or at least {MIN_SIZE[flag]}, got {v}")
    number("--lr", s.lr, 0, 1, above=True)
    if s.crop == 0 and s.res == 0:
        raise SardInputError("--crop 0 (whole images) needs --res N: native images differ in size")
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


# -- command line -------------------------------------------------------------------------------------

def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("segmentation", help="do synthetic pairs help? segmenters trained on each method's pairs",
                       description=DESCRIPTION)
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
    p.add_argument("--synth-batch", type=int, help="SARD pairs synthesized a network call (default 1; above 1 the "
                                                   "pairs may differ by a grey level and get a pair folder and run "
                                                   "records of their own)")
    p.add_argument("--device", help="cpu or cuda: where the segmenters train and SARD synthesizes (default: cuda "
                                    "when present); the run cache is shared across devices, each record says its own")
    p.add_argument("--work", default="runs/segmentation", help="cache of pairs and per-run results (resumable)")
    p.add_argument("--results", help="per-run records, gzipped JSON of ~15 kB each (default: WORK/runs); a folder in the "
                                     "repository lets a run span sessions on fresh checkouts (the pairs are "
                                     "remade from the job list)")
    p.add_argument("--out", help="Markdown report (default: reports/<category>/segmentation.md, the category being "
                                 "the --data folder's name)")
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
