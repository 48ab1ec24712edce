"""D(x_{t-1}, x_t, t, m) with Discriminative Mask Guidance (paper section III-B).

DDGAN's time-conditioned discriminator: the two images concatenated, the step embedding added in
every down block, minibatch standard deviation, a global head -> D_img. The DMG branch takes the
features f_l of block l computed on the whole pair, multiplies them by the mask resized to that
layer and scores them with a light conv head psi (DMG eq. 2), averaged over the mask's area so tiny
defects are not drowned; it therefore sees the defect's boundary with its surroundings.

Trained alone against a trivial fake, the discriminator as DDGAN builds it barely learned in a few
hundred steps (`python -m sard.evaluate dprobe --compare`). What it was missing, each a config field
(`DiscriminatorConfig.ddgan_literal()` and configs/paper-literal.json restore DDGAN's values):
- the mask as an input channel, so the global head knows which region to judge;
- the posterior residual (x_{t-1} - B_t x_t) / sqrt(A_t^2 + sigma_t^2), where real and fake differ
  by A_t (x0 - x0_hat) (eq. 1-3): a step-dependent mix a step-blind 1x1 conv cannot form;
- a high-pass texture channel at unit std: tile texture is a few grey levels on [-1, 1], which
  Adam's ~lr-sized steps take thousands of steps to scale up to, so a blurred fake went unseen;
- a signal-preserving init (PyTorch's default shrinks the signal ~2x per block, so the logits
  started input-independent) and a zero-initialised output layer (logits start at 0);
- the step index embedded on DDPM's 0..1000 scale: indices 0..3 barely move a sinusoid of period
  up to 10^4, so D could not tell the trivially separable last step from the hopeless first one;
- the clean image judged beside x_t at every step (`judges` "x0": x0, or G's x0_hat pasted on the
  real background), not DDGAN's x_{t-1}: at the noisy steps x_{t-1} is mostly noise and no test
  can see a fake's texture there, so half the steps taught G nothing (the model card).
The schedule numbers the residual and texture scales use are DESIGN.md's (T from the config).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sard.nets.bounds import MAX_CLASSES, MAX_STEPS, choice, out_of_bounds, problems_of, widths
from sard.nets.layers import TimestepMLP
from sard.schedule import Schedule, ScheduleConfig


@dataclass
class DiscriminatorConfig:
    image_channels: int = 1
    base_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)   # a down block per entry after the first
    temb_dim: int = 128
    dmg: bool = True
    dmg_layer: int = 1        # f_l: output of down block l (0 = full resolution)
    num_classes: int = 0      # > 0: projection term on D_img for the defect type
    mask_input: bool = True   # the mask enters the trunk as a channel: D knows which region is judged
    dmg_masking: str = "feature"   # "feature": f_l(whole pair) * Up(m) (DMG eq. 2); "input": f_l(pair * m)
    init: str = "kaiming"     # "kaiming": signal-preserving init; "torch": PyTorch's default (vanishes with depth)
    num_steps: int = 4        # T (the trainer sets it from the schedule)
    step_embedding: str = "scaled"   # "scaled": i * 1000 / T into the sinusoid; "index": i itself (DDGAN)
    pool: str = "mean"        # global head over positions: "mean", or "sum" as DDGAN
    residual_input: bool = True    # also show D the posterior residual (x_{t-1} - B_t x_t) / sqrt(A_t^2 + sigma_t^2)
    highpass_input: bool = True    # and x_{t-1}'s fine texture (minus its 3x3 mean) times highpass_gain
    highpass_gain: float = 20.0    # about 1 / that texture's std in the training crops (the trainer measures it)
    judges: str = "x0"        # "x0": (x0 or G's pasted x0_hat, x_t), see judged_view; "pair": (x_{t-1}, x_t) as DDGAN

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "dmg_masking": ("feature", "input"), "init": ("kaiming", "torch"), "step_embedding": ("scaled", "index"),
        "pool": ("mean", "sum"), "judges": ("pair", "x0")}

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)

    def problems(self) -> list[str]:
        """What is wrong with these values, as 'field: expected ..., got ...' lines (empty: fine)."""
        out = [f"{k}: expected one of {v}, got {getattr(self, k)!r}" for k, v in self.CHOICES.items()
               if getattr(self, k) not in v]
        levels = len(self.channel_mult) if isinstance(self.channel_mult, (tuple, list)) else 1
        return out + problems_of(
            choice("image_channels", self.image_channels, (1, 3)),
            out_of_bounds("base_channels", self.base_channels, 1, whole=True),
            widths("channel_mult", self.channel_mult),
            out_of_bounds("temb_dim", self.temb_dim, 1, whole=True),
            out_of_bounds("dmg_layer", self.dmg_layer, 0, levels - 1, whole=True),
            out_of_bounds("num_classes", self.num_classes, 0, MAX_CLASSES, whole=True),
            out_of_bounds("num_steps", self.num_steps, 1, MAX_STEPS, whole=True),
            out_of_bounds("highpass_gain", self.highpass_gain, 0, 1e6, above=True))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def ddgan_literal(cls, **kw) -> "DiscriminatorConfig":
        """The discriminator as DDGAN builds it and DMG as first landed here (mask multiplied into the input)."""
        return cls(**{**dict(mask_input=False, dmg_masking="input", init="torch", step_embedding="index",
                             pool="sum", residual_input=False, highpass_input=False, judges="pair"), **kw})


HP_NOISE_VAR = (8 / 9) ** 2 + 8 / 81   # variance of highpass(white noise of variance 1)


def highpass(x: torch.Tensor) -> torch.Tensor:
    """x minus its 3x3 mean: the fine texture a denoised or blurred fake lacks."""
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)


def texture_gain(x0: torch.Tensor) -> float:
    """1 / the median std of highpass(x0) over a batch of training crops: scales D's texture channel to ~1."""
    return float(1.0 / highpass(x0).flatten(1).std(1).median().clamp(min=1e-3))


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
        if c.problems():
            raise ValueError("discriminator config: " + "; ".join(c.problems()))
        in_ch = (2 + c.residual_input + c.highpass_input) * c.image_channels + int(c.mask_input)
        self.conv_in = nn.Conv2d(in_ch, ch * c.channel_mult[0], 1)
        sch = Schedule(ScheduleConfig(num_steps=c.num_steps))
        if c.residual_input:
            A, B, var = sch.posterior_coef_x0, sch.posterior_coef_xt, sch.posterior_variance
            self.register_buffer("res_b", B.clone(), persistent=False)
            self.register_buffer("res_scale", (A**2 + var).rsqrt(), persistent=False)
        if c.highpass_input:   # unit std at every step: texture (1 / gain) plus the high-passed noise of x_i
            ab = sch.sqrt_alpha_bar[:c.num_steps] ** 2
            self.register_buffer("hp_scale", (ab / c.highpass_gain**2 + HP_NOISE_VAR * (1 - ab)).rsqrt(),
                                 persistent=False)
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
            w = widths[c.dmg_layer]
            self.psi = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(w, 1, 1))
        else:
            self.psi = None
        if c.init == "kaiming":
            for mod in self.modules():
                if isinstance(mod, nn.Conv2d) and mod.kernel_size != (1, 1):
                    nn.init.kaiming_normal_(mod.weight, a=0.2)
                    nn.init.zeros_(mod.bias)
            nn.init.zeros_(self.linear_out.weight)   # logits start at 0, not saturated

    def _trunk(self, x: torch.Tensor, temb: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """The output of every down block (up to block `upto`)."""
        feats, h = [], self.conv_in(x)
        for blk in self.blocks[:None if upto is None else upto + 1]:
            h = blk(h, temb)
            feats.append(h)
        return feats

    def _minibatch_std(self, h: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        g = min(b, self.stddev_group)
        while b % g:
            g -= 1
        std = h.view(g, -1, c, hh, ww).var(0, unbiased=False).add(1e-8).sqrt().mean([1, 2, 3])  # [B/g]
        return torch.cat([h, std.repeat(g)[:, None, None, None].expand(b, 1, hh, ww)], dim=1)

    def embed_step(self, i: torch.Tensor) -> torch.Tensor:
        scale = 1000.0 / self.config.num_steps if self.config.step_embedding == "scaled" else 1.0
        return F.leaky_relu(self.temb(i * scale), 0.2)

    def stack(self, x_prev: torch.Tensor, x_t: torch.Tensor, i: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """What the trunk sees: the pair, the posterior residual, the mask (as configured)."""
        views = [x_prev, x_t]
        if self.config.residual_input:   # where real and fake differ: A_t (x0 - x0_hat) in unit noise (eq. 1-3)
            b, s = self.res_b[i].view(-1, 1, 1, 1), self.res_scale[i].view(-1, 1, 1, 1)
            views.append((x_prev - b * x_t) * s)
        if self.config.highpass_input:   # texture is a few grey levels on [-1, 1]: scaled up so D sees it early
            hp = self.hp_scale[i if self.config.judges == "pair" else torch.zeros_like(i)]   # a clean x0: no noise
            views.append(highpass(x_prev) * hp.view(-1, 1, 1, 1))
        return torch.cat(views + [mask] if self.config.mask_input else views, dim=1)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, i: torch.Tensor, mask: torch.Tensor,
                label: torch.Tensor | None = None) -> DOutput:
        """x_prev, x_t: [B, C, H, W]; i: [B]; mask: [B, 1, H, W] in {0, 1}; label: [B] or None."""
        temb = self.embed_step(i)
        pair = self.stack(x_prev, x_t, i, mask)
        feats = self._trunk(pair, temb)
        h = F.leaky_relu(self.conv_out(self._minibatch_std(feats[-1])), 0.2)
        pooled = h.mean(dim=(2, 3)) if self.config.pool == "mean" else h.sum(dim=(2, 3))
        d_img = self.linear_out(pooled).squeeze(1)
        if self.class_proj is not None and label is not None:
            d_img = d_img + (self.class_proj(label) * pooled).sum(1) / math.sqrt(pooled.shape[1])
        if self.psi is None:
            return DOutput(img=d_img, fg=None)
        if self.config.dmg_masking == "input":   # the earlier variant: nothing outside the mask reaches D_fg
            f_l = self._trunk(pair * mask, temb, upto=self.config.dmg_layer)[-1]
        else:
            f_l = feats[self.config.dmg_layer]
        return DOutput(img=d_img, fg=self.d_fg(f_l, mask))

    def d_fg(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """D_fg(x, m) = psi(f_l(x) * Up(m)) (DMG eq. 2), normalised by the mask's area."""
        m = F.adaptive_max_pool2d(mask, f.shape[-2:])  # keeps one-pixel defects alive at layer l
        score = self.psi(f * m) * m
        return score.sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp(min=1.0)
