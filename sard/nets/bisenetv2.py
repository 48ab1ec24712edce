"""BiSeNetV2 (Yu et al., "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time
Semantic Segmentation", IJCV 2021), trained from scratch.

Layer by layer as Table 1 and Figs. 3-7 of the paper, with the details the paper leaves open
taken from the reference implementation the mmsegmentation port is based on
(CoinCheung/BiSeNet `lib/models/bisenetv2.py`):
  - Detail branch: three stages of 3x3 conv-BN-ReLU, channels 64, 64, 128, strides (2, 1),
    (2, 1, 1), (2, 1, 1)  -> 1/8.
  - Semantic branch: Stem block (3x3 s2 conv, then a 1x1 + 3x3 s2 conv branch beside a 3x3 s2
    max-pool, concatenated and fused by a 3x3 conv; 16 ch, 1/4), Gather-and-Expansion layers with
    expansion 6: stage 3 GE(32, s2), GE(32, s1); stage 4 GE(64, s2), GE(64, s1); stage 5
    GE(128, s2), 3 x GE(128, s1); then the Context Embedding block (global average pooling, BN,
    1x1 conv-BN-ReLU, broadcast add, 3x3 conv-BN-ReLU)  -> 1/32.
  - Bilateral Guided Aggregation (Fig. 6): detail 3x3 depthwise + 1x1 gated by the upsampled
    semantic 3x3 conv; detail 3x3 s2 conv + 3x3 s2 average pool gated by the semantic depthwise +
    1x1; sum at 1/8, 3x3 conv-BN-ReLU.
  - Segmentation head (Fig. 7): 3x3 conv-BN-ReLU to C_t channels, dropout 0.1, 1x1 conv to the
    classes, bilinear upsampling to the input size. The paper leaves C_t open; C_t = 1024 as in
    the reference implementation and mmsegmentation's BiSeNetV2 config (FCNHead channels=1024).
  - Booster (optional, `aux=True`): four more such heads (C_t = 128, as the reference) on the
    Stem, stage 3, stage 4 and stage 5 (before CE) outputs; used in training only and not part
    of the deployed network (`segmentation.count_parameters` leaves them out unless asked).
Details from the reference that the paper's figures do not show: ReLU after the depthwise convs
in GE layers and after the BGA's final conv, BN + ReLU on the CE block's last conv, zero-init of
the last BN in every GE layer. One departure: the BGA upsampling is bilinear to the detail map's
size (as mmsegmentation) instead of nearest x4, which also makes sizes that are not multiples
of 32 line up.

Initialisation as the reference: conv Kaiming normal fan-out, BN weight 1 bias 0.
Sizes: every stride-2 layer rounds up, so any H, W runs; logits come back at H, W.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(in_ch: int, out_ch: int, k: int = 3, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """k x k conv (no bias, 'same' padding) + BN (+ ReLU)."""
    layers = [nn.Conv2d(in_ch, out_ch, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DetailBranch(nn.Module):
    """Wide and shallow: [B, C, H, W] -> [B, 128, H/8, W/8]."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.s1 = nn.Sequential(conv_bn(in_channels, 64, stride=2), conv_bn(64, 64))
        self.s2 = nn.Sequential(conv_bn(64, 64, stride=2), conv_bn(64, 64), conv_bn(64, 64))
        self.s3 = nn.Sequential(conv_bn(64, 128, stride=2), conv_bn(128, 128), conv_bn(128, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s3(self.s2(self.s1(x)))


class StemBlock(nn.Module):
    """Fig. 4a: two-branch downsampling.  [B, C, H, W] -> [B, 16, H/4, W/4]."""

    def __init__(self, in_channels: int, out_ch: int = 16):
        super().__init__()
        self.conv = conv_bn(in_channels, out_ch, stride=2)
        self.left = nn.Sequential(conv_bn(out_ch, out_ch // 2, k=1), conv_bn(out_ch // 2, out_ch, stride=2))
        self.right = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = conv_bn(2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GatherExpansion(nn.Module):
    """Fig. 5b (stride 1) and 5c (stride 2): 3x3 conv gathers, depthwise conv expands by e = 6,
    1x1 projects back; identity shortcut, or depthwise-separable 3x3 s2 shortcut at stride 2."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int = 6):
        super().__init__()
        mid = in_ch * expansion
        self.conv1 = conv_bn(in_ch, in_ch)
        if stride == 1:
            assert in_ch == out_ch, "a stride-1 GE layer keeps the channel count"
            self.dwconv = conv_bn(in_ch, mid, groups=in_ch)
            self.shortcut = None
        else:
            self.dwconv = nn.Sequential(conv_bn(in_ch, mid, stride=2, groups=in_ch, relu=False),
                                        conv_bn(mid, mid, groups=mid))
            self.shortcut = nn.Sequential(conv_bn(in_ch, in_ch, stride=2, groups=in_ch, relu=False),
                                          conv_bn(in_ch, out_ch, k=1, relu=False))
        self.conv2 = conv_bn(mid, out_ch, k=1, relu=False)
        self.conv2[1].zero_init = True  # the reference's `last_bn`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.dwconv(self.conv1(x))) + shortcut)


class ContextEmbedding(nn.Module):
    """Fig. 4b: global average pooling, BN, 1x1 conv-BN-ReLU, broadcast add, 3x3 conv."""

    def __init__(self, ch: int = 128):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch)
        self.conv_gap = conv_bn(ch, ch, k=1)
        self.conv_last = conv_bn(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.conv_gap(self.bn(x.mean(dim=(2, 3), keepdim=True)))   # [B, C, 1, 1]
        return self.conv_last(x + g)


class SemanticBranch(nn.Module):
    """Narrow and deep: returns the Stem, stage 3, 4, 5 (before CE) features and the CE output
    ([B, 16, H/4], [B, 32, H/8], [B, 64, H/16], [B, 128, H/32], [B, 128, H/32])."""

    def __init__(self, in_channels: int, expansion: int = 6):
        super().__init__()
        self.stem = StemBlock(in_channels, 16)
        self.s3 = nn.Sequential(GatherExpansion(16, 32, 2, expansion), GatherExpansion(32, 32, 1, expansion))
        self.s4 = nn.Sequential(GatherExpansion(32, 64, 2, expansion), GatherExpansion(64, 64, 1, expansion))
        self.s5 = nn.Sequential(GatherExpansion(64, 128, 2, expansion),
                                *(GatherExpansion(128, 128, 1, expansion) for _ in range(3)))
        self.ce = ContextEmbedding(128)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f2 = self.stem(x)
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        f5 = self.s5(f4)
        return [f2, f3, f4, f5, self.ce(f5)]


class BilateralGuidedAggregation(nn.Module):
    """Fig. 6: each branch's features gate the other's, at 1/8 and at 1/32, then summed at 1/8."""

    def __init__(self, ch: int = 128):
        super().__init__()
        self.detail_keep = nn.Sequential(conv_bn(ch, ch, groups=ch, relu=False), nn.Conv2d(ch, ch, 1, bias=False))
        self.detail_down = nn.Sequential(conv_bn(ch, ch, stride=2, relu=False), nn.AvgPool2d(3, stride=2, padding=1))
        self.semantic_up = conv_bn(ch, ch, relu=False)
        self.semantic_keep = nn.Sequential(conv_bn(ch, ch, groups=ch, relu=False), nn.Conv2d(ch, ch, 1, bias=False))
        self.conv = conv_bn(ch, ch)

    def forward(self, x_d: torch.Tensor, x_s: torch.Tensor) -> torch.Tensor:
        size = x_d.shape[2:]                                                     # 1/8
        up = F.interpolate(self.semantic_up(x_s), size=size, mode="bilinear", align_corners=False)
        high = self.detail_keep(x_d) * torch.sigmoid(up)                         # 1/8
        low = self.detail_down(x_d) * torch.sigmoid(self.semantic_keep(x_s))     # 1/32
        low = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
        return self.conv(high + low)


class SegHead(nn.Module):
    """Fig. 7: 3x3 conv-BN-ReLU (C_t), dropout, 1x1 conv; upsampled to `size` by the caller."""

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.conv = conv_bn(in_ch, mid_ch)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(mid_ch, num_classes, 1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        x = self.classifier(self.drop(self.conv(x)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class BiSeNetV2(nn.Module):
    """forward: [B, in_channels, H, W] -> logits [B, num_classes, H, W]; in training mode with
    aux=True -> (logits, [aux_stem, aux_s3, aux_s4, aux_s5]), each [B, num_classes, H, W]."""

    AUX_CHANNELS = (16, 32, 64, 128)   # Stem, stage 3, stage 4, stage 5 outputs

    def __init__(self, in_channels: int = 3, num_classes: int = 2, aux: bool = False,
                 head_channels: int = 1024, aux_head_channels: int = 128, expansion: int = 6):
        super().__init__()
        self.detail = DetailBranch(in_channels)
        self.semantic = SemanticBranch(in_channels, expansion)
        self.bga = BilateralGuidedAggregation(128)
        self.head = SegHead(128, head_channels, num_classes)
        self.aux_heads = nn.ModuleList(SegHead(c, aux_head_channels, num_classes) for c in self.AUX_CHANNELS) \
            if aux else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.zeros_(m.weight) if getattr(m, "zero_init", False) else nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor):
        size = x.shape[2:]
        feats = self.semantic(x)
        logits = self.head(self.bga(self.detail(x), feats[-1]), size)
        if self.training and self.aux_heads is not None:
            return logits, [head(f, size) for head, f in zip(self.aux_heads, feats[:4])]
        return logits
