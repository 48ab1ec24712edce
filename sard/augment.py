"""Differentiable augmentation of the discriminator's input pairs (DiffAugment, Zhao et al. 2020).

About 130 real defects train the synthesizer, so D would memorise them; it sees every real and
every fake pair through the same random transforms instead. Only transforms that map a diffusion
pair of an image to the diffusion pair of the transformed image are used, so a real pair stays a
real pair: a brightness shift c of x_0 moves x_i by sqrt(alpha_bar_i) c, and a translation moves
both images and the mask alike.
"""
from __future__ import annotations

import torch

from sard.schedule import Schedule


def augment_pair(x_prev: torch.Tensor, x_t: torch.Tensor, mask: torch.Tensor, i: torch.Tensor,
                 schedule: Schedule, rng: torch.Generator, brightness: float = 0.2, shift: float = 0.125,
                 prev_clean: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_i, x_{i+1}, m) -> the same pair of a brightened, translated image; one draw per sample.

    brightness: half-range of c in [-1, 1] units; shift: largest translation as a fraction of the side;
    prev_clean: x_prev is x_0 itself (the discriminator judges x0), so it moves by c."""
    B, dev = x_prev.shape[0], x_prev.device
    c = (torch.rand(B, generator=rng, device=rng.device).to(dev) * 2 - 1) * brightness
    c = c.reshape(B, 1, 1, 1).to(x_prev.dtype)
    x_prev = x_prev + (c if prev_clean else schedule.signal(i, 4).to(x_prev) * c)
    x_t = x_t + schedule.signal(i + 1, 4).to(x_t) * c
    H, W = x_prev.shape[-2:]
    dy = torch.randint(-int(H * shift), int(H * shift) + 1, (B,), generator=rng, device=rng.device).tolist()
    dx = torch.randint(-int(W * shift), int(W * shift) + 1, (B,), generator=rng, device=rng.device).tolist()
    roll = lambda x: torch.stack([x[k].roll((dy[k], dx[k]), dims=(-2, -1)) for k in range(B)])  # noqa: E731
    return roll(x_prev), roll(x_t), roll(mask)
