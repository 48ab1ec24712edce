"""Building blocks shared by the generator and the discriminator (NCSN++ / DDGAN style)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(i: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of the step index.  i: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=i.device, dtype=torch.float32) / half)
    args = i.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class TimestepMLP(nn.Module):
    """Sinusoidal embedding followed by a two-layer MLP, as DDGAN's TimestepEmbedding."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, i: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(i, self.dim))


def num_groups(channels: int) -> int:
    """Up to 32 groups of at least 4 channels, dividing the channel count."""
    g = min(32, max(1, channels // 4))
    while channels % g:
        g -= 1
    return g


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm whose scale and shift come from the latent style vector (DDGAN's AdaptiveGroupNorm)."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, affine=False, eps=1e-6)
        self.style = nn.Linear(style_dim, 2 * channels)
        nn.init.zeros_(self.style.weight)
        with torch.no_grad():  # start as the identity: gamma = 1, beta = 0
            self.style.bias.zero_()
            self.style.bias[:channels] = 1.0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(x) + beta


class ResBlock(nn.Module):
    """BigGAN-style residual block of NCSN++ with time embedding and adaptive group norm.

    resample: None, "down" (average pool) or "up" (nearest), applied inside the block.
    """

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, style_dim: int,
                 resample: str | None = None):
        super().__init__()
        self.resample = resample
        self.norm1 = AdaptiveGroupNorm(in_ch, style_dim)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb = nn.Linear(temb_dim, out_ch)
        self.norm2 = AdaptiveGroupNorm(out_ch, style_dim)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # the block starts as its skip path
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch or resample else nn.Identity()

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(x, style))
        h = self.conv1(self._resample(h))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = F.silu(self.norm2(h, style))
        h = self.conv2(h)
        return (self.skip(self._resample(x)) + h) / math.sqrt(2.0)
