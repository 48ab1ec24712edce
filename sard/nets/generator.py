"""G(x_t, t, z, cond): the time-conditioned U-Net that predicts x0_hat (paper eq. 4).

NCSN++/DDGAN style: residual blocks, sinusoidal step embedding, the latent z (nz = 100) mapped
by an MLP to a style vector injected by adaptive group norm, tanh output. Conditioning
(DESIGN.md): the mask m and the masked clean context (1 - m) * x0 enter as extra input
channels (C + 1 + C). Fully convolutional: any size that is a multiple of `stride` works.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sard.nets.bounds import MAX_BLOCKS, MAX_CLASSES, choice, out_of_bounds, problems_of, widths
from sard.nets.layers import ResBlock, TimestepMLP, num_groups


@dataclass
class GeneratorConfig:
    image_channels: int = 1            # 1 (gray) or 3 (RGB)
    base_channels: int = 16            # CPU-sized defaults; DDGAN uses 64 and more blocks on GPUs
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    nz: int = 100                      # latent z size
    style_dim: int = 128               # output of the z mapping MLP
    z_mlp_layers: int = 3
    num_classes: int = 0               # defect types; 0 = unconditional
    # Fields once written and since dropped, with the value that made them a no-op: old configs still read.
    RETIRED: ClassVar[dict] = {"dropout": 0.0}

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    def problems(self) -> list[str]:
        """What is wrong with these values, as 'field: expected ..., got ...' lines (empty: fine). Widths
        have no upper bound here: what fits is the machine's memory (sard.memory)."""
        return problems_of(
            choice("image_channels", self.image_channels, (1, 3)),
            out_of_bounds("base_channels", self.base_channels, 1, whole=True),
            widths("channel_mult", self.channel_mult),
            out_of_bounds("num_res_blocks", self.num_res_blocks, 0, MAX_BLOCKS, whole=True),
            out_of_bounds("nz", self.nz, 1, whole=True),
            out_of_bounds("style_dim", self.style_dim, 1, whole=True),
            out_of_bounds("z_mlp_layers", self.z_mlp_layers, 1, MAX_BLOCKS, whole=True),
            out_of_bounds("num_classes", self.num_classes, 0, MAX_CLASSES, whole=True))

    def to_dict(self) -> dict:
        return asdict(self)


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = c = config
        ch = c.base_channels
        temb_dim = 4 * ch
        self.temb = TimestepMLP(ch, temb_dim)
        self.class_emb = nn.Embedding(c.num_classes, temb_dim) if c.num_classes > 0 else None
        mapping: list[nn.Module] = [nn.Linear(c.nz, c.style_dim), nn.SiLU()]
        for _ in range(c.z_mlp_layers - 1):
            mapping += [nn.Linear(c.style_dim, c.style_dim), nn.SiLU()]
        self.z_mapping = nn.Sequential(*mapping)

        in_ch = 2 * c.image_channels + 1  # x_t, mask, masked context
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        block = lambda i, o, r=None: ResBlock(i, o, temb_dim, c.style_dim, r)  # noqa: E731

        self.down = nn.ModuleList()
        skips = [ch]
        cur = ch
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                self.down.append(block(cur, ch * mult))
                cur = ch * mult
                skips.append(cur)
            if level < len(c.channel_mult) - 1:
                self.down.append(block(cur, cur, "down"))
                skips.append(cur)
        self.mid = nn.ModuleList([block(cur, cur), block(cur, cur)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for _ in range(c.num_res_blocks + 1):
                self.up.append(block(cur + skips.pop(), ch * mult))
                cur = ch * mult
            if level > 0:
                self.up.append(block(cur, cur, "up"))
        self.norm_out = nn.GroupNorm(num_groups(cur), cur, eps=1e-6)
        self.conv_out = nn.Conv2d(cur, c.image_channels, 3, padding=1)

    def forward(self, x_t: torch.Tensor, i: torch.Tensor, z: torch.Tensor, mask: torch.Tensor,
                context: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """x_t, context: [B, C, H, W] in [-1, 1]; mask: [B, 1, H, W] in {0, 1}; i: [B] step index;
        z: [B, nz]; label: [B] defect index or None. Returns x0_hat: [B, C, H, W] in (-1, 1)."""
        s = self.config.stride
        if x_t.shape[-1] % s or x_t.shape[-2] % s:
            raise ValueError(f"image size {tuple(x_t.shape[-2:])} is not a multiple of the generator stride {s}")
        temb = self.temb(i)
        if self.class_emb is not None:
            if label is None:
                raise ValueError("this generator is class-conditional: pass a defect label")
            temb = temb + self.class_emb(label)
        style = self.z_mapping(z)
        h = self.conv_in(torch.cat([x_t, mask, context], dim=1))
        hs = [h]
        for blk in self.down:
            h = blk(h, temb, style)
            hs.append(h)
        for blk in self.mid:
            h = blk(h, temb, style)
        for blk in self.up:
            if blk.resample != "up":
                h = torch.cat([h, hs.pop()], dim=1)
            h = blk(h, temb, style)
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))
