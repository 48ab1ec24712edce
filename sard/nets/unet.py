"""A small U-Net (Ronneberger et al. 2015) with BatchNorm: the benchmark's default yardstick,
small enough (0.49 M parameters) to train to convergence on a CPU in minutes.

Four levels of two 3x3 conv + BatchNorm + ReLU, widths 16-32-64-128, max-pool down, bilinear up
and concatenation with the skip; a 1x1 head. Receptive field about 100 px: a 20 px blowhole is
seen with its surroundings, at native scale (no resize to lose it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (16, 32, 64, 128)


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """x [B, C, H, W] (H, W multiples of 8) -> logits [B, num_classes, H, W]."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(double_conv(c, w))
            c = w
        self.up = nn.ModuleList(double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.classifier(x)
