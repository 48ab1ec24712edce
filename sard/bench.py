"""python -m sard.bench: speed and memory, measured side by side in one run on this machine.

- seconds per synthesized pair for SARD, CutPaste, DRAEM and GLASS (same normals, same masks);
- SARD with and without ROI at 256..2048 px for a fixed defect size (the ROI curve should stay flat),
  and the ROI speed-up for a 2 % mask on a 2048 x 2048 image;
- SARD export pairs per second at 256 px, one at a time and --batch pairs a network call;
- peak memory of one synthesis (resident set, fresh process, mark reset after loading) on a 4096 x 4096 image;
- training seconds per step at 64 and 128 px (batch 4);
- the share of SARD's time spent in the network's T evaluations versus everything else.
Figures depend on the machine: compare them as ratios within one run.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sard.bench_inputs import ellipse_mask, tile_image
from sard.store.model_folder import DEFAULT_CHECKPOINT, resolve_checkpoint
from sard.io import SardInputError, atomic_write_bytes, atomic_write_json
from sard.pair_recipe import MAX_BATCH
from sard.validate import whole_number

REPO = Path(__file__).resolve().parent.parent
MIN_SIZE, MAX_SIZE, MAX_PEAK_SIZE = 32, 4096, 16384   # px a side: the ROI curve's images, the peak-memory image


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def bench_methods(pipe, image, mask, defect, repeats: int, sources) -> dict:
    from sard.synthesizers import BASELINES, build
    out = {"sard": timed(lambda: pipe(image, mask, seed=0, defect=defect), repeats)}
    for name in BASELINES:
        base = build(name, sources=sources)
        out[name] = timed(lambda: base(image, mask, seed=0), repeats)
    return out


def bench_roi(pipe, sizes, area_px: int, defect, repeats: int, data, whole: bool = True) -> list[dict]:
    """Seconds per synthesis of a fixed defect at each image size with ROI, and (whole) on the whole image."""
    rows = []
    for size in sizes:
        image, mask = tile_image(size, data), ellipse_mask(size, area_px)
        row = {"size": size, "defect_px": int(mask.sum())}
        for roi in (True, False) if whole else (True,):
            r = pipe(image, mask, seed=0, defect=defect, roi=roi)
            row["roi_s" if roi else "full_s"] = timed(lambda: pipe(image, mask, seed=0, defect=defect, roi=roi),
                                                      repeats if roi or size <= 1024 else 1)
            row["network_share_roi" if roi else "network_share_full"] = r.timings["network_s"] / r.timings["total_s"]
        if whole:
            row["speedup"] = row["full_s"] / row["roi_s"]
        rows.append(row)
        print(f"  {size:5d} px: ROI {row['roi_s']:.3f} s" + (f", whole image {row['full_s']:.3f} s, "
              f"x{row['speedup']:.1f}" if whole else ""), file=sys.stderr)
    return rows


PEAK_SNIPPET = """
import sys
sys.path.insert(0, {repo!r})
from sard.bench_inputs import ellipse_mask, resident_mib, tile_image
from sard.pipeline import SardPipeline
pipe = SardPipeline.from_pretrained({ck!r}, device="cpu")
size = {size}
image, mask = tile_image(size, None), ellipse_mask(size, {area})
# Reset the high-water mark so the peak is synthesis alone, not loading or building the test image.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before, _ = resident_mib()
pipe(image, mask, seed=0, defect={defect!r}, roi={roi})
print(before, resident_mib()[1])
"""


def peak_memory(ck: Path, size: int, area_px: int, defect, roi: bool) -> dict:
    """Peak resident memory during one synthesis in a fresh process (MiB), and what was resident before it."""
    if not Path("/proc/self/clear_refs").exists():
        return {"size": size, "roi": roi, "error": "needs Linux /proc to reset the peak-memory mark"}
    code = PEAK_SNIPPET.format(repo=str(REPO), ck=str(ck), size=size, area=area_px, defect=defect, roi=roi)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        return {"size": size, "roi": roi, "error": r.stderr.strip().splitlines()[-1][:200]}
    base, peak = (float(x) for x in r.stdout.split())
    return {"size": size, "roi": roi, "peak_mib": peak, "before_synthesis_mib": base, "synthesis_mib": peak - base}


def bench_batched_export(ck: Path, data: Path | None, size: int, pairs: int, batch: int, rounds: int) -> dict:
    """Export pairs per second at size x size px, one at a time and `batch` a network call, side by side:
    the same normals, ellipse masks and seeds into fresh folders (masks, PNGs and manifest included),
    the two taking turns for `rounds` rounds, each at its best round (a busy machine slows either one)."""
    from PIL import Image
    from sard.pair_recipe import ExportPlan, MaskSource, run_export
    from sard.pairs import PairWriter
    from sard.synthesizers import build
    synth = build("sard", ck, device="cpu")
    best = {1: 0.0, batch: 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        normals = [Path(tmp) / f"normal{k}.png" for k in range(4)]
        for k, path in enumerate(normals):
            Image.fromarray(tile_image(size, data, seed=k)).save(path)
        plan = ExportPlan(normals, synth.defects[:1] or ["synthetic"], pairs, 0)
        for r in range(rounds):
            for n in best:
                summary = run_export(plan, PairWriter(Path(tmp) / f"round{r}-batch{n}", "bench"), synth,
                                     MaskSource("ellipse", None), progress=False, batch=n)
                best[n] = max(best[n], summary["pairs_per_second"])
    out = {"size": size, "pairs": pairs, "batch": batch, "rounds": rounds, "unbatched_pairs_per_s": best[1],
           "batched_pairs_per_s": best[batch], "ratio": best[batch] / best[1]}
    print(f"  export at {size} px: {best[1]:.2f} pairs/s one at a time, {best[batch]:.2f} pairs/s with --batch "
          f"{batch}, x{out['ratio']:.2f}", file=sys.stderr)
    return out


def training_examples(data: Path) -> tuple[list, list[str]]:
    """The synthesizer third's defect crops (gray) of a data set and its defect types, as a run trains on."""
    from sard.data import list_dataset, split_defects
    from sard.data.crops import load_examples
    split = split_defects(list_dataset(data))
    defects = split.defects()
    return load_examples(split.synth, defects, 1)[0], defects


def train_step_seconds(examples: list, defects: list[str], res: int, batch: int, repeats: int,
                       device: torch.device | str = "cpu", fast: str | None = None, backend: str = "inductor") -> float:
    """Seconds per training step of the default nets at res px and this batch (train_step_timing's)."""
    return train_step_timing(examples, defects, res, batch, repeats, device, fast, backend)[0]


def train_step_timing(examples: list, defects: list[str], res: int, batch: int, repeats: int,
                      device: torch.device | str = "cpu", fast: str | None = None,
                      backend: str = "inductor") -> tuple[float, float]:
    """(seconds per step, seconds of the warm-up steps) of the default nets at res px and this batch, from
    real steps of the trainer's functions on `device` (bf16 autocast on CUDA, as the trainer). fast: None
    for the eager step (one warm-up step), else the fast step's torch.compile mode (sard.fast_step;
    three warm-up steps, where it compiles and CUDA graphs are recorded, timed apart)."""
    from sard.config import TrainConfig
    from sard.data.crops import CropSampler
    from sard.fast_step import step_nets
    from sard.schedule import Schedule
    from sard.steps import Batch, GapMeter, build_models, train_step
    dev = torch.device(device)
    cfg = TrainConfig(res=res, batch=batch)
    cfg.generator.num_classes = cfg.discriminator.num_classes = len(defects)
    m = build_models(cfg, dev)
    if fast is not None:
        torch._dynamo.reset()        # each mode and size compiled afresh: its compile time is its own
    nets = step_nets(m.G, m.D, "off" if fast is None else "on", dev, fast or "default", backend)
    sampler, rng, sched = CropSampler(examples, res, 0), torch.Generator(device=dev).manual_seed(0), Schedule()
    amp = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")  # noqa: E731

    def steps(first: int, n: int) -> float:
        t = time.perf_counter()
        for step in range(first, first + n):
            x0, mask, label = sampler.batch(batch)
            b = Batch(x0.to(dev), mask.to(dev), label.to(dev))
            nets.begin_step()
            train_step(nets.G, nets.D, m.opt_g, m.opt_d, sched, b, rng, cfg, step, amp, GapMeter(sched.num_steps, dev))
        if dev.type == "cuda":      # the steps' kernels are done, not only queued
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t
    warm = 1 if fast is None else 3
    warmup_s = steps(0, warm)
    return steps(warm, repeats) / repeats, warmup_s


def bench_training(data: Path, repeats: int) -> dict:
    """Seconds per training step (batch 4) at 64 and 128 px on the CPU."""
    examples, defects = training_examples(data)
    out = {}
    for res in (64, 128):
        out[f"train_s_per_step_{res}"] = train_step_seconds(examples, defects, res, 4, repeats)
        print(f"  training at {res} px: {out[f'train_s_per_step_{res}']:.3f} s/step", file=sys.stderr)
    return out


def markdown(rep: dict) -> str:
    m = rep["methods_s_per_pair"]
    lines = ["# Speed and memory (`python -m sard.bench`)", "",
             f"Machine: {rep['machine']}. Command: `{rep['command']}`. Wall time {rep['wall_s']:.0f} s.",
             "Figures depend on the machine; compare them as ratios measured side by side in this run.", "",
             f"## Seconds per synthesized pair ({rep['pair_size']} x {rep['pair_size']} tile, "
             f"{rep['pair_defect_px']} px defect)", "",
             "| method | s / pair | x CutPaste |", "|---|---|---|"]
    for k, v in m.items():
        lines.append(f"| {k} | {v:.4f} | {v / m['cutpaste']:.1f} |")
    lines += ["", f"## SARD with and without ROI, fixed defect of {rep['roi_defect_px']} px", "",
              "| image | ROI s | whole image s | speed-up | network share (ROI) |", "|---|---|---|---|---|"]
    for r in rep["roi_curve"]:
        lines.append(f"| {r['size']}x{r['size']} | {r['roi_s']:.3f} | {r['full_s']:.3f} | x{r['speedup']:.1f} | "
                     f"{100 * r['network_share_roi']:.0f} % |")
    s = rep["roi_2pct_largest"]
    lines += ["", f"ROI on a {s['size']} x {s['size']} image with a 2 % mask ({s['defect_px']} px): {s['roi_s']:.2f} s against "
              f"{s['full_s']:.2f} s on the whole image, x{s['speedup']:.1f}.", "", "## Peak memory (fresh process, RSS)", "",
              "Model and image are loaded first; the peak mark is then reset, so the peak is that of the synthesis.", "",
              "| image | ROI | peak MiB | resident before synthesis MiB | added by synthesis MiB |", "|---|---|---|---|---|"]
    for p in rep["peak_memory"]:
        if "error" in p:
            lines.append(f"| {p['size']} | {p['roi']} | failed: {p['error']} | | |")
        else:
            lines.append(f"| {p['size']}x{p['size']} | {p['roi']} | {p['peak_mib']:.0f} | {p['before_synthesis_mib']:.0f} | "
                         f"{p['synthesis_mib']:.0f} |")
    b = rep["batched_export"]
    lines += ["", f"## Batched export ({b['size']} x {b['size']} tiles, ellipse masks, {b['pairs']} pairs a run)", "",
              f"`python -m sard.export` made {b['unbatched_pairs_per_s']:.2f} pairs/s one at a time and "
              f"{b['batched_pairs_per_s']:.2f} pairs/s with `--batch {b['batch']}` (x{b['ratio']:.2f}; masks, PNGs "
              f"and manifest included; the best of {b['rounds']} rounds taking turns)."]
    t = rep["training"]
    lines += ["", "## Training (batch 4)", "", "| crop | s / step |", "|---|---|",
              f"| 64 px | {t['train_s_per_step_64']:.3f} |", f"| 128 px | {t['train_s_per_step_128']:.3f} |", "",
              "## Where SARD's time goes", "",
              f"At {rep['pair_size']} px with ROI, the network's {rep['T']} evaluations take "
              f"{100 * rep['network_share']:.0f} % of a synthesis; the rest (input checks, conversion, padding, "
              f"paste, frames for the studio) is what is left to gain outside the network.", ""]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sard.bench", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "magnetic_tile")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sizes", default="256,512,1024,2048")
    p.add_argument("--peak-size", type=int, default=4096)
    p.add_argument("--batch", type=int, default=8, help="pairs a network call in the batched export figure (default 8)")
    p.add_argument("--quick", action="store_true", help="small sizes and one repeat (for tests)")
    p.add_argument("--json", type=Path, default=REPO / "reports" / "speed" / "bench.json")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "speed" / "bench.md")
    return p.parse_args(argv)


def check_flags(a: argparse.Namespace) -> list[int]:
    """The flags in their bounds before anything loads (SardInputError naming the first that is not);
    returns the ROI curve's image sizes. That curve also synthesizes each image whole, without ROI:
    beyond MAX_SIZE px a side its activations outgrow a usual machine's memory."""
    whole_number("--repeats", a.repeats, 1, 1000)
    whole_number("--peak-size", a.peak_size, MIN_SIZE, MAX_PEAK_SIZE)
    whole_number("--batch", a.batch, 1, MAX_BATCH)
    try:
        sizes = [int(s) for s in a.sizes.split(",")]
    except ValueError:
        raise SardInputError(f"--sizes '{a.sizes}': expected a comma list of image sizes in px, e.g. 256,512") from None
    for size in sizes:
        whole_number("--sizes", size, MIN_SIZE, MAX_SIZE)
    a.checkpoint = resolve_checkpoint(a.checkpoint)
    return sizes


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        sizes = check_flags(a)
        run(a, [128, 256] if a.quick else sizes, "python -m sard.bench " + " ".join(sys.argv[1:] if argv is None else argv))
    except SardInputError as e:
        print(f"sard.bench: error: {e}", file=sys.stderr)
        return 2
    return 0


def run(a: argparse.Namespace, sizes: list[int], command: str) -> None:
    from sard.pipeline import SardPipeline
    t0 = time.perf_counter()
    data = a.data if a.data.is_dir() else None
    if a.quick:
        a.repeats, a.peak_size = 1, 512
    pipe = SardPipeline.from_pretrained(a.checkpoint, device="cpu")
    defect = pipe.defects[0] if pipe.defects else None
    pair_size = 256
    image, mask = tile_image(pair_size, data), ellipse_mask(pair_size, 1200)
    sources = [tile_image(pair_size, data, seed=k) for k in range(1, 4)]
    print("methods:", file=sys.stderr)
    rep = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
           "command": command,
           "checkpoint": str(a.checkpoint), "T": pipe.schedule.num_steps, "pair_size": pair_size,
           "pair_defect_px": int(mask.sum())}
    rep["methods_s_per_pair"] = bench_methods(pipe, image, mask, defect, a.repeats, sources)
    r = pipe(image, mask, seed=0, defect=defect)
    rep["network_share"] = r.timings["network_s"] / r.timings["total_s"]
    print("batched export:", file=sys.stderr)
    rep["batched_export"] = bench_batched_export(a.checkpoint, data, pair_size, 2 * a.batch if a.quick else 4 * a.batch,
                                                 a.batch, min(a.repeats, 3))
    print("ROI curve:", file=sys.stderr)
    rep["roi_defect_px"] = 2000
    rep["roi_curve"] = bench_roi(pipe, sizes, 2000, defect, a.repeats, data)
    big = sizes[-1]
    rep["roi_2pct_largest"] = bench_roi(pipe, [big], int(0.02 * big * big), defect, 1, data)[0]
    print("peak memory:", file=sys.stderr)
    rep["peak_memory"] = [peak_memory(a.checkpoint, a.peak_size, 2000, defect, True),
                          peak_memory(a.checkpoint, sizes[-1], 2000, defect, False)]
    print("training:", file=sys.stderr)
    rep["training"] = bench_training(data, max(2, a.repeats)) if data else {}
    rep["wall_s"] = time.perf_counter() - t0
    atomic_write_json(a.json, rep)
    if rep["training"]:
        atomic_write_bytes(a.out, markdown(rep).encode())
        print(markdown(rep))


if __name__ == "__main__":
    sys.exit(main())
