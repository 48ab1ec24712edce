"""D(x_{t-1}, x_t, t) with Discriminative Mask Guidance (paper section III-B).

DDGAN's time-conditioned discriminator: the two images concatenated, the step embedding added in
every down block, minibatch standard deviation, a global head -> D_img. The DMG branch takes
features f_l of block l, multiplies them by the mask resized to that layer and scores them with a
light conv head psi (DMG eq. 2), averaged over the mask's area so tiny defects are not drowned.
The branch runs the shared blocks on the masked images, so nothing outside the mask reaches it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sard.nets.layers import TimestepMLP


@dataclass
class DiscriminatorConfig:
    image_channels: int = 1
    base_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)   # a down block per entry after the first
    temb_dim: int = 128
    dmg: bool = True
    dmg_layer: int = 1        # f_l: output of down block l (0 = full resolution)
    num_classes: int = 0      # > 0: projection term on D_img for the defect type

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DOutput:
    img: torch.Tensor            # D_img  [B]
    fg: torch.Tensor | None      # D_fg   [B] (None without DMG)


class DownBlock(nn.Module):
    """DDGAN's DownConvBlock: conv, + step embedding, conv, optional 2x down, residual / sqrt 2."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb = nn.Linear(temb_dim, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = h + self.temb(temb)[:, :, None, None]
        h = F.leaky_relu(h, 0.2)
        h = self.conv2(h)
        skip = self.skip(x)
        if self.down:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return (h + skip) / math.sqrt(2.0)


class Discriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = c = config
        ch = c.base_channels
        self.temb = TimestepMLP(c.temb_dim, c.temb_dim)
        self.conv_in = nn.Conv2d(2 * c.image_channels, ch * c.channel_mult[0], 1)
        self.blocks = nn.ModuleList()
        cur = ch * c.channel_mult[0]
        widths = []
        for k, mult in enumerate(c.channel_mult):
            self.blocks.append(DownBlock(cur, ch * mult, c.temb_dim, down=k > 0))
            cur = ch * mult
            widths.append(cur)
        self.stddev_group = 4
        self.conv_out = nn.Conv2d(cur + 1, cur, 3, padding=1)
        self.linear_out = nn.Linear(cur, 1)
        self.class_proj = nn.Embedding(c.num_classes, cur) if c.num_classes > 0 else None
        if c.dmg:
            if not 0 <= c.dmg_layer < len(c.channel_mult):
                raise ValueError(f"dmg_layer must be in 0..{len(c.channel_mult) - 1}, got {c.dmg_layer}")
            w = widths[c.dmg_layer]
            self.psi = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(w, 1, 1))
        else:
            self.psi = None

    def _trunk(self, x: torch.Tensor, temb: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        h = self.conv_in(x)
        for k, blk in enumerate(self.blocks):
            h = blk(h, temb)
            if k == upto:
                break
        return h

    def _minibatch_std(self, h: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        g = min(b, self.stddev_group)
        while b % g:
            g -= 1
        std = h.view(g, -1, c, hh, ww).var(0, unbiased=False).add(1e-8).sqrt().mean([1, 2, 3])  # [B/g]
        return torch.cat([h, std.repeat(g)[:, None, None, None].expand(b, 1, hh, ww)], dim=1)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, i: torch.Tensor, mask: torch.Tensor,
                label: torch.Tensor | None = None) -> DOutput:
        """x_prev, x_t: [B, C, H, W]; i: [B]; mask: [B, 1, H, W] in {0, 1}; label: [B] or None."""
        temb = F.leaky_relu(self.temb(i), 0.2)
        h = self._trunk(torch.cat([x_prev, x_t], dim=1), temb)
        h = F.leaky_relu(self.conv_out(self._minibatch_std(h)), 0.2)
        pooled = h.sum(dim=(2, 3))
        d_img = self.linear_out(pooled).squeeze(1)
        if self.class_proj is not None and label is not None:
            d_img = d_img + (self.class_proj(label) * pooled).sum(1) / math.sqrt(pooled.shape[1])
        return DOutput(img=d_img, fg=self.d_fg(x_prev, x_t, temb, mask) if self.psi is not None else None)

    def d_fg(self, x_prev: torch.Tensor, x_t: torch.Tensor, temb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """D_fg(x, m) = psi(f_l(x) * Up(m)) (DMG eq. 2), normalised by the mask's area.

        f_l is computed on the masked pair, so pixels outside the mask cannot reach D_fg."""
        f = self._trunk(torch.cat([x_prev, x_t], dim=1) * mask, temb, upto=self.config.dmg_layer)
        m = F.adaptive_max_pool2d(mask, f.shape[-2:])  # keeps one-pixel defects alive at layer l
        score = self.psi(f * m) * m
        return score.sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp(min=1.0)
