"""The tester's bad-input list as a table (issue 32 item 11): every flag of every command and every
numeric field of the training config (through --config FILE.json), given a negative, zero, huge, NaN,
infinite or wrongly typed value where that value is not a legitimate one, is refused with exit status
2 and a message naming the flag or field, without a traceback, within a time limit, and without
growing memory (the huge sizes are refused against what the machine can allocate, not tried).

Most cases run in this process (each command's `main(argv)`, stderr captured, a timer per case); a
handful run as real processes to prove the exit status and the peak memory of a refused command. A
case whose check needs no data is given a data path that does not exist: were the data read first,
the message would name --data, not the flag, so each such case also proves the order of the checks.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import REPO, make_tiny_data, tiny_checkpoint
from sard.config import TrainConfig

CASE_SECONDS = 30          # a case that runs longer hangs
PEAK_LIMIT_MIB = 1024      # peak resident memory of a refused command (a real process)
ADDED_LIMIT_MIB = 256      # what a refused command run in this process may add to it
HUGE_INT = str(10**20)     # beyond every count's bound (and int64)
HUGE_FLOAT = "1e300"

# placeholders in a case's argv: filled per case (fresh folders) from the `world` fixture
DATA, NODATA, CK, NOCK, OUT, CFG = "{data}", "{nodata}", "{ck}", "{nock}", "{out}", "{cfg}"


@dataclass(frozen=True)
class Case:
    command: str                 # "train", "export", "evaluate", "bench", "checkpoint", "app"
    argv: tuple[str, ...]
    named: str                   # what stderr must name: the flag or the config field
    kind: str                    # negative, zero, huge, nan, inf, type
    config: object = None        # the JSON object --config FILE.json holds (train)
    data: bool = False           # its check needs the data (else the data path does not exist)

    @property
    def id(self) -> str:
        if self.config is not None:
            what = json.dumps(self.config)
        else:
            at = self.argv.index(self.named) if self.named in self.argv else len(self.argv) - 1
            what = " ".join(self.argv[at:at + 2])
        sub = f"{self.argv[0]} " if self.command == "evaluate" else ""
        return f"{self.command}:{self.kind}:{sub}{what}"[:90]


MODULES = {"train": "sard.train", "export": "sard.export", "evaluate": "sard.evaluate", "bench": "sard.bench",
           "checkpoint": "sard.checkpoint", "app": "app"}

# -- the flags ------------------------------------------------------------------------------------
INT = {"negative": "-1", "zero": "0", "huge": HUGE_INT, "nan": "nan", "inf": "inf", "type": "abc"}
FLOAT = {"negative": "-1", "zero": "0", "huge": HUGE_FLOAT, "nan": "nan", "inf": "inf", "type": "abc"}

TRAIN = ("--data", NODATA, "--out", OUT, "--iters", "2", "--res", "32", "--batch", "2")
EXPORT = ("--method", "cutpaste", "--normals", NODATA, "--masks", "ellipse", "--per-type", "1", "--out", OUT)
EXPORT_SARD = ("--method", "sard", "--checkpoint", CK, "--normals", NODATA, "--masks", "ellipse", "--per-type", "1",
               "--out", OUT)
REALISM = ("realism", "--data", NODATA, "--methods", "cutpaste", "--seeds", "1", "--epochs", "1", "--out", OUT + "/r.json")
CARD = ("card", "--checkpoint", CK, "--data", NODATA, "--n", "2", "--quality-per-type", "1", "--out", OUT)
DPROBE = ("dprobe", "--data", NODATA, "--steps", "1", "--out", OUT + "/d.json")
SEGMENTATION = ("segmentation", "--data", NODATA, "--methods", "real", "--quick", "--work", OUT + "/w",
                "--out", OUT + "/s.md")
BENCH = ("--checkpoint", NOCK, "--data", NODATA, "--json", OUT + "/b.json", "--out", OUT + "/b.md")
APP = ("--checkpoint", NOCK, "--export-root", OUT + "/exports", "--port", "7861")

SEED = {**INT, "zero": None}       # 0 is a seed
WORD = {"type": "banana"}          # a word no choice is
DEVICE = {"type": "gpu", "huge": "cuda:7"}   # no device name; a GPU index beyond those there are


def rows(command: str, base: tuple[str, ...], values: dict, *flags: str) -> list[tuple]:
    return [(command, base, flag, values) for flag in flags]


# (command, base argv, flag, values by kind; a kind left out is a legitimate value or does not apply)
FLAGS = [
    *rows("train", TRAIN, INT, "--iters", "--sample-every", "--ckpt-every", "--log-every", "--threads"),
    *rows("train", TRAIN, {**INT, "huge": "1000000"}, "--res"),
    *rows("train", TRAIN, {**INT, "huge": "100000000"}, "--batch"),
    *rows("train", TRAIN, FLOAT, "--minutes"), *rows("train", TRAIN, SEED, "--seed"),
    *rows("train", TRAIN, {**FLOAT, "zero": None}, "--fit-crops"),
    *rows("train", TRAIN, WORD, "--device", "--fast", "--fast-mode"),
    *rows("export", EXPORT, INT, "--per-type", "--batch"), *rows("export", EXPORT, SEED, "--seed"),
    *rows("export", EXPORT, {**FLOAT, "zero": None}, "--bank-rotation"),
    *rows("export", EXPORT, {"negative": "-0.1,0.2", "zero": "0,0.1", "huge": "0.1,1e300", "nan": "nan,0.1",
                             "inf": "inf,inf", "type": "abc"}, "--area"),
    *rows("export", EXPORT, {"negative": "-1/2", "zero": "0/0", "type": "abc"}, "--shard"),
    *rows("export", EXPORT_SARD, INT, "--steps"), *rows("export", EXPORT, WORD, "--layout", "--device", "--method", "--on-part"),
    *rows("evaluate", REALISM, INT, "--res", "--context", "--seeds", "--epochs"),
    *rows("evaluate", REALISM, SEED, "--seed", "--split-seed"), *rows("evaluate", REALISM, DEVICE, "--device"),
    *rows("evaluate", CARD, INT, "--n", "--quality-per-type"), *rows("evaluate", CARD, DEVICE, "--device"),
    *rows("evaluate", DPROBE, INT, "--steps"), *rows("evaluate", DPROBE, FLOAT, "--lr"),
    *rows("evaluate", DPROBE, SEED, "--seed"),
    *rows("evaluate", SEGMENTATION, INT, "--seeds", "--pairs-per-type", "--iters", "--batch", "--threads",
          "--synth-batch"),
    *rows("evaluate", SEGMENTATION, {**INT, "zero": None}, "--res", "--crop"),     # 0: native scale, whole images
    *rows("evaluate", SEGMENTATION, FLOAT, "--lr"),
    *rows("evaluate", SEGMENTATION, {**FLOAT, "zero": None}, "--real-fraction"),   # 0: the synthetic-only arm
    *rows("evaluate", SEGMENTATION, SEED, "--split-seed", "--seed"),
    *rows("evaluate", SEGMENTATION, WORD, "--backbones"), *rows("evaluate", SEGMENTATION, DEVICE, "--device"),
    *rows("bench", BENCH, INT, "--repeats", "--batch"),
    *rows("bench", BENCH, {**INT, "negative": "-256", "huge": "100000000"}, "--sizes", "--peak-size"),
    *rows("app", APP, {**INT, "huge": "70000"}, "--port"),
    *rows("app", APP, INT, "--queue-size", "--max-upload-mb"), *rows("app", APP, WORD, "--device"),
]
# cases whose check needs the data: the disk an export fills is sized from a normal image
NEEDS_DATA = [("export", EXPORT, "--per-type", "huge", "1000000000000000")]
if not torch.cuda.is_available():
    FLAGS += [("train", TRAIN, "--device", {"value": "cuda"}), ("export", EXPORT, "--device", {"value": "cuda"}),
              ("evaluate", CARD, "--device", {"value": "cuda"}), ("evaluate", SEGMENTATION, "--device", {"value": "cuda"})]


def with_flag(base: tuple[str, ...], flag: str, value: str) -> tuple[str, ...]:
    """base with flag's value replaced, or the flag appended."""
    argv = list(base)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
        return tuple(argv)
    return (*argv, flag, value)


def flag_cases() -> list[Case]:
    out = [Case(cmd, with_flag(base, flag, v), flag, kind) for cmd, base, flag, values in FLAGS
           for kind, v in values.items() if v is not None]
    out += [Case(cmd, with_flag(base, flag, v), flag, kind, data=True) for cmd, base, flag, kind, v in NEEDS_DATA]
    run = (CK, OUT + "/ship")
    out += [Case("checkpoint", (*run, "--fp16"), "--fp16", "type"), Case("checkpoint", (*run, "extra"), "extra", "type")]
    return out


# -- the config fields ----------------------------------------------------------------------------
TRAIN_CONFIG = ("--data", NODATA, "--out", OUT, "--config", CFG)
LEGIT_ZERO = {"seed", "split_seed", "fit_crops", "fit_min_width", "z_carry", "refine", "refine_carry", "part_grain", "ema", "betas", "generator.num_classes",
              "generator.num_res_blocks", "discriminator.dmg_layer", "discriminator.num_classes", "schedule.beta_min",
              "loss.lam", "loss.l_img", "loss.l_mask", "loss.alpha", "loss.beta", "loss.r1_gamma", "loss.mse_lowpass",
              "loss.diversity", "loss.diversity_cap", "loss.chroma", "loss.texture", "loss.settle"}
# sizes bounded by memory: a value the machine cannot hold (it must be refused naming what fits)
MEMORY_HUGE = {"batch": 100000000, "res": 1000000, "generator.base_channels": 100000000, "generator.nz": 100000000,
               "generator.style_dim": 100000000, "discriminator.base_channels": 100000000,
               "discriminator.temb_dim": 100000000}


def config_fields() -> list[tuple[str, object, type]]:
    """(dotted name, default value, type) of every field of TrainConfig and its sections."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        hint = typing.get_type_hints(TrainConfig)[f.name]
        if dataclasses.is_dataclass(hint):
            section = hint()
            hints = typing.get_type_hints(hint)
            out += [(f"{f.name}.{g.name}", getattr(section, g.name), hints[g.name]) for g in dataclasses.fields(hint)]
        else:
            out.append((f.name, getattr(TrainConfig(), f.name), hint))
    return out


def numeric(hint) -> str | None:
    """'int' or 'float' for a numeric field (optional, or a tuple of them), else None."""
    args = [a for a in typing.get_args(hint) if a not in (type(None), Ellipsis)] or [hint]
    base = args[0]
    if typing.get_origin(base) in (tuple, list):
        return numeric(base)
    return {int: "int", float: "float"}.get(base)


def nested(name: str, value) -> dict:
    head, _, rest = name.partition(".")
    return {head: nested(rest, value) if rest else value}


def config_cases() -> list[Case]:
    out = []
    for name, default, hint in config_fields():
        kind = numeric(hint)
        if kind is None:     # bools, strings, choices: the wrong type only
            out.append(Case("train", TRAIN_CONFIG, name, "type", nested(name, 5 if default == "" or
                                                                                  isinstance(default, str) else "x")))
            continue
        huge = MEMORY_HUGE.get(name, 10**20 if kind == "int" else 1e300)
        values = {"negative": -1, "zero": 0, "huge": huge, "nan": math.nan, "inf": math.inf, "type": "x"}
        if name in LEGIT_ZERO:
            del values["zero"]
        for k, v in values.items():
            if isinstance(default, tuple):          # a tuple field: its first entry
                v = [v, *default[1:]]
            out.append(Case("train", TRAIN_CONFIG, name, k, nested(name, v)))
    return out


CASES = flag_cases() + config_cases()
SUBPROCESS = {   # run as real processes: the exit status and the peak memory of a refused command
    "train --batch huge", "train --res huge", "train generator.nz huge", "train generator.base_channels huge",
    "export --per-type huge", "evaluate --batch huge", "bench --peak-size huge", "app --max-upload-mb huge"}


def label(c: Case) -> str:
    return f"{c.command} {c.named} {c.kind}"


# -- running a case -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-flags")
    return {"data": make_tiny_data(root / "mt"), "ck": tiny_checkpoint(root / "ck"), "root": root}


def fill(c: Case, world: dict, out: Path) -> list[str]:
    cfg = out.parent / f"{out.name}.json"
    if c.config is not None:
        cfg.write_text(json.dumps(c.config))
    data = world["data"] if c.data else world["root"] / "nowhere"
    subs = {DATA: str(world["data"]), NODATA: str(data), CK: str(world["ck"]), NOCK: str(world["root"] / "no-ck"),
            CFG: str(cfg)}
    argv = []
    for a in c.argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a.replace(OUT, str(out)))
    return argv


class CaseTimeout(Exception):
    pass


def _alarm(*_):
    raise CaseTimeout


def resident_mib(field: str) -> float | None:
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process in MiB (Linux), else None."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next((int(ln.split()[1]) / 1024 for ln in status.splitlines() if ln.startswith(field + ":")), None)


def reset_peak() -> float | None:
    """Reset the peak mark; this process's resident MiB now (None where the mark cannot be reset)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return resident_mib("VmRSS")


def run_in_process(module: str, argv: list[str]) -> tuple[object, str, float | None]:
    """main(argv) of the command: (exit status, stderr, the resident MiB it added at its peak)."""
    main = importlib.import_module(module).main
    err, threads = io.StringIO(), torch.get_num_threads()
    before = reset_peak()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code
            except CaseTimeout:
                code = f"no answer in {CASE_SECONDS} s"
            except BaseException:   # noqa: BLE001 - the table counts it as a traceback
                traceback.print_exc()
                code = "traceback"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        torch.set_num_threads(threads)
    peak = resident_mib("VmHWM")
    return code, err.getvalue(), peak - before if before is not None and peak is not None else None


# The peak is the process's own VmHWM: ru_maxrss would carry pytest's peak over the vfork+exec.
WRAP = """
import runpy, sys
peak_file, sys.argv = sys.argv[1], sys.argv[2:]
try:
    if sys.argv[0].endswith(".py"):
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
finally:
    hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
    open(peak_file, "w").write(hwm[0] if hwm else "0")
"""


def run_process(module: str, argv: list[str], peak_file: Path) -> tuple[object, str, float]:
    """The command as a real process: (exit status, stderr, its peak resident MiB)."""
    target = str(REPO / "app.py") if module == "app" else module
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    try:
        r = subprocess.run([sys.executable, "-c", WRAP, str(peak_file), target, *argv], capture_output=True,
                           text=True, timeout=CASE_SECONDS * 2, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return f"no answer in {CASE_SECONDS * 2} s", "", 0.0
    return r.returncode, r.stderr, int(peak_file.read_text()) / 1024 if peak_file.is_file() else 0.0


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_bad_value_exits_2_naming_the_flag_or_field(case, world, tmp_path):
    argv = fill(case, world, tmp_path / "out")
    module = MODULES[case.command]
    t = time.perf_counter()
    if label(case) in SUBPROCESS:
        code, err, peak = run_process(module, argv, tmp_path / "peak")
        limit = PEAK_LIMIT_MIB
    else:
        code, err, peak = run_in_process(module, argv)
        limit = ADDED_LIMIT_MIB
    seconds = time.perf_counter() - t
    assert code == 2, f"exit {code!r} after {seconds:.1f} s: {err[-1500:]}"
    assert "Traceback" not in err, err
    assert case.named in err, err
    assert peak is None or peak < limit, f"peak {peak:.0f} MiB (limit {limit})"


def test_the_table_covers_every_field_and_the_processes_it_names():
    names = {name for name, _, _ in config_fields()}
    assert names == {c.named for c in CASES if c.config is not None}
    assert {label(c) for c in CASES} >= SUBPROCESS
    assert set(MEMORY_HUGE) <= names and LEGIT_ZERO <= names
