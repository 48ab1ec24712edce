"""SegFormer-B0 (Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with
Transformers", NeurIPS 2021), trained from scratch.

Encoder: Mix Transformer MiT-B0 (paper section 3.1, reference NVlabs/SegFormer
`mix_transformer.py`, class `mit_b0`):
  - overlapping patch embeddings: 7x7 conv stride 4 pad 3 for stage 1, 3x3 stride 2 pad 1 after,
    each followed by LayerNorm;
  - embed dims [32, 64, 160, 256], depths [2, 2, 2, 2], heads [1, 2, 5, 8];
  - efficient self-attention (eq. 2): keys/values come from a conv with kernel = stride = R,
    R = [8, 4, 2, 1], then LayerNorm; qkv with bias;
  - Mix-FFN (eq. 3): Linear -> 3x3 depthwise conv -> GELU -> Linear, mlp ratio 4;
  - pre-norm blocks, stochastic depth rising linearly from 0 to 0.1, LayerNorm after each stage.
Decoder: the all-MLP head (section 3.2, reference `segformer_head.py`): each stage projected to
256 channels by a Linear layer, upsampled to 1/4, concatenated, fused by 1x1 conv + BN + ReLU,
dropout 0.1, a 1x1 classifier; the logits are upsampled bilinearly to the input size.

Initialisation as the reference: Linear trunc_normal(std .02) and zero bias, conv normal with
std sqrt(2 / fan_out), LayerNorm weight 1 bias 0 in the encoder; in the decoder the Linear
projections keep PyTorch's default (the reference's `MLP` is not re-initialised), the fuse conv
is Kaiming fan-out (mmcv ConvModule), the classifier normal std .01 (mmseg BaseDecodeHead).

Sizes: any H, W >= 32 runs (patch embeddings round up, the K/V reduction conv rounds down);
H, W multiples of 32 keep the 1/4 ... 1/32 grids exact. `sard.nets.segmentation` pads to a
multiple of 32, so through the factory any size works.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MIT_B0 = dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), num_heads=(1, 2, 5, 8),
              sr_ratios=(8, 4, 2, 1), mlp_ratio=4)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop the whole residual branch per sample."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def init_mit(m: nn.Module) -> None:
    """The reference's `_init_weights` (applied to every encoder module)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def tokens_to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, h*w, C] -> [B, C, h, w]."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch merging: conv (k, stride s, pad k // 2) + LayerNorm.  [B, C, H, W] -> tokens."""

    def __init__(self, in_ch: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)  # reference: default eps 1e-5 here

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)                                          # [B, dim, h, w]
        h, w = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w     # [B, h*w, dim]


class EfficientSelfAttention(nn.Module):
    """Attention(Q, K, V) with K, V from the sequence reduced R^2 times (paper eq. 2)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} must be divisible by num_heads {num_heads}"
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, 2 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)  # reference: default eps 1e-5 here

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads, d = self.num_heads, c // self.num_heads
        q = self.q(x).reshape(b, n, heads, d).transpose(1, 2)                 # [B, heads, N, d]
        if self.sr_ratio > 1:
            x = self.norm(self.sr(tokens_to_map(x, h, w)).flatten(2).transpose(1, 2))  # [B, N / R^2, C]
        k, v = self.kv(x).reshape(b, -1, 2, heads, d).permute(2, 0, 3, 1, 4)  # each [B, heads, N', d]
        out = F.scaled_dot_product_attention(q, k, v)                         # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """x_out = MLP(GELU(Conv3x3(MLP(x_in)))) (paper eq. 3), the conv depthwise."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        x = self.dwconv(tokens_to_map(x, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MixFFN(LN(x)), with stochastic depth."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x), h, w), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x), h, w), self.drop_path, self.training)


class MixTransformer(nn.Module):
    """MiT encoder: four stages at strides 4, 8, 16, 32.  [B, C, H, W] -> 4 maps [B, C_i, H/s_i, W/s_i]."""

    def __init__(self, in_channels: int = 3, embed_dims=MIT_B0["embed_dims"], depths=MIT_B0["depths"],
                 num_heads=MIT_B0["num_heads"], sr_ratios=MIT_B0["sr_ratios"], mlp_ratio: int = 4,
                 drop_path_rate: float = 0.1):
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()  # linearly increasing
        self.patch_embeds, self.stages, self.norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        prev = in_channels
        for i, dim in enumerate(embed_dims):
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            self.patch_embeds.append(OverlapPatchEmbed(prev, dim, kernel, stride))
            first = sum(depths[:i])
            self.stages.append(nn.ModuleList(
                MiTBlock(dim, num_heads[i], sr_ratios[i], mlp_ratio, rates[first + j]) for j in range(depths[i])))
            self.norms.append(nn.LayerNorm(dim, eps=1e-6))
            prev = dim
        self.apply(init_mit)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for embed, blocks, norm in zip(self.patch_embeds, self.stages, self.norms):
            x, h, w = embed(x)                    # [B, h*w, C_i]
            for blk in blocks:
                x = blk(x, h, w)
            x = tokens_to_map(norm(x), h, w)      # [B, C_i, h, w]
            feats.append(x)
        return feats


class SegFormerHead(nn.Module):
    """All-MLP decoder (paper eq. 4): unify channels, upsample to 1/4, fuse, classify."""

    def __init__(self, in_dims, num_classes: int, embed_dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(d, embed_dim) for d in in_dims)
        self.fuse = nn.Sequential(nn.Conv2d(len(in_dims) * embed_dim, embed_dim, 1, bias=False),
                                  nn.BatchNorm2d(embed_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout2d(dropout)      # mmseg BaseDecodeHead uses Dropout2d
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)
        nn.init.kaiming_normal_(self.fuse[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]                 # the 1/4 grid
        outs = []
        for f, linear in zip(feats, self.linears):
            h, w = f.shape[2:]
            f = tokens_to_map(linear(f.flatten(2).transpose(1, 2)), h, w)   # [B, 256, h, w]
            outs.append(F.interpolate(f, size=size, mode="bilinear", align_corners=False) if (h, w) != size else f)
        x = self.fuse(torch.cat(outs[::-1], dim=1))   # reference order: c4, c3, c2, c1
        return self.classifier(self.dropout(x))       # [B, num_classes, H/4, W/4]


class SegFormer(nn.Module):
    """SegFormer-B0.  forward: [B, in_channels, H, W] -> logits [B, num_classes, H, W]."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, drop_path_rate: float = 0.1,
                 decoder_dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.encoder = MixTransformer(in_channels, drop_path_rate=drop_path_rate)
        self.decoder = SegFormerHead(MIT_B0["embed_dims"], num_classes, decoder_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.encoder(x))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
