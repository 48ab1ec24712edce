"""python -m tools.gpu_check: what SARD does on a CUDA GPU, measured in at most 8 minutes and written to
reports/speed/bench_gpu.json and .md (`bash scripts/gpu_check.sh` runs it on a bare GPU machine).

Each part runs under its own time budget; one that fails or runs out of time is recorded as null with
its error, and the others still run:
- train: training steps per second at 64 px x batch 4, 128 x 16 and 256 x 16 (sard.bench's real step, eager);
- train_fast (last, on what time is left): the same with the fast step (sard.fast_step, torch.compile),
  each compile mode at 64 x 4, then the best mode at the other sizes; compile time reported apart;
- synth: seconds per synthesized pair with ROI on 256, 1024 and 2048 px images (sard.bench's ROI curve);
- background: max |output - input| outside the mask over 20 held-out syntheses (the card's check; 0);
- export: pairs per second of sard.export with real bank masks;
- seg: a quick segmentation benchmark run, and its extrapolation to one category's 45 records;
- ddp: torchrun --nproc_per_node=1 -m sard.train ... --iters 3 --fast off (nccl on CUDA, gloo on the CPU);
- tests: pytest on the library's test files that need neither gradio nor a browser.

Without CUDA, or with --cpu-smoke, every part runs at tiny sizes on the CPU: a check that the script
works, not figures, written to --out (never the GPU report). Needs torch, numpy, pillow, opencv,
scikit-image, safetensors, tqdm and pytest: not gradio, not matplotlib.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sard.devices import device_label
from sard.io import SardInputError, atomic_write_bytes, atomic_write_json

REPO = Path(__file__).resolve().parent.parent
GPU_REPORT = REPO / "reports" / "speed" / "bench_gpu.json"
DEADLINE_S = 450            # all parts together; scripts/gpu_check.sh stops the process at 480 s
MIN_PART_S = 5              # a part with less time left than this is not started
RECORDS = 45                # one category's default segmentation benchmark (methods x arms x seeds)
GPU_TESTS = ("tests/test_rcd.py", "tests/test_schedule.py", "tests/test_steps.py", "tests/test_losses.py",
             "tests/test_discriminator.py", "tests/test_pipeline_colour.py")
KEYS = {"train": ("train_steps_per_s", "train_steps_per_s_eager"), "synth": ("synth_s_per_pair",),
        "background": ("background_max_diff",), "export": ("export_pairs_per_s",),
        "seg": ("seg_quick_s", "seg_quick"), "ddp": ("ddp_ok",), "tests": ("tests_passed",),
        "train_fast": ("train_steps_per_s_fast", "compile_s", "fast_mode_best")}


@dataclass(frozen=True)
class Sizes:
    train: dict[str, tuple[int, int]]      # report key -> (crop px, batch) measured
    train_repeats: int
    synth: tuple[int, ...]                 # image sizes, a 2000 px defect each
    synth_repeats: int
    whole: bool                            # also synthesize the whole image (no ROI)
    export_per_type: int
    background_n: int
    seg_flags: tuple[str, ...]
    ddp_flags: tuple[str, ...]
    tests: tuple[str, ...]
    fast_modes: tuple[str, ...]            # the fast step's torch.compile modes tried at the first size
    fast_backend: str                      # torch.compile's backend for them
    fast_sizes: int                        # how many of the train sizes the best mode is measured at
    budgets: dict[str, float]              # seconds per part


GPU = Sizes(train={"64x4": (64, 4), "128x16": (128, 16), "256x16": (256, 16)}, train_repeats=10,
            synth=(256, 1024, 2048), synth_repeats=5, whole=True, export_per_type=20, background_n=20,
            # the DDP run eager: compiling inside it would not fit its budget (train_fast measures compiling)
            seg_flags=(), ddp_flags=("--res", "64", "--batch", "4", "--fast", "off"), tests=GPU_TESTS,
            fast_modes=("default", "reduce-overhead"), fast_backend="inductor", fast_sizes=3,
            budgets={"train": 80, "synth": 45, "background": 30, "export": 35, "seg": 140, "ddp": 60, "tests": 50,
                     "train_fast": 300})
SMOKE = Sizes(train={"64x4": (32, 2), "128x16": (32, 2), "256x16": (32, 2)}, train_repeats=1,
              synth=(256, 1024, 2048), synth_repeats=1, whole=False, export_per_type=2, background_n=3,
              seg_flags=("--iters", "2", "--pairs-per-type", "2"),
              ddp_flags=("--res", "32", "--batch", "2", "--fast", "off"),
              tests=("tests/test_schedule.py",),
              # the fast step on the CPU through AOTAutograd without code generation, at the first size only
              fast_modes=("default",), fast_backend="aot_eager", fast_sizes=1,
              budgets={"train": 60, "synth": 30, "background": 20, "export": 20, "seg": 60, "ddp": 60, "tests": 60,
                       "train_fast": 60})


@dataclass
class Check:
    data: Path
    checkpoint: Path
    device: torch.device
    sizes: Sizes
    tmp: Path
    _pipe: object = field(default=None, repr=False)

    def pipeline(self):
        if self._pipe is None:
            from sard.pipeline import SardPipeline
            self._pipe = SardPipeline.from_pretrained(self.checkpoint, device=self.device)
        return self._pipe

    def env(self) -> dict:
        threads = str(torch.get_num_threads())
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}


# -- running a part within its budget ---------------------------------------------------------------

class OutOfTime(Exception):
    pass


def within(seconds: float, fn):
    """fn() stopped by an exception once `seconds` have passed."""
    def alarm(*_):
        raise OutOfTime(f"over its budget of {seconds:.0f} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_child(cmd: list[str], c: Check) -> subprocess.CompletedProcess:
    """cmd in its own process group from the repository root; killed with all its children (torchrun's
    workers too) when the part's budget ends."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=c.env(),
                         start_new_session=True)
    try:
        out, err = p.communicate()
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def last_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])[-600:]


def run_parts(c: Check, report: dict, write, deadline: float) -> None:
    """Every part in turn, each within min(its budget, what is left of the deadline); what a part
    measured before failing is kept, its other keys are null, and its error is said."""
    for name, part in PARTS.items():
        budget = min(c.sizes.budgets[name], deadline - time.monotonic())
        out: dict = {}
        t = time.perf_counter()
        print(f"gpu_check: {name} (budget {budget:.0f} s)", file=sys.stderr, flush=True)
        try:
            if budget < MIN_PART_S:
                raise OutOfTime("not started: the whole check's time was spent")
            within(budget, lambda: part(c, out))
        except Exception as e:  # noqa: BLE001 - a failed part is a result; the others still run
            report["errors"][name] = f"{type(e).__name__}: {last_lines(str(e))}"
            print(f"gpu_check: {name} failed: {report['errors'][name]}", file=sys.stderr, flush=True)
        report.update(out)
        for key in KEYS[name]:
            report.setdefault(key, None)
        report["seconds"][name] = round(time.perf_counter() - t, 1)
        write(report)


# -- the parts --------------------------------------------------------------------------------------

def part_train(c: Check, out: dict) -> None:
    from sard.bench import train_step_seconds, training_examples
    examples, defects = training_examples(c.data)
    eager = {key: None for key in c.sizes.train}
    out.update(train_steps_per_s=eager, train_steps_per_s_eager=eager)   # the best of both: best_train
    for key, (res, batch) in c.sizes.train.items():
        eager[key] = 1 / train_step_seconds(examples, defects, res, batch, c.sizes.train_repeats, c.device)


def part_train_fast(c: Check, out: dict) -> None:
    """Each compile mode at the first size, then the best one at the others, each apart: a mode that fails
    is said in train_fast_errors and the others still run (running out of time ends the part)."""
    from sard.bench import train_step_timing, training_examples
    examples, defects = training_examples(c.data)
    modes, sizes = c.sizes.fast_modes, list(c.sizes.train)
    fast, compile_s = ({m: {} for m in modes} for _ in range(2))
    out.update(train_steps_per_s_fast=fast, compile_s=compile_s, train_fast_errors={}, fast_mode_best=None)

    def measure(mode: str, key: str) -> None:
        res, batch = c.sizes.train[key]
        try:
            s, warm = train_step_timing(examples, defects, res, batch, c.sizes.train_repeats, c.device, mode,
                                        c.sizes.fast_backend)
            fast[mode][key], compile_s[mode][key] = 1 / s, warm
        except OutOfTime:
            raise
        except Exception as e:  # noqa: BLE001 - one mode's failure is a result; the others still run
            out["train_fast_errors"][f"{mode} {key}"] = f"{type(e).__name__}: {last_lines(str(e))}"
        finally:
            if c.device.type == "cuda":
                torch.cuda.empty_cache()
    for mode in modes:
        measure(mode, sizes[0])
    best = max((m for m in modes if sizes[0] in fast[m]), key=lambda m: fast[m][sizes[0]], default=None)
    out["fast_mode_best"] = best
    for key in sizes[1:c.sizes.fast_sizes] if best is not None else ():
        measure(best, key)


def best_train(rep: dict) -> dict:
    """Per size, the best steps per second measured (eager or a fast mode) and which it was."""
    variants = {"eager": rep.get("train_steps_per_s_eager") or {},
                **{f"fast {m}": v for m, v in (rep.get("train_steps_per_s_fast") or {}).items()}}
    best, which = {}, {}
    for key in dict.fromkeys(k for v in variants.values() for k in v):
        ranked = sorted(((v[key], name) for name, v in variants.items() if v.get(key) is not None), reverse=True)
        best[key], which[key] = ranked[0] if ranked else (None, None)
    return {"train_steps_per_s": best or None, "train_best": which or None}


def part_synth(c: Check, out: dict) -> None:
    from sard.bench import bench_roi
    pipe = c.pipeline()
    defect = pipe.defects[0] if pipe.defects else None
    roi = out["synth_s_per_pair"] = {str(size): None for size in c.sizes.synth}
    whole = out["synth_s_per_pair_whole"] = {} if c.sizes.whole else None
    for size in c.sizes.synth:
        row = bench_roi(pipe, [size], 2000, defect, c.sizes.synth_repeats, c.data, whole=c.sizes.whole)[0]
        roi[str(size)] = row["roi_s"]
        if c.sizes.whole:
            whole[str(size)] = row["full_s"]


def part_background(c: Check, out: dict) -> None:
    from sard.evaluation.card import background_check, held_out_inputs
    pipe = c.pipeline()
    _, bank, held_normals = held_out_inputs(pipe, c.data)
    bg = background_check(pipe, held_normals, bank, n=c.sizes.background_n)
    out.update(background_max_diff=bg["max_abs_diff_outside_mask"], background_syntheses=bg["syntheses"])


def part_export(c: Check, out: dict) -> None:
    from sard import export
    a = export.parse_args(["--checkpoint", str(c.checkpoint), "--normals", str(c.data), "--masks", "bank",
                           "--per-type", str(c.sizes.export_per_type), "--out", str(c.tmp / "export"),
                           "--device", str(c.device)])
    _, summary = export.export(a)
    out.update(export_pairs_per_s=summary["pairs_per_second"], export_pairs=summary["written"])


def part_seg(c: Check, out: dict) -> None:
    from sard.evaluation.seg_settings import DEFAULTS
    from sard.evaluation.segmentation import read_run
    work = c.tmp / "seg"
    t = time.perf_counter()
    r = run_child([sys.executable, "-m", "sard.evaluate", "segmentation", "--quick", "--data", str(c.data),
                   "--methods", "real,cutpaste", "--device", str(c.device), "--threads", str(torch.get_num_threads()),
                   "--work", str(work), "--out", str(work / "quick.md"), *c.sizes.seg_flags], c)
    if r.returncode:
        raise RuntimeError(f"exit {r.returncode}: {last_lines(r.stderr)}")
    out["seg_quick_s"] = time.perf_counter() - t
    records = [read_run(p) for p in sorted((work / "runs").rglob("*.json.gz"))]
    per_step = float(np.mean([rec["train"]["seconds_per_step"] for rec in records]))
    scoring = float(np.mean([rec["test_seconds"] for rec in records]))
    out["seg_quick"] = {"runs": len(records), "devices": sorted({rec.get("device", "cpu") for rec in records}),
                        "s_per_step": per_step, "scoring_s_per_run": scoring, "records": RECORDS,
                        "steps_per_record": DEFAULTS["iters"],
                        "extrapolated_s": RECORDS * (DEFAULTS["iters"] * per_step + scoring)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def part_ddp(c: Check, out: dict) -> None:
    run = c.tmp / "ddp"
    out["ddp_backend"] = "nccl" if c.device.type == "cuda" else "gloo"
    r = run_child([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", f"--master_port={free_port()}",
                   "-m", "sard.train", "--data", str(c.data), "--out", str(run), "--iters", "3", *c.sizes.ddp_flags,
                   "--sample-every", "100", "--ckpt-every", "3", "--device", c.device.type], c)
    state = run / "train_state.json"
    out["ddp_ok"] = r.returncode == 0 and state.is_file() and json.loads(state.read_text())["step"] == 3
    if not out["ddp_ok"]:
        raise RuntimeError(f"exit {r.returncode}: {last_lines(r.stderr)}")


def part_tests(c: Check, out: dict) -> None:
    xml = c.tmp / "tests.xml"
    r = run_child([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                   *c.sizes.tests], c)
    if not xml.is_file():
        raise RuntimeError(f"pytest exit {r.returncode}, no results: {last_lines(r.stdout + r.stderr)}")
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    total, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    out["tests_passed"] = {"passed": total - failures - errors - skipped, "failed": failures + errors,
                           "skipped": skipped, "files": list(c.sizes.tests)}


PARTS = {"train": part_train, "synth": part_synth, "background": part_background, "export": part_export,
         "seg": part_seg, "ddp": part_ddp, "tests": part_tests, "train_fast": part_train_fast}


# -- the report -------------------------------------------------------------------------------------

def _num(v, fmt: str) -> str:
    return "failed" if v is None else format(v, fmt)


def markdown(rep: dict) -> str:
    smoke, synth = rep["mode"] == "cpu-smoke", rep.get("synth_s_per_pair") or {}
    lines = ["# SARD on a GPU (`bash scripts/gpu_check.sh`)", "",
             f"Device: {rep['device']}; torch {rep['torch']}; data `{rep['data']}`; checkpoint `{rep['checkpoint']}`; "
             f"wall time {rep['wall_s']:.0f} s.", ""]
    if smoke:
        lines += ["**CPU smoke run**: every part at tiny sizes (training crops x batch measured as "
                  + ", ".join(f"{k} -> {r}x{b}" for k, (r, b) in SMOKE.train.items())
                  + "): a check that the script works, not figures.", ""]
    lines += ["## Training steps per second", ""] + train_lines(rep)
    lines += ["", "## Synthesis, a 2000 px defect with ROI", "", "| image | s / pair |", "|---|---|"]
    lines += [f"| {k} x {k} | {_num(v, '.4f')} |" for k, v in synth.items()]
    lines += ["", f"Export: {_num(rep.get('export_pairs_per_s'), '.2f')} pairs / s (sard.export, real bank masks).",
              f"Background: max \\|output - input\\| outside the mask over {rep.get('background_syntheses') or '-'} "
              f"held-out syntheses: **{_num(rep.get('background_max_diff'), 'd')}** (must be 0).", ""]
    lines += seg_lines(rep)
    ddp, tests = rep.get("ddp_ok"), rep.get("tests_passed")
    lines += [f"DDP: `torchrun --nproc_per_node=1 -m sard.train ... --iters 3 --fast off` with {rep.get('ddp_backend', '-')}: "
              + ("ok" if ddp else "failed" if ddp is False else "not measured")
              + " (one process: the process group is made, the nets are not wrapped).",
              "Tests: " + (f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped in "
                           + ", ".join(f"`{f}`" for f in tests["files"]) if tests else "not run") + ".", ""]
    if rep["errors"]:
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in rep["errors"].items()] + [""]
    lines += [f"Seconds per part: {', '.join(f'{k} {v:g}' for k, v in rep['seconds'].items())}.",
              f"Command: `{rep['command']}`.", ""]
    return "\n".join(lines)


def train_lines(rep: dict) -> list[str]:
    """The eager step beside the fast one (sard.fast_step: G and D compiled) in each mode measured."""
    eager, fast = rep.get("train_steps_per_s_eager") or {}, rep.get("train_steps_per_s_fast") or {}
    compile_s, best = rep.get("compile_s") or {}, rep.get("train_steps_per_s") or {}
    modes = list(fast)
    lines = ["`train_steps_per_s` is the best of the eager step (`train_steps_per_s_eager`) and the fast step "
             "(`--fast on`, `train_steps_per_s_fast` per torch.compile mode); compile seconds are the warm-up "
             "steps', not counted in steps / s. Best mode at the first size: "
             f"`{rep.get('fast_mode_best') or 'none'}`.", "",
             "| crop x batch | eager steps / s | " + " | ".join(f"fast {m} steps / s (compile s)" for m in modes)
             + " | best |", "|---|---|" + "---|" * len(modes) + "---|"]
    for k in eager or best:
        cells = [f"{_cell(fast[m].get(k), '.2f')} ({_cell(compile_s.get(m, {}).get(k), '.0f')})" for m in modes]
        lines.append(f"| {k} | {_num(eager.get(k), '.2f')} | " + " | ".join(cells)
                     + f" | {_cell(best.get(k), '.2f')} {(rep.get('train_best') or {}).get(k) or ''} |")
    errors = rep.get("train_fast_errors") or {}
    return lines + [""] + ([f"Fast step failures: {'; '.join(f'{k}: {v}' for k, v in errors.items())}.", ""]
                           if errors else [])


def _cell(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def seg_lines(rep: dict) -> list[str]:
    q = rep.get("seg_quick")
    if not q:
        return ["Segmentation: the quick run failed.", ""]
    total = q["extrapolated_s"]
    return [f"Segmentation: a quick run (`--quick`, real and cutpaste, {q['runs']} segmenters, on "
            f"{', '.join(q['devices'])}) took {rep['seg_quick_s']:.0f} s. Extrapolated to one category's {q['records']} "
            f"records of {q['steps_per_record']} steps: {q['records']} x ({q['steps_per_record']} x "
            f"{q['s_per_step']:.4f} s a step + {q['scoring_s_per_run']:.1f} s scoring) = {total:.0f} s, "
            f"about {total / 3600:.1f} h (scoring timed on the quick run's two types, so a full run's is longer; "
            f"pair synthesis not counted).", ""]


# -- command line -----------------------------------------------------------------------------------

def default_data() -> Path:
    """$SARD_DATA/magnetic_tile (or $SARD_DATA itself when it is one category), else ../shared/data/magnetic_tile."""
    root = Path(os.environ.get("SARD_DATA", REPO.parent / "shared" / "data"))
    return root / "magnetic_tile" if (root / "magnetic_tile").is_dir() else root


def parse_args(argv=None) -> argparse.Namespace:
    from sard.store.model_folder import DEFAULT_CHECKPOINT
    p = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=default_data(), help="data set root (default $SARD_DATA/magnetic_tile)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model folder or shipped name")
    p.add_argument("--out", type=Path, help=f"JSON report, Markdown beside it (default {GPU_REPORT.relative_to(REPO)} "
                                            f"on CUDA; required without it)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU even where CUDA is (automatic "
                                                            "without CUDA)")
    return p.parse_args(argv)


def check_flags(a: argparse.Namespace, smoke: bool) -> tuple[Path, Path]:
    """(data, checkpoint) checked, --out settled: SardInputError naming the flag."""
    from sard.store.model_folder import resolve_checkpoint
    if not a.data.is_dir():
        raise SardInputError(f"--data {a.data}: no such folder; expected a data set root (or set SARD_DATA)")
    if a.out is None and smoke:
        raise SardInputError("--out: required for a CPU smoke run (it never writes the GPU report); e.g. "
                             "--out runs/gpu_check/smoke.json")
    a.out = a.out or GPU_REPORT
    if a.out.suffix != ".json":
        raise SardInputError(f"--out {a.out}: expected a file name ending in .json (the Markdown goes beside it)")
    if smoke and a.out.resolve() == GPU_REPORT.resolve():
        raise SardInputError(f"--out {a.out}: a CPU smoke run does not overwrite the GPU report; choose another path")
    return a.data, resolve_checkpoint(a.checkpoint, "--checkpoint")


def main(argv=None) -> int:
    a = parse_args(argv)
    smoke = a.cpu_smoke or not torch.cuda.is_available()
    try:
        data, checkpoint = check_flags(a, smoke)
    except SardInputError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        return 2
    device = torch.device("cpu" if smoke else "cuda")
    t0, deadline = time.perf_counter(), time.monotonic() + DEADLINE_S
    report = {"device": device_label(device), "torch": torch.__version__, "mode": "cpu-smoke" if smoke else "gpu",
              "data": str(data), "checkpoint": str(checkpoint), "errors": {}, "seconds": {},
              "command": "python -m tools.gpu_check " + " ".join(sys.argv[1:] if argv is None else map(str, argv))}

    def write(rep: dict) -> None:        # after every part: a run stopped from outside keeps what it measured
        rep["wall_s"] = time.perf_counter() - t0
        rep.update(best_train(rep))
        atomic_write_json(a.out, rep)
        atomic_write_bytes(a.out.with_suffix(".md"), markdown(rep).encode())
    with tempfile.TemporaryDirectory(prefix="sard-gpu-check-") as tmp:
        run_parts(Check(data, checkpoint, device, SMOKE if smoke else GPU, Path(tmp)), report, write, deadline)
    print(f"gpu_check: wrote {a.out} and its .md ({len(report['errors'])} part(s) failed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
