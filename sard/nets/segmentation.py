"""The segmentation networks of the benchmark (DESIGN.md section 2), behind one factory: the paper's
SegFormer-B0 and BiSeNetV2, and the small U-Net that trains to convergence on a CPU (the default).

    model = build_segmenter("unet", in_channels=1)   # or "segformer-b0", "bisenetv2"
    logits = model(x)            # x [B, C, H, W] -> logits [B, num_classes, H, W], any H, W

All nets train from scratch (no pretrained weights are downloaded). The returned `Segmenter`
pads the input on the right and bottom by replicating the border up to a multiple of 32 (the
nets' output stride), runs the net and crops the logits back to H, W; inputs whose sides are
already multiples of 32 pass unchanged. Border replication rather than zeros, so the padding
adds no artificial edge that could look like a defect.

Output contract:
  - eval mode (any model), or training mode without aux heads: logits [B, num_classes, H, W];
  - "bisenetv2" built with aux=True, in training mode: a tuple (logits, aux) where aux is a
    list of 4 tensors [B, num_classes, H, W], the booster heads on the Stem, stage 3, stage 4
    and stage 5 features, in that order (the paper sums their cross-entropy with the main one's).
  - "segformer-b0" and "unet" have no auxiliary heads: aux=True raises ValueError.
The logits are unnormalised (apply softmax / argmax over dim 1); class 1 is the defect.
Training BiSeNetV2 needs batches of at least 2 (its Context Embedding block batch-normalises the
globally pooled [B, 128, 1, 1] features, as in the paper and the reference); batch 1 -> ValueError.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sard.nets.bisenetv2 import BiSeNetV2
from sard.nets.segformer import SegFormer
from sard.nets.unet import UNet

SEGMENTERS = ("unet", "segformer-b0", "bisenetv2")
SIZE_DIVISOR = 32


@dataclass
class SegmenterConfig:
    name: str = "segformer-b0"
    in_channels: int = 3        # 1 gray, 3 RGB
    num_classes: int = 2        # background, defect
    aux: bool = False           # BiSeNetV2 booster heads (training only)

    def __post_init__(self):
        self.name = self.name.lower()
        if self.name not in SEGMENTERS:
            raise ValueError(f"unknown segmenter {self.name!r}; known: {', '.join(SEGMENTERS)}")
        if self.aux and self.name != "bisenetv2":
            raise ValueError(f"aux heads exist only for 'bisenetv2', not {self.name!r}")
        if self.in_channels < 1 or self.num_classes < 2:
            raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {self.in_channels}, {self.num_classes}")

    def to_dict(self) -> dict:
        return asdict(self)


class Segmenter(nn.Module):
    """One of SEGMENTERS, padded to a multiple of 32 and cropped back (see the module docstring)."""

    def __init__(self, config: SegmenterConfig):
        super().__init__()
        self.config = c = config
        if c.name == "segformer-b0":
            self.net = SegFormer(c.in_channels, c.num_classes)
        elif c.name == "unet":
            self.net = UNet(c.in_channels, c.num_classes)
        else:
            self.net = BiSeNetV2(c.in_channels, c.num_classes, aux=c.aux)

    def forward(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"{self.config.name} expects [B, {self.config.in_channels}, H, W], got {list(x.shape)}")
        if self.training and self.config.name == "bisenetv2" and x.shape[0] < 2:
            raise ValueError("bisenetv2 trains on batches of at least 2 (BatchNorm after global pooling); "
                             "use eval() for single images")
        h, w = x.shape[2:]
        pad_h, pad_w = -h % SIZE_DIVISOR, -w % SIZE_DIVISOR
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        out = self.net(x)
        if isinstance(out, tuple):                 # (logits, aux list): BiSeNetV2 training with aux
            return out[0][..., :h, :w], [a[..., :h, :w] for a in out[1]]
        return out[..., :h, :w]


def build_segmenter(name: str, in_channels: int = 3, num_classes: int = 2, aux: bool = False) -> Segmenter:
    """A freshly initialised segmenter; unknown name -> ValueError listing SEGMENTERS."""
    return Segmenter(SegmenterConfig(name, in_channels, num_classes, aux))


def count_parameters(model: nn.Module, include_aux: bool = False) -> int:
    """Number of parameters; the training-only booster heads ("aux_heads") count only if asked."""
    return sum(p.numel() for n, p in model.named_parameters() if include_aux or "aux_heads." not in n)
