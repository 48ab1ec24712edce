"""Quick look at a checkpoint's synthesis: per type, seed diversity / real spread, std synthetic / real
and the x0 change per reverse step on a few held-out defects, and D's gap per step from its log, by
thirds of training. The model card's measures (sard.evaluation.card) at a smaller n.
    python -m tools.quality_probe DATA CHECKPOINT [CHECKPOINT ...] [--per-type 8] [--grids DIR]
--refine N: N native-scale reverse steps after a mask painted at a fit crop's scale (SardPipeline's refine).
--grids writes the card's repaint grids (real | mask | seeds 0, 1) and step-through grids to DIR/<checkpoint name>/.
--z-carry 0,8: each checkpoint measured with each sampler latent carry in turn (ModelConfig.z_carry).
--refine-carry X: the share of the scaled pass's last latent the refine pass keeps (ModelConfig.refine_carry).
"""
import argparse
import dataclasses
import json
from pathlib import Path

import torch

from sard.data import list_dataset, split_defects
from sard.evaluation.card import game_pulse, repaint_grid, step_through_grid, synthesis_quality
from sard.evaluation.sheets import save_grid
from sard.pipeline import SardPipeline


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tools.quality_probe", description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--per-type", type=int, default=8)
    p.add_argument("--grids", type=Path)
    p.add_argument("--refine", type=int, help="native-scale refine steps (default: each checkpoint's own)")
    p.add_argument("--z-carry", help="comma list of sampler latent carries (default: each checkpoint's own)")
    p.add_argument("--refine-carry", type=float, help="the refine pass's kept latent share (default: each checkpoint's own)")
    a = p.parse_args()
    torch.set_num_threads(1)
    samples = list_dataset(a.data)
    for ck in a.checkpoints:
        base = SardPipeline.from_pretrained(ck)
        if a.refine_carry is not None:
            base.config = dataclasses.replace(base.config, refine_carry=a.refine_carry)
        for carry in ([float(x) for x in a.z_carry.split(",")] if a.z_carry else [base.config.z_carry]):
            base.config = dataclasses.replace(base.config, z_carry=carry)
            probe(base, ck, samples, a)


def probe(pipe: SardPipeline, ck: Path, samples: list, a: argparse.Namespace) -> None:
    """One JSON line of the card's per-type figures; the grids under DIR/<checkpoint name>[-zc<carry>]/."""
    split = split_defects(samples, pipe.config.split_seed)
    q = synthesis_quality(pipe, split.held_out, per_type=a.per_type, refine=a.refine)
    row = {d: {"diversity_ratio": None if v["diversity_ratio"] is None else round(v["diversity_ratio"], 2),
               "relative": None if v["diversity_ratio_relative"] is None else round(v["diversity_ratio_relative"], 2),
               "std_ratio": round(v["std_ratio"], 2), "x0_change": [round(x, 1) for x in v["x0_change_per_step"]],
               "grain_synth_real": [None if v[k] is None else round(v[k], 2) for k in ("grain_synth", "grain_real")],
               "colour_synth_real": [[round(x) for x in v[k]] for k in ("colour_synth", "colour_real")]}
           for d, v in q.items()}
    log = ck / "log.jsonl"
    gaps = {k: [None if x is None else round(x, 3) for x in v["mean_by_third"]]
            for k, v in (game_pulse(log) if log.is_file() else {}).items()}
    print(json.dumps({"checkpoint": str(ck), "z_carry": pipe.config.z_carry, "refine": pipe.config.refine if a.refine is None else a.refine,
                      "refine_carry": pipe.config.refine_carry, "quality": row,
                      "d_gap_by_third": gaps}), flush=True)
    if a.grids:
        folder = a.grids / (ck.name + (f"-zc{pipe.config.z_carry:g}" if a.z_carry else ""))
        folder.mkdir(parents=True, exist_ok=True)
        for d in pipe.defects:   # None: no usable held-out defect of the type
            for name, grid in (("repaint", repaint_grid(pipe, split.held_out, d, refine=a.refine)),
                               ("steps", step_through_grid(pipe, split.held_out, d))):
                if grid is not None:
                    save_grid(grid, folder / f"{name}_{d}.png")


if __name__ == "__main__":
    main()
