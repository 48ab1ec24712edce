"""python -m sard.evaluate <realism | card | segmentation | dprobe>: measure synthesizers the way the card and the paper do.

  realism       classifier two-sample test on held-out real defect crops vs synthesized ones
  card          a checkpoint's model-card figures: exact background, speed, grids, loss curve
  segmentation  the paper's benchmark: segmenters trained on each method's pairs, scored on real defects
  dprobe        can the discriminator learn? D alone against a known fake, per reverse step
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sard.baselines import BASELINES
from sard.data import list_dataset, normal_images, split_defects
from sard.devices import pick_device
from sard.evaluation import segmentation
from sard.evaluation.common import machine, parse_methods
from sard.evaluation.seg_settings import add_parser as segmentation_parser
from sard.io import SardInputError, atomic_write_bytes, atomic_write_json
from sard.nets.bounds import MAX_ITERS
from sard.nets.discriminator import DiscriminatorConfig
from sard.store.tensors import read_config
from sard.validate import SEED_MAX, number, whole_number

Report = tuple[dict, Path | None]      # a subcommand's report and the JSON file it goes to (None: stdout)


# -- realism ------------------------------------------------------------------------------------------

def realism_parser(sub) -> None:
    r = sub.add_parser("realism", help="classifier two-sample test (50 %% = indistinguishable)")
    r.add_argument("--data", required=True, type=Path)
    r.add_argument("--methods", default="cutpaste,draem,glass",
                   help="comma list: baseline names and name=CHECKPOINT_DIR for SARD checkpoints")
    r.add_argument("--res", type=int, default=64, help="crop size around each defect")
    r.add_argument("--context", type=int, default=128, help="normal window the synthesizer sees")
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--split-seed", type=int, default=0)
    r.add_argument("--device", help="cpu or cuda[:N] for the synthesizers and the classifier (default: CUDA if present)")
    r.add_argument("--out", type=Path, help="JSON report")


def realism(a: argparse.Namespace, command: str) -> Report:
    from sard.data.crops import infer_channels
    from sard.devices import pick_device
    from sard.evaluation.realism import (NOTHING, Normals, c2st_accuracy, crop_sheet, fake_crops, nothing_painted,
                                         real_crops)
    from sard.evaluation.sheets import save_grid
    from sard.metrics import mean_spread
    from sard.synthesizers import build
    device = pick_device(a.device)
    methods = parse_methods(a.methods, bare=tuple(BASELINES), default="sard")
    samples = list_dataset(a.data)
    split = split_defects(samples, a.split_seed)
    paths = normal_images(samples, "train", fallback=False)
    channels = infer_channels(split.held_out)
    real, places = real_crops(split.held_out, a.res, channels)
    normals = Normals(paths, channels, a.context)
    report = {"data": str(a.data), "res": a.res, "context": a.context, "real_crops": len(places), "seeds": a.seeds,
              "epochs": a.epochs, "channels": channels, "texture": normals.texture, "device": str(device),
              "machine": machine(), "methods": {}}
    t0, fakes = time.perf_counter(), {}
    for name, checkpoint, synth in [(NOTHING, None, nothing_painted), *((m.name, m.checkpoint, None) for m in methods)]:
        synth = synth or build(name, checkpoint, sources=paths[:50], device=device)
        fake, on_part = fake_crops(synth, places, normals, a.res, a.context, seed=a.seed, desc=name)
        fakes[name] = fake
        accs = [c2st_accuracy(real, fake, seed=s, epochs=a.epochs, device=device) for s in range(a.seeds)]
        mean, std = mean_spread(accs)
        entry = {"checkpoint": str(checkpoint) if checkpoint else None, "accuracy": accs, "mean": mean, "std": std,
                 "on_part": float(np.mean(on_part))}
        if name == NOTHING:
            report["floor"] = entry
        else:
            report["methods"][name] = {**entry, "below_floor": report["floor"]["mean"] - mean}
        print(f"  {name:10s} C2ST accuracy {100 * mean:.1f} % +- {100 * std:.1f}", file=sys.stderr)
    report["seconds"] = time.perf_counter() - t0
    if a.out:
        report["sheet"] = save_grid(crop_sheet(real, fakes), a.out.with_suffix(".png")).name
    return report, a.out


def realism_markdown(rep: dict) -> str:
    where = "the whole tile" if rep.get("texture", True) else "the part (mean share of each fake mask on it: " \
        f"{100 * rep['floor']['on_part']:.0f} %)"
    colour = "in colour" if rep.get("channels") == 3 else "in gray"
    lines = ["# Realism: classifier two-sample test", "",
             f"A CNN trained from scratch tells {rep['real_crops']} held-out real defect crops ({rep['res']} px, "
             f"{colour}, never seen by a synthesizer) from the same masks synthesized on normal images at the place "
             f"each real crop sits, on {where}; held-out accuracy over 2 folds, mean and spread over {rep['seeds']} "
             f"seeds. **50 % = indistinguishable**, 100 % = always caught. The reference row *Nothing painted* returns "
             f"the normal window as it is: its score is the floor a method must get below.", "",
             "| method | C2ST accuracy | spread | below Nothing painted (points) |", "|---|---|---|---|"]
    floor = rep["floor"]
    lines.append(f"| *Nothing painted* (reference) | {100 * floor['mean']:.1f} % | ± {100 * floor['std']:.1f} | 0 |")
    for name, m in sorted(rep["methods"].items(), key=lambda kv: kv[1]["mean"]):
        lines.append(f"| {name} | {100 * m['mean']:.1f} % | ± {100 * m['std']:.1f} | {100 * m['below_floor']:+.1f} |")
    if rep.get("sheet"):
        lines += ["", f"What the classifier judges, real crops and each method's fakes at the same place: ![crops]({rep['sheet']})"]
    lines += ["", f"Command: `{rep['command']}`; machine: {rep['machine']}, device {rep['device']}; wall time "
                  f"{rep['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


# -- card ---------------------------------------------------------------------------------------------

def card_parser(sub) -> None:
    c = sub.add_parser("card", help="model-card figures and pictures for a checkpoint")
    c.add_argument("--checkpoint", required=True, type=Path)
    c.add_argument("--data", required=True, type=Path)
    c.add_argument("--log", type=Path, help="the run's log.jsonl for the loss curve")
    c.add_argument("--n", type=int, default=100, help="syntheses for the background check")
    c.add_argument("--quality-per-type", type=int, default=20,
                   help="held-out defects per type repainted twice for diversity, texture and step figures")
    c.add_argument("--out", required=True, type=Path, help="folder for figures.json, card.md and PNGs")
    c.add_argument("--realism", type=Path, help="a `realism` JSON report whose C2ST of this checkpoint goes in card.md "
                                                "(the method named like the checkpoint folder, or its only SARD method)")
    c.add_argument("--realism-method", help="which method of the --realism report is this checkpoint")
    c.add_argument("--device", help="cpu or cuda (default: cuda when present)")


def card(a: argparse.Namespace, command: str) -> Report:
    c2st = card_c2st(a)
    figures = card_figures(a)
    figures["command"] = command
    write_card_text(a, figures, c2st)
    return figures, a.out / "figures.json"


def card_figures(a: argparse.Namespace) -> dict:
    from sard.data.crops import infer_channels
    from sard.evaluation.card import (background_check, defect_grid, game_pulse, held_out_inputs, loss_curve,
                                      repaint_grid, speed_256, step_through_grid, synthesis_quality)
    from sard.evaluation.defect_types import type_separability
    from sard.evaluation.realism import Normals
    from sard.evaluation.sheets import save_grid
    from sard.masks import random_mask
    from sard.io import read_image
    from sard.pipeline import SardPipeline
    pipe = SardPipeline.from_pretrained(a.checkpoint, device=a.device)
    split, bank, held_normals = held_out_inputs(pipe, a.data)
    out = Path(a.out)
    figures = {"checkpoint": str(a.checkpoint), "machine": machine(device=pipe.device), "device": str(pipe.device)}
    figures["background"] = background_check(pipe, held_normals, bank, n=a.n)
    figures["speed"] = speed_256(pipe, held_normals, bank)
    figures["quality"] = synthesis_quality(pipe, split.held_out, per_type=a.quality_per_type)
    normals = Normals(held_normals, infer_channels(split.held_out), context=128)
    figures["types"] = type_separability(pipe, split.synth, split.held_out, normals, pipe.defects, device=pipe.device)
    for k, defect in enumerate(pipe.defects or ["defect"]):
        normal = read_image(held_normals[(7 * k + 3) % len(held_normals)])
        m, params = random_mask("bank", normal.shape[:2], 1000 + k, None, bank=bank,
                                defect=defect if pipe.defects else None)
        save_grid(defect_grid(pipe, normal, m > 0, defect), out / f"grid_{defect}.png")
        repaint = repaint_grid(pipe, split.held_out, defect if pipe.defects else None)
        if repaint is not None:
            save_grid(repaint, out / f"repaint_{defect}.png")
            figures.setdefault("repaint_grids", []).append(defect)
        steps = step_through_grid(pipe, split.held_out, defect if pipe.defects else None)
        if steps is not None:
            save_grid(steps, out / f"steps_{defect}.png")
            figures.setdefault("step_grids", []).append(defect)
    if a.log:
        loss_curve(Path(a.log), out / "loss_curve.png")
        figures["d_gap"] = game_pulse(Path(a.log))
    return figures


def card_c2st(a: argparse.Namespace) -> dict | None:
    """The checkpoint's entry in --realism, looked up before the card's minutes of work so a wrong
    name fails at once."""
    if not a.realism:
        return None
    report = read_config(a.realism)
    methods = report.get("methods", {})
    sard_like = [k for k in methods if k not in BASELINES]
    name = a.realism_method or (a.checkpoint.name if a.checkpoint.name in methods else None)
    name = name or (sard_like[0] if len(sard_like) == 1 else None)
    if name not in methods:
        raise SardInputError(f"--realism {a.realism}: no method named '{name or a.checkpoint.name}' and not exactly "
                             f"one SARD method in it (has {sorted(methods)}); name it with --realism-method")
    return {**methods[name], "floor": report.get("floor")}


def write_card_text(a: argparse.Namespace, figures: dict, c2st: dict | None) -> None:
    """card.md beside figures.json: the standard tables, ready to paste into the checkpoint's README."""
    from sard.evaluation.card import card_markdown
    from sard.store.model_folder import ModelConfig
    text = card_markdown(figures, ModelConfig.read(a.checkpoint), c2st)
    atomic_write_bytes(a.out / "card.md", text.encode())


# -- dprobe -------------------------------------------------------------------------------------------

def dprobe_parser(sub) -> None:
    q = sub.add_parser("dprobe", help="the discriminator alone against a known fake, per reverse step")
    q.add_argument("--data", required=True, type=Path)
    q.add_argument("--fake", default="zero", choices=("zero", "mean", "blur"),
                   help="the masked region zeroed, filled with the background mean, or blurred")
    q.add_argument("--steps", type=int, default=300)
    q.add_argument("--lr", type=float, default=4e-4)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--judges", default=DiscriminatorConfig.judges, choices=DiscriminatorConfig.CHOICES["judges"],
                   help="what D judges beside x_t: DDGAN's x_{t-1}, or the clean x0 (discriminator.judges)")
    q.add_argument("--compare", action="store_true", help="also the DDGAN-literal discriminator")
    q.add_argument("--out", type=Path, help="JSON report")


def dprobe(a: argparse.Namespace, command: str) -> Report:
    from dataclasses import asdict

    from sard.evaluation.d_probe import probe
    torch.manual_seed(a.seed)
    report = {"data": str(a.data), "fake": a.fake, "steps": a.steps, "lr": a.lr, "machine": machine(), "configs": {}}
    report["judges"] = a.judges
    configs = {"current": DiscriminatorConfig(judges=a.judges), "ddgan-literal": DiscriminatorConfig.ddgan_literal()}
    for name in (["current", "ddgan-literal"] if a.compare else ["current"]):
        rows = probe(str(a.data), configs[name], fake=a.fake, steps=a.steps, lr=a.lr, seed=a.seed)
        report["configs"][name] = [asdict(r) for r in rows]
        print(f"  {name}: D alone, {a.steps} steps against '{a.fake}' fakes", file=sys.stderr)
        for r in rows:
            fg = f"{r.gap_fg:7.2f}" if r.gap_fg is not None else "      -"
            print(f"    step i={r.step}: gap D_img {r.gap_img:7.2f}  D_fg {fg}  real ranked above fake "
                  f"{100 * r.accuracy:5.1f} %  (best possible {100 * r.bayes_bound:5.1f} %)", file=sys.stderr)
    return report, a.out


# -- segmentation -------------------------------------------------------------------------------------

def segmentation_run(a: argparse.Namespace, command: str) -> Report:
    return segmentation.run(a)


# -- the command --------------------------------------------------------------------------------------

SUBCOMMANDS = {"realism": (realism_parser, realism), "card": (card_parser, card),
               "dprobe": (dprobe_parser, dprobe), "segmentation": (segmentation_parser, segmentation_run)}


# whole-number flags of each subcommand, checked before anything is read (segmentation: seg_settings)
BOUNDS = {"realism": {"--res": (8, 1024), "--context": (8, 4096), "--seeds": (1, 1000), "--epochs": (1, 100000),
                      "--seed": (0, SEED_MAX), "--split-seed": (0, SEED_MAX)},
          "card": {"--n": (1, 100000), "--quality-per-type": (1, 100000)},
          "dprobe": {"--steps": (1, MAX_ITERS), "--seed": (0, SEED_MAX)}}


def check_flags(a: argparse.Namespace) -> None:
    """The subcommand's numbers in their bounds: SardInputError naming the first flag that is not."""
    for flag, (lo, hi) in BOUNDS.get(a.cmd, {}).items():
        whole_number(flag, getattr(a, flag[2:].replace("-", "_")), lo, hi)
    if getattr(a, "device", None) is not None:
        pick_device(a.device, "--device")
    if a.cmd == "realism" and a.context < a.res:
        raise SardInputError(f"--context {a.context}: expected at least --res ({a.res}); the window the "
                             f"synthesizer sees holds the crop")
    if a.cmd == "dprobe":
        number("--lr", a.lr, 0, 1, above=True)


def write_report(cmd: str, report: dict, dest: Path | None) -> None:
    """The JSON report to `dest` (realism: its Markdown table beside it), or to stdout without one."""
    if not dest:
        print(json.dumps(report, indent=2))
        return
    atomic_write_json(dest, report)
    if cmd == "realism":
        atomic_write_bytes(Path(dest).with_suffix(".md"), realism_markdown(report).encode())
    print(f"sard.evaluate: wrote {dest}", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sard.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for add_parser, _ in SUBCOMMANDS.values():
        add_parser(sub)
    a = p.parse_args(argv)
    command = "python -m sard.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        check_flags(a)
        t0 = time.perf_counter()
        report, dest = SUBCOMMANDS[a.cmd][1](a, command)
        report["wall_seconds"] = time.perf_counter() - t0
        report["command"] = command
        write_report(a.cmd, report, dest)
    except SardInputError as e:
        print(f"sard.evaluate: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
