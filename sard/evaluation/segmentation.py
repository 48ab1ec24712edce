"""python -m sard.evaluate segmentation: do a method's synthetic pairs help a segmenter?

The run: the run cache, the benchmark loop and the report dict. The flags are seg_settings.py,
the protocol seg_protocol.py, the methods and their pairs seg_pairs.py, training seg_train.py,
scoring seg_scoring.py, the Markdown and chart seg_report.py; how the protocol and its defaults were
chosen: reports/segmentation_protocol.md.

One segmenter per (method, arm, backbone, seed), an arm being the real share of each batch
(--real-fraction; 0 = synthetic pairs alone); Real only trains on the real stream alone. Every run is
cached as one gzipped JSON in --results (default <work>/runs/; atomic), named by the hash of all it
depends on: a run stopped anywhere resumes at the first missing segmenter, so a benchmark may span
sessions, and processes on disjoint --methods lists may share one --work; the committed
reports/<category>/cache/ keeps the records across fresh checkouts. `--quick` (CI): the first 2 types,
6 pairs per type, 40 steps, 1 seed.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from sard.data.crops import infer_channels
from sard.data.readers import Sample
from sard.evaluation.common import Method, machine, parse_methods
from sard.evaluation.seg_pairs import LABELS, ablation_folder, check_checkpoint_split, ensure_pairs, label
from sard.evaluation.seg_protocol import VAL_GOOD, VAL_SHARE, Protocol, build_protocol, make_jobs
from sard.evaluation.seg_report import chart_png, markdown, seed_summary, verdict
from sard.evaluation.seg_scoring import (REFERENCES, TYPE_KEYS, TestSet, constant_scores, evaluate, load_test,
                                         load_training, model_scores, run_metrics)
from sard.evaluation.seg_settings import Settings, resolve_settings
from sard.evaluation.seg_train import SegData, SegTrainConfig, train_segmenter
from sard.io import atomic_write_bytes
from sard.metrics import SCORE_BINS
from sard.pair_recipe import PairJob


# -- the run cache ------------------------------------------------------------------------------------

def arms(s: Settings, m: Method) -> list[float]:
    """The real shares a method trains with: Real only one (the mixed arm's), a synthetic method each."""
    return s.real_fractions if m.synthetic else [s.main_fraction]


def arm_batch(s: Settings, fraction: float) -> int:
    """Patches per step: --batch in a mixed arm; in the synthetic-only arm as many as Real only gets
    (the mixed arm's real share), so synthetic alone and real alone are compared patch for patch."""
    return s.batch if fraction > 0 else round(s.main_fraction * s.batch)


def run_key(s: Settings, method: Method, backbone: str, seed: int, defects: list[str], fraction: float) -> dict:
    """Everything a run's result depends on; its hash names the cached JSON."""
    return {"data": str(s.data.resolve()), "defects": defects, "split_seed": s.split_seed, "pair_seed": s.seed,
            "pairs_per_type": s.pairs_per_type if method.synthetic else 0, "method": method.name,
            "method_fingerprint": method.fingerprint, "backbone": backbone, "seed": seed, "res": s.res,
            "crop": s.crop, "iters": s.iters, "batch": arm_batch(s, fraction), "lr": s.lr, "real_fraction": fraction,
            "protocol": f"val{VAL_SHARE}+{VAL_GOOD}/std/patches/ce+dice/scores{SCORE_BINS}/v3",
            # batched pairs differ from one-at-a-time ones by a grey level: their runs are cached apart
            **({"synth_batch": s.synth_batch} if s.synth_batch > 1 and method.checkpoint is not None else {})}


def run_path(results: Path, key: dict) -> Path:
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return results / key["method"] / f"{key['backbone']}-real{key['real_fraction']:g}-seed{key['seed']}-{h}.json.gz"


def write_run(path: Path, rec: dict) -> None:
    """A run's record, gzipped JSON (its score histograms are ~140 kB as text, ~15 kB zipped), atomic."""
    atomic_write_bytes(path, gzip.compress(json.dumps(rec).encode(), mtime=0))


def read_run(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


# -- the benchmark ------------------------------------------------------------------------------------

def say(msg: str) -> None:
    print(f"segmentation: {msg}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    """What every method is trained and scored on, and what the runs so far did."""
    s: Settings
    proto: Protocol
    channels: int
    jobs: dict[str, list[PairJob]]
    val: TestSet
    test: TestSet
    real_set: SegData | None = None                        # loaded when the first run is trained
    synthesis: dict[str, dict] = field(default_factory=dict)
    pending: dict[str, dict[str, int]] = field(default_factory=dict)   # --from-cache: method -> arm -> runs missing
    fresh: int = 0
    cached: int = 0

    def key(self, m: Method, f: float, b: str, seed: int) -> dict:
        return run_key(self.s, m, b, seed, self.proto.defects, f)

    def method_runs(self, m: Method) -> dict[float, dict[str, list[dict]]]:
        """The method's records per arm and backbone, one per seed, training the missing ones (with
        --from-cache they are listed as pending instead, and only complete arms are returned)."""
        s = self.s
        todo = [(f, b, seed, run_path(s.results, self.key(m, f, b, seed)))
                for f in arms(s, m) for b in s.backbones for seed in range(s.seeds)]
        todo = [t for t in todo if not t[3].is_file()]
        if s.from_cache:
            for f, *_ in todo:
                self.pending.setdefault(m.name, {}).setdefault(f"{f:g}", 0)
                self.pending[m.name][f"{f:g}"] += 1
            todo = []
        if todo:
            self.train(m, todo)
        done = [f for f in arms(s, m) if f"{f:g}" not in self.pending.get(m.name, {})]
        self.cached += len(done) * s.seeds * len(s.backbones) - len(todo)
        return {f: {b: [read_run(run_path(s.results, self.key(m, f, b, seed))) for seed in range(s.seeds)]
                    for b in s.backbones} for f in done}

    def train(self, m: Method, todo: list[tuple[float, str, int, Path]]) -> None:
        s, proto = self.s, self.proto
        if self.real_set is None:
            self.real_set = load_training([(x.image, x.mask) for x in proto.train_real], s.res, self.channels)
        synthetic = None
        if m.synthetic:
            pairs, self.synthesis[m.name] = ensure_pairs(m, self.jobs, proto, s.work, s.split_seed, s.seed,
                                                         device=s.device, batch=s.synth_batch)
            done = self.synthesis[m.name]
            say(f"{m.name}: {len(pairs)} pairs ({done['written']} new, {len(done['failed'])} failed) in "
                f"{done['seconds']:.0f} s")
            synthetic = load_training([(i, k) for _, i, k in pairs], s.res, self.channels)
        for f, b, seed, path in todo:
            self.train_one(m, f, b, seed, path, synthetic)

    def train_one(self, m: Method, f: float, b: str, seed: int, path: Path, synthetic: SegData | None) -> None:
        s = self.s
        cfg = SegTrainConfig(backbone=b, in_channels=self.channels, iters=s.iters, batch=arm_batch(s, f), lr=s.lr,
                             crop=s.crop, real_fraction=f, seed=seed)
        model, log = train_segmenter(cfg, self.real_set, synthetic, desc=f"{m.name}/{b}/real{f:g}/seed{seed}",
                                     device=s.device)
        t0 = time.perf_counter()
        ev = evaluate(model_scores(model), self.val, self.test, self.proto.defects)
        rec = {"key": self.key(m, f, b, seed),
               "train": {**log, "real_images": len(self.real_set), "synthetic_images": len(synthetic or [])},
               "test_seconds": time.perf_counter() - t0, "eval": ev, "metrics": run_metrics(ev),
               "device": str(s.device)}
        write_run(path, rec)
        self.fresh += 1
        r = rec["metrics"]
        say(f"{m.name}/{b}/real{f:g}/seed{seed}: AP {100 * r['AP']:.1f} IoU {100 * r['IoU']:.1f} false alarms "
            f"{100 * r['false_alarm_rate']:.0f} % ({log['seconds']:.0f} s train, {rec['test_seconds']:.0f} s test)")


def describe(s: Settings, proto: Protocol) -> str:
    return (f"{len(proto.defects)} types {proto.defects}; train real {len(proto.train_real)}, validation "
            f"{len(proto.val_defects)} defect + {len(proto.val_good)} good, test {len(proto.test_defects)} defect + "
            f"{len(proto.test_good)} good images; {len(proto.skipped)} skipped; {s.iters} steps x batch {s.batch} of "
            f"{s.crop or s.res} px patches ({'native scale' if not s.res else f'images at {s.res} px'}), real share "
            f"{', '.join(f'{f:g}' for f in s.real_fractions)}, {s.seeds} seed(s), {s.threads} thread(s)")


def run(a: argparse.Namespace) -> tuple[dict, Path]:
    """The benchmark of the parsed flags: trains what the cache lacks, writes the Markdown report and
    chart, and returns the report with the path its JSON goes to."""
    t_start = time.perf_counter()
    s = resolve_settings(a)
    torch.set_num_threads(s.threads)
    cv2.setNumThreads(s.threads)
    methods = parse_methods(s.methods)
    proto = build_protocol(s.data, s.split_seed, s.defects)
    s.defects = proto.defects                        # names, for the explicit command
    for m in methods:
        if m.checkpoint is not None:
            check_checkpoint_split(m, s.data, s.split_seed, proto.defects)
    channels = infer_channels([Sample(p, None, "good", "train") for p in proto.normals])
    jobs = make_jobs(proto.normals, proto.defects, s.pairs_per_type, s.seed)
    say(describe(s, proto))
    bench = Bench(s, proto, channels, jobs, load_test(proto.val_defects + proto.val_good, s.res, channels),
                  load_test(proto.test_defects + proto.test_good, s.res, channels))
    references = {}
    for name, value in REFERENCES.items():
        ev = evaluate(constant_scores(value), bench.val, bench.test, proto.defects)
        references[name] = {"eval": ev, "metrics": run_metrics(ev)}
    runs = {m.name: bench.method_runs(m) for m in methods}
    report = build_report(s, methods, proto, runs, references, bench.synthesis, channels)
    report["runs_trained"], report["runs_cached"], report["pending"] = bench.fresh, bench.cached, bench.pending
    # records from before devices were recorded were all made on the CPU
    report["record_devices"] = sorted({rec.get("device", "cpu") for arms_ in runs.values() for per in arms_.values()
                                       for recs in per.values() for rec in recs})
    report["left_out"] = {"methods": [LABELS[v] for v in s.left_out], "folder": str(ablation_folder(s.data)),
                          "train": f"bash scripts/train_ablations.sh 1000 {s.data}"} if s.left_out else None
    report["reading"] = {"file": str(s.reading), "text": s.reading.read_text(encoding="utf-8")} if s.reading else None
    report["wall_seconds"] = time.perf_counter() - t_start
    atomic_write_bytes(s.out, markdown(report).encode())
    write_chart(s, report)
    say(f"wrote {s.out}, {s.chart} ({bench.fresh} runs trained, {bench.cached} from cache, "
        f"{report['wall_seconds']:.0f} s)")
    return report, s.json


def write_chart(s: Settings, report: dict) -> None:
    """The bar chart; a machine without matplotlib (a bare GPU box) gets the figures without it."""
    try:
        atomic_write_bytes(s.chart, chart_png(report))
    except ModuleNotFoundError as e:
        if e.name != "matplotlib":
            raise
        say(f"no chart {s.chart}: matplotlib is not installed")


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


def _settings_record(s: Settings, proto: Protocol, channels: int) -> dict:
    return {"backbones": s.backbones, "seeds": s.seeds, "pairs_per_type": s.pairs_per_type, "res": s.res,
            "crop": s.crop, "iters": s.iters, "batch": s.batch, "lr": s.lr, "real_fractions": s.real_fractions,
            "main_fraction": s.main_fraction, "optimizer": "AdamW (weight decay 0.01)",
            "schedule": "linear warm-up 5 %, cosine to 1 %",
            "input": (f"native scale, {s.crop} px patches" if not s.res else
                      f"whole images resized to {s.res} px, " + (f"{s.crop} px patches" if s.crop else "whole")) +
                     f", half centred on a defect pixel, random h/v flips; {channels} channel(s), each image "
                     f"standardised; scored at native resolution",
            "loss": "soft cross-entropy + soft Dice of the defect class per patch "
                    "(BiSeNetV2: + its 4 booster heads)",
            "validation": f"{VAL_SHARE:.0%} of each type's real training third + {len(proto.val_good)} "
                          f"train/good images; threshold of best pooled F1 on it, in steps of 1/{SCORE_BINS}",
            "pretrained": False, "split_seed": s.split_seed, "pair_seed": s.seed, "threads": s.threads,
            "device": str(s.device),
            "work": str(s.work), "results": str(s.results)}


def _split_record(proto: Protocol) -> dict:
    return {"train_real": len(proto.train_real), "val_defects": len(proto.val_defects),
            "val_good": len(proto.val_good), "test_defects": len(proto.test_defects),
            "test_good": len(proto.test_good), "normals": len(proto.normals),
            "bank_masks": len(proto.bank), "skipped": proto.skipped,
            "per_type": {d: {"train_real": sum(x.defect == d for x in proto.train_real),
                             "val": sum(x.defect == d for x in proto.val_defects),
                             "test": sum(x.defect == d for x in proto.test_defects)} for d in proto.defects}}


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
    labels = {n: LABELS[n] for n in REFERENCES} | {m.name: label(m.name) for m in methods}
    report = {
        "benchmark": "segmentation", "protocol": "v3 (pooled with good images, validation threshold, equal real share)",
        "data": str(s.data), "defects": proto.defects, "quick": s.quick,
        "methods": {n: {"label": labels[n], "reference": n in REFERENCES,
                        "checkpoint": next((str(m.checkpoint) for m in methods if m.name == n and m.checkpoint), None)}
                    for n in labels},
        "settings": _settings_record(s, proto, channels), "split": _split_record(proto),
        "synthesis": synthesis, "results": results, "machine": machine(s.threads, s.device),
        "command": "python -m sard.evaluate " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).stem == "evaluate"
                   else s.command(),
        "command_explicit": s.command(),
    }
    report["verdict"] = verdict(report)
    return report
