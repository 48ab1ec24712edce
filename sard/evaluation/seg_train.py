"""Train one segmenter and predict with it: the part of the segmentation benchmark that is the same
for every synthesis method (`sard.evaluation.segmentation` decides what data goes in).

Data: whole images resized to res x res, stored as uint8 [N, C, res, res]; targets are the masks'
*coverage* at that size (INTER_AREA of the 0/1 mask, float [N, 1, res, res] in [0, 1]), so a
blowhole of 0.1 % of a tile keeps its area and place as a soft target instead of vanishing or
jumping a pixel under a nearest-neighbour resize.

Input handling, identical for every method and backbone:
- each image is standardised (zero mean, unit std): magnetic-tile exposures differ a lot from tile
  to tile, and without it neither net found the defects within the step budget (SegFormer-B0 stayed
  at "all background" after 300 steps; with it: mIoU 4 % after 300, 10 % after 700 steps);
- training windows of `crop` x `crop` px cut from the res x res images (same scale as at test
  time, where the fully convolutional nets see the whole res x res image), half of them centred
  on a random defect pixel: a step then costs 36 % of a whole 160 px image and holds many more
  defect pixels; random horizontal and vertical flips.

Loss: L = CE(logits, [1 - c, c]) + Dice_defect(softmax(logits)[:, 1], c), c the coverage.
Cross-entropy alone is ruled by the background (defects are 0.1-1 % of the pixels of blowhole and
crack tiles) and a net trained from scratch for a few hundred steps settles on "all background";
the soft Dice term is normalised by the defect area, so defects weigh as much as the background,
while CE keeps the background calibrated (a class-weighted CE paints halos). Dice is taken per
window and averaged over the windows that hold a defect, so a blowhole window counts as much as
a window of 'uneven' covering a quarter of the tile (a batch-pooled Dice is ruled by the largest
defects). BiSeNetV2 trains with its four booster heads, each with the same loss (weight 1, as its
paper).

Optimiser AdamW (weight decay 0.01), linear warm-up over the first 5 % of the steps, then cosine
decay to 1 % of the learning rate.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sard.nets.segmentation import build_segmenter


@dataclass
class SegTrainConfig:
    backbone: str = "segformer-b0"
    in_channels: int = 1
    iters: int = 300
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05        # share of the steps
    final_lr: float = 0.01      # share of lr at the last step
    crop: int = 96              # train on crop x crop windows of the res x res images (0: whole images)
    centred: float = 0.5        # share of crops centred on a random defect pixel
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float [B, C, H, W], each image standardised (zero mean, unit std;
    std floored at 0.05 of the [-1, 1] range so a flat image is not blown up)."""
    x = images.float() / 127.5 - 1
    return (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 0.05)


def seg_loss(logits: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy + soft Dice of the defect class (per window, over windows with a defect).
    logits [B, 2, H, W], cover [B, 1, H, W] in [0, 1] (the defect's share of each pixel)."""
    target = torch.cat([1 - cover, cover], dim=1)                  # [B, 2, H, W]
    ce = F.cross_entropy(logits, target)
    p = logits.softmax(dim=1)[:, 1:]                               # [B, 1, H, W]
    inter = (p * cover).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + cover.sum(dim=(1, 2, 3)) + 1)   # [B]
    has = cover.sum(dim=(1, 2, 3)) >= 0.5                 # samples holding at least half a defect pixel
    dice = dice[has].mean() if has.any() else dice.sum() * 0
    return ce + dice


def lr_factor(step: int, cfg: SegTrainConfig) -> float:
    """Linear warm-up, then cosine from 1 to cfg.final_lr."""
    warm = max(1, round(cfg.warmup * cfg.iters))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, cfg.iters - warm)
    return cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * t))


def flip_batch(x: torch.Tensor, c: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal and vertical flips, per sample, the same for image and target."""
    for dim in (-1, -2):
        pick = torch.from_numpy(rng.random(len(x)) < 0.5)
        if pick.any():
            x, c = x.clone(), c.clone()
            x[pick], c[pick] = x[pick].flip(dim), c[pick].flip(dim)
    return x, c


def crop_batch(x: torch.Tensor, c: torch.Tensor, size: int, centred: float, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """size x size windows of x [B, C, H, W] and c [B, 1, H, W]: a share `centred` of them around a
    random defect pixel (jittered by size / 4), the others anywhere."""
    B, _, H, W = x.shape
    if size <= 0 or size >= min(H, W):
        return x, c
    xs, cs = [], []
    for i in range(B):
        ys, xs_ = torch.nonzero(c[i, 0] > 0.25, as_tuple=True)
        if len(ys) and rng.random() < centred:
            k = int(rng.integers(len(ys)))
            jy, jx = rng.integers(-(size // 4), size // 4 + 1, size=2)
            top = int(np.clip(int(ys[k]) - size // 2 + jy, 0, H - size))
            left = int(np.clip(int(xs_[k]) - size // 2 + jx, 0, W - size))
        else:
            top, left = int(rng.integers(H - size + 1)), int(rng.integers(W - size + 1))
        xs.append(x[i, :, top:top + size, left:left + size])
        cs.append(c[i, :, top:top + size, left:left + size])
    return torch.stack(xs), torch.stack(cs)


def train_segmenter(cfg: SegTrainConfig, images: torch.Tensor, covers: torch.Tensor, progress: bool = True,
                    desc: str = "train") -> tuple[torch.nn.Module, dict]:
    """A fresh segmenter trained on images uint8 [N, C, res, res] and covers [N, 1, res, res].
    Batches are drawn uniformly with replacement by a numpy Generator seeded with cfg.seed (the
    weights' init uses torch.manual_seed(cfg.seed)). Returns (model in eval mode, log)."""
    if len(images) == 0:
        raise ValueError("no training images")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 1])
    model = build_segmenter(cfg.backbone, cfg.in_channels, aux=cfg.backbone == "bisenetv2").train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    batch = max(2, min(cfg.batch, len(images))) if cfg.backbone == "bisenetv2" else min(cfg.batch, len(images))
    losses, t0 = [], time.perf_counter()
    bar = tqdm(range(cfg.iters), desc=desc, disable=not progress, mininterval=5, leave=False)
    for _ in bar:
        idx = torch.from_numpy(rng.integers(0, len(images), size=batch))
        x, c = crop_batch(to_input(images[idx]), covers[idx].float(), cfg.crop, cfg.centred, rng)
        x, c = flip_batch(x, c, rng)
        out = model(x)
        if isinstance(out, tuple):                         # BiSeNetV2: main logits + booster heads
            loss = seg_loss(out[0], c) + sum(seg_loss(a, c) for a in out[1])
        else:
            loss = seg_loss(out, c)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    seconds = time.perf_counter() - t0
    tail = losses[-max(1, len(losses) // 10):]
    log = {"seconds": seconds, "seconds_per_step": seconds / max(1, cfg.iters), "batch": batch,
           "loss_first": losses[0] if losses else None, "loss_last10pct": float(np.mean(tail)) if losses else None}
    return model.eval(), log


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch: int = 16) -> np.ndarray:
    """Defect probability float32 [N, res, res] for uint8 images [N, C, res, res]."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        logits = model(to_input(images[i:i + batch]))
        out.append(logits.softmax(dim=1)[:, 1].numpy())
    return np.concatenate(out) if out else np.zeros((0,) + tuple(images.shape[-2:]), np.float32)
