"""Train one segmenter and predict with it: the part of the segmentation benchmark that is the same
for every synthesis method (`sard.evaluation.segmentation` decides what data goes in).

Data (SegData): a list of images uint8 [C, H, W] of any size with targets [1, H, W] in [0, 1]: the
masks at native scale, or, when the benchmark resizes whole images (--res N), the masks' *coverage*
at that size (INTER_AREA of the 0/1 mask), so a small defect keeps its area as a soft target.

Input handling, identical for every method and backbone:
- each image is standardised (zero mean, unit std, over the whole image): magnetic-tile exposures
  differ a lot from tile to tile, and without it SegFormer-B0 stayed at "all background";
- training patches of `crop` x `crop` px (native scale by default, so a 20 px blowhole stays 20 px),
  half of them centred on a random defect pixel (jittered by crop / 4); an image smaller than the
  patch is padded by replicating its border; random horizontal and vertical flips.
- Equal real exposure: a batch holds round(real_fraction x batch) real pairs, drawn by a stream
  seeded by the seed alone, and the rest synthetic, drawn by a second stream. So with one seed every
  method's segmenter sees the same real patches in the same steps; Real only trains on that real
  stream alone; real_fraction 0 trains on synthetic pairs alone.

Loss: L = CE(logits, [1 - c, c]) + Dice_defect(softmax(logits)[:, 1], c), c the target.
Cross-entropy alone is ruled by the background (defects are 0.1-1 % of the pixels of blowhole and
crack tiles) and a net trained from scratch settles on "all background"; the soft Dice term is
normalised by the defect area, so defects weigh as much as the background, while CE keeps the
background calibrated. Dice is taken per patch and averaged over the patches that hold a defect,
so a blowhole counts as much as a large 'uneven' region. BiSeNetV2 trains with its four booster
heads, each with the same loss (weight 1, as its paper).

Optimiser AdamW (weight decay 0.01), linear warm-up over the first 5 % of the steps, then cosine
decay to 1 % of the learning rate.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sard.nets.segmentation import build_segmenter


@dataclass
class SegTrainConfig:
    backbone: str = "unet"
    in_channels: int = 1
    iters: int = 300
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05        # share of the steps
    final_lr: float = 0.01      # share of lr at the last step
    crop: int = 64              # train on crop x crop patches (0: whole images, which must share one size)
    centred: float = 0.5        # share of patches centred on a random defect pixel
    real_fraction: float = 0.5  # share of each batch drawn from the real pairs
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def split_batch(self, has_synthetic: bool) -> tuple[int, int]:
        """(real, synthetic) pairs per batch. Without synthetic pairs (Real only) the real share alone,
        so Real only sees exactly the real patches every other method sees."""
        n_real = round(self.real_fraction * self.batch)
        return n_real, (self.batch - n_real if has_synthetic else 0)


@dataclass
class SegData:
    """Training images of any sizes with their targets; per-image mean and std for standardising."""
    images: list[torch.Tensor]         # uint8 [C, H, W]
    targets: list[torch.Tensor]        # float16 [1, H, W] in [0, 1]
    stats: list[tuple[float, float]] = field(default_factory=list)
    defect_pixels: list[np.ndarray] = field(default_factory=list)   # int [K, 2] (y, x) with target > 0.25

    def __post_init__(self):
        if len(self.images) != len(self.targets):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} targets")
        self.stats = [image_stats(x) for x in self.images]
        self.defect_pixels = [np.argwhere(t[0].float().numpy() > 0.25) for t in self.targets]

    def __len__(self) -> int:
        return len(self.images)


def image_stats(image: torch.Tensor) -> tuple[float, float]:
    """Mean and std of a uint8 image mapped to [-1, 1]; std floored at 0.05 so a flat image is not blown up."""
    x = image.float() / 127.5 - 1
    std = float(x.std()) if x.numel() > 1 else 0.0
    return float(x.mean()), std + 0.05


def to_input(image: torch.Tensor, stats: tuple[float, float] | None = None) -> torch.Tensor:
    """uint8 [C, H, W] (or a crop of it) -> float [C, H, W] standardised by the whole image's stats."""
    mean, std = stats or image_stats(image)
    return (image.float() / 127.5 - 1 - mean) / std


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


def sample_patches(data: SegData, n: int, cfg: SegTrainConfig, rng: np.random.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """n standardised patches x [n, C, crop, crop] and targets [n, 1, crop, crop] of random images of
    data: a share cfg.centred around a random defect pixel (jittered by crop / 4), the others anywhere;
    each flipped at random (h, v). An image smaller than the patch is padded by replicating its border."""
    xs, cs = [], []
    for i in rng.integers(0, len(data), size=n):
        image, target = data.images[i], data.targets[i].float()
        H, W = image.shape[-2:]
        size = cfg.crop or H
        ph, pw = max(0, size - H), max(0, size - W)
        top = left = 0
        pixels = data.defect_pixels[i]
        if rng.random() < cfg.centred and len(pixels):
            y, x = pixels[rng.integers(len(pixels))]
            jy, jx = rng.integers(-(size // 4), size // 4 + 1, size=2)
            top, left = int(np.clip(y - size // 2 + jy, 0, max(0, H - size))), int(np.clip(x - size // 2 + jx, 0, max(0, W - size)))
        else:
            top, left = int(rng.integers(max(1, H - size + 1))), int(rng.integers(max(1, W - size + 1)))
        x = to_input(image[:, top:top + size, left:left + size], data.stats[i])
        c = target[:, top:top + size, left:left + size]
        if ph or pw:
            x = F.pad(x[None], (0, pw, 0, ph), mode="replicate")[0]
            c = F.pad(c[None], (0, pw, 0, ph), mode="replicate")[0]
        for dim in (-1, -2):
            if rng.random() < 0.5:
                x, c = x.flip(dim), c.flip(dim)
        xs.append(x)
        cs.append(c)
    return torch.stack(xs), torch.stack(cs)


def batches(cfg: SegTrainConfig, real: SegData | None, synthetic: SegData | None):
    """Endless (x [B, C, crop, crop], target [B, 1, crop, crop]): the real patches first, from the stream
    seeded by [seed, 1] (the same for every method), then the synthetic ones, from [seed, 2]."""
    n_real, n_syn = cfg.split_batch(bool(synthetic and len(synthetic)))
    if n_real and not (real and len(real)):
        raise ValueError("no real training images, but real_fraction > 0")
    if n_real + n_syn == 0:
        raise ValueError("empty batch: real_fraction 0 needs synthetic pairs")
    streams = [(d, n, np.random.default_rng([cfg.seed, i])) for i, (d, n) in enumerate(((real, n_real),
                                                                                        (synthetic, n_syn)), 1) if n]
    while True:
        parts = [sample_patches(d, n, cfg, rng) for d, n, rng in streams]
        yield torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def train_segmenter(cfg: SegTrainConfig, real: SegData | None, synthetic: SegData | None = None,
                    progress: bool = True, desc: str = "train",
                    device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A fresh segmenter trained on `batches` (module docstring) on `device`; the weights' init seeded
    by torch.manual_seed(seed). Returns (model in eval mode, log with the loss per tenth of the steps)."""
    n_real, n_syn = cfg.split_batch(bool(synthetic and len(synthetic)))
    if cfg.backbone == "bisenetv2" and n_real + n_syn < 2:
        raise ValueError("bisenetv2 trains on batches of at least 2")
    torch.manual_seed(cfg.seed)
    data = batches(cfg, real, synthetic)
    # built on the CPU, then moved: the same initial weights on every device
    model = build_segmenter(cfg.backbone, cfg.in_channels, aux=cfg.backbone == "bisenetv2").train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    losses, t0 = [], time.perf_counter()
    bar = tqdm(range(cfg.iters), desc=desc, disable=not progress, mininterval=5, leave=False)
    for _ in bar:
        x, c = (t.to(device) for t in next(data))   # patches are cut on the CPU, by the seeded streams
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
    tenths = [float(np.mean(t)) for t in np.array_split(np.asarray(losses), min(10, len(losses)))]
    log = {"seconds": seconds, "seconds_per_step": seconds / max(1, cfg.iters), "batch_real": n_real,
           "batch_synthetic": n_syn, "loss_first": losses[0], "loss_tenths": tenths, "loss_last10pct": tenths[-1]}
    return model.eval(), log


@torch.no_grad()
def predict(model: torch.nn.Module, image: torch.Tensor) -> np.ndarray:
    """Defect probability float32 [H, W] of one uint8 image [C, H, W] (any size: the nets pad), on the
    model's device."""
    model.eval()
    x = to_input(image)[None].to(next(model.parameters()).device)
    return model(x).softmax(dim=1)[0, 1].cpu().numpy()
