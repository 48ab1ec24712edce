"""Start a training run from an existing checkpoint (`python -m sard.train --init CHECKPOINT`).

What the new part can reuse is loaded: every generator weight of the same shape; the class
embedding row of a defect type both know; gray input/output layers adapted to RGB (and back).
A new defect type starts from the mean of the known types' embeddings, so it begins as "a defect"
rather than as noise. The discriminator always starts fresh (checkpoints ship the generator only).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from sard.nets.generator import Generator, GeneratorConfig
from sard.store.model_folder import WEIGHTS_NAME, ModelConfig
from sard.store.tensors import file_hash, load_tensors


def _channels(w: torch.Tensor, c_old: int, c_new: int, dim: int, spread: bool) -> torch.Tensor:
    """Gray -> RGB: repeat along `dim` (divided by 3 where the channels are summed by the next layer:
    the network then sees the same luminance); RGB -> gray: sum (spread) or mean."""
    if c_old == c_new:
        return w
    if c_new == 3:
        return w.repeat_interleave(3, dim) / (3 if spread else 1)
    return w.sum(dim, keepdim=True) if spread else w.mean(dim, keepdim=True)


def transfer_generator(G: Generator, folder: Path, defects: list[str]) -> dict:
    """Load into G what the checkpoint in `folder` offers for `defects`; returns what was done."""
    config = ModelConfig.read(folder)
    state = {k: v.float() for k, v in load_tensors(folder / WEIGHTS_NAME).items()}
    old_defects = list(config.defects)
    c_old, c_new = config.generator.image_channels, G.config.image_channels
    own = G.state_dict()
    loaded, adapted, fresh = [], [], []
    for key, mine in own.items():
        src = state.get(key)
        if src is None:
            fresh.append(key)
            continue
        if key == "class_emb.weight":
            mean = src.mean(0)
            rows = [src[old_defects.index(d)] if d in old_defects and old_defects.index(d) < len(src) else mean
                    for d in defects]
            src = torch.stack(rows)
            adapted.append(f"{key}: {sum(d in old_defects for d in defects)} of {len(defects)} types known, "
                           f"the others start at the known types' mean")
        elif key == "conv_in.weight" and c_old != c_new:   # input channels: x_t (C), mask (1), context (C)
            x, m, ctx = src[:, :c_old], src[:, c_old:c_old + 1], src[:, c_old + 1:]
            src = torch.cat([_channels(x, c_old, c_new, 1, True), m, _channels(ctx, c_old, c_new, 1, True)], 1)
            adapted.append(f"{key}: {c_old} -> {c_new} image channels")
        elif key in ("conv_out.weight", "conv_out.bias") and c_old != c_new:
            src = _channels(src, c_old, c_new, 0, False)
            adapted.append(f"{key}: {c_old} -> {c_new} image channels")
        if src.shape != mine.shape:
            fresh.append(key)
            continue
        own[key] = src.to(mine.dtype)
        loaded.append(key)
    G.load_state_dict(own)
    return {"checkpoint": str(folder.resolve()), "hash": file_hash(folder / WEIGHTS_NAME), "step": config.step,
            "defects": old_defects, "channels": c_old, "loaded": len(loaded), "adapted": adapted, "fresh": fresh}


def generator_config_from(folder: Path, image_channels: int, num_classes: int) -> GeneratorConfig:
    """The checkpoint's generator architecture, with this data's channels and number of types."""
    return replace(ModelConfig.read(folder).generator, image_channels=image_channels, num_classes=num_classes)
