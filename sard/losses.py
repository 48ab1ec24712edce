"""The adversarial objectives of SARD (paper section III-B) with softplus phi(x) = log(1 + e^x).

Losses take discriminator outputs and tensors, never a trainer; dmg=False simply means D_fg is None.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from sard.imaging import LUMA_WEIGHTS
from sard.nets.bounds import MAX_ITERS, out_of_bounds, problems_of
from sard.nets.discriminator import DOutput

MAX_WEIGHT = 1e6        # a loss weight beyond this overflows float32 losses long before it teaches anything
MAX_BLUR_PX = 1000      # mse_lowpass: a wider blur is a plain mean over any crop, at a huge kernel's cost


@dataclass
class LossConfig:
    lam: float = 0.2          # lambda: weight of D_fg in L_D
    l_img: float = 1.0        # lambda_img in L_G
    l_mask: float = 1.0       # lambda_mask in L_G
    alpha: float = 1.0        # weight of L_MSE
    beta: float | None = None  # background weight inside L_MSE; None: 0 under RCD (its output is discarded), else 0.1
    r1_gamma: float = 0.05     # DDGAN's default (DESIGN.md had 1.0 on the batch-mean loss)
    lazy_r1: int = 10         # R1 every this many steps
    r1_on_logits: bool = True  # DDGAN's R1: gradient of the summed real logits; False: of the mean loss
    region_mean: bool = True   # each L_MSE term a mean over its own pixels; False: both over all pixels (paper)
    alpha_fade: bool = True    # alpha_i = alpha sqrt(alpha_bar_{i+1}): regress x0 only where G's input holds it
    mse_lowpass: float = 2.0   # > 0: the mask term regresses a Gaussian blur (sigma px) of the error: the mean
                               # defect in the large only, texture left to D; 0: the plain error (paper)
    diversity: float = 1.0     # > 0: weight of the seed-diversity hinge (two z, one x_t; DSGAN); 0: off (paper)
    diversity_cap: float = 0.25  # tau: mean |x0_hat(z1) - x0_hat(z2)| inside the mask worth rewarding ([-1, 1] units)
    diversity_fade: bool = False  # True: the hinge weighted by the noise share 1 - sqrt(alpha_bar_{i+1}) of G's
                                  # input, so seeds part where x_t leaves room, not at the last step, where
                                  # a new z repainting what x_t holds makes the step-through grow, not settle
    diversity_luma: bool = False  # True: on colour images that distance on luminance, so a hue shift earns
                                  # nothing (bottle, 1000 steps: C2ST 76.8 % vs 70.7 % on RGB; sard-bottle card)
    chroma: float = 0.0        # > 0, colour images: weight of the unblurred chroma error inside the mask, so
                               # the hue follows the real defect and only luminance texture is left to D
                               # (bottle, 800-1600 steps: reports/fit_crops.md, "loss.chroma")
    texture: float = 40.0      # > 0: weight of the texture-moment term: the std of the level and of the fine
                               # detail inside the mask match the real defect's (what the low-pass MSE leaves free;
                               # reports/magnetic_tile/texture_steps.md); 0: off (paper)
    settle: float = 0.0        # > 0: weight of the step-consistency term: the next reverse step keeps what x_t
                               # holds of this step's x0_hat, so the step-through settles instead of repainting

    def to_dict(self) -> dict:
        return asdict(self)

    def problems(self) -> list[str]:
        """What is wrong with these values, as 'field: expected ..., got ...' lines (empty: fine)."""
        weights = ("lam", "l_img", "l_mask", "alpha", "r1_gamma", "diversity", "chroma", "texture", "settle") + \
            (("beta",) if self.beta is not None else ())
        return problems_of(
            *(out_of_bounds(k, getattr(self, k), 0, MAX_WEIGHT) for k in weights),
            out_of_bounds("lazy_r1", self.lazy_r1, 1, MAX_ITERS, whole=True),
            out_of_bounds("mse_lowpass", self.mse_lowpass, 0, MAX_BLUR_PX),
            out_of_bounds("diversity_cap", self.diversity_cap, 0, 2))

    def background_weight(self, rcd: bool) -> float:
        return self.beta if self.beta is not None else (0.0 if rcd else 0.1)


def d_real_loss(d: DOutput, lam: float) -> torch.Tensor:
    """E_real[phi(-D_img) + lambda phi(-D_fg)]: the first half of L_D (DMG eq. 3)."""
    loss = F.softplus(-d.img).mean()
    if d.fg is not None:
        loss = loss + lam * F.softplus(-d.fg).mean()
    return loss


def d_fake_loss(d: DOutput, lam: float) -> torch.Tensor:
    """E_fake[phi(D_img) + lambda phi(D_fg)]: the second half of L_D (DMG eq. 3)."""
    loss = F.softplus(d.img).mean()
    if d.fg is not None:
        loss = loss + lam * F.softplus(d.fg).mean()
    return loss


def r1_penalty(score: torch.Tensor, x_real: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * E_b ||grad_x score||^2 on the real x_{t-1} (DDGAN's R1 when score is the real logits)."""
    (grad,) = torch.autograd.grad(score.sum(), x_real, create_graph=True)
    return gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()


def real_logits(d: DOutput, lam: float) -> torch.Tensor:
    """D_img + lambda D_fg per sample: what DDGAN's R1 differentiates, with DMG's weight on the branch."""
    return d.img if d.fg is None else d.img + lam * d.fg


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] per channel (zero padding: what lies outside is 0)."""
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, device=x.device, dtype=x.dtype).pow(2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(x, k, padding=(0, r), groups=x.shape[1])
    return F.conv2d(x, k.transpose(2, 3), padding=(r, 0), groups=x.shape[1])


def mse_loss(x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, beta: float,
             region_mean: bool = True, weight: torch.Tensor | None = None, lowpass: float = 0.0) -> torch.Tensor:
    """L_MSE = ||m (x0_hat - x0)||^2 + beta ||(1 - m)(x0_hat - x0)||^2.

    region_mean: each term is a mean over its own pixels per sample, so a 20-pixel blowhole weighs
    as much as a large defect; otherwise both are means over all pixels (the paper's literal form).
    weight: [B] per-sample factor (the faded alpha_i).
    lowpass: > 0 blurs the mask term's error m (x0_hat - x0) by a Gaussian of that sigma (px) first:
    MSE's minimiser is the mean over what x_t leaves open, which in the large is the defect's layout
    and in the small its texture; only the large part is regressed, the texture is D's to judge."""
    err = x0_hat - x0
    m_full = mask.expand_as(x0_hat)
    fg = gaussian_blur(m_full * err, lowpass) if lowpass > 0 else err
    sq, sq_fg = err.pow(2).flatten(1), fg.pow(2).flatten(1)
    m = m_full.flatten(1)
    if region_mean:
        per = ((m * sq_fg).sum(1) / m.sum(1).clamp(min=1)
               + beta * ((1 - m) * sq).sum(1) / (1 - m).sum(1).clamp(min=1))
    else:
        per = (m * sq_fg).mean(1) + beta * ((1 - m) * sq).mean(1)
    return (per * weight).mean() if weight is not None else per.mean()


def luma_of(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 1, H, W] ITU-R 601 luma."""
    return (x * x.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)


def chroma(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] minus its luma in every channel: the colour without its brightness."""
    return x - luma_of(x)


def mask_mean(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] mean of v [B, C, H, W] over each sample's mask pixels (all channels)."""
    m = mask.expand_as(v).flatten(1)
    return (m * v.flatten(1)).sum(1) / m.sum(1).clamp(min=1)


def chroma_loss(x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean over the mask of ||chroma(x0_hat - x0)||^2: L_MSE's low-pass leaves the
    fill's hue free at fine scales, where a strong D drives it to saturated rings (bottle, 1600 steps)."""
    return mask_mean(chroma(x0_hat - x0).pow(2), mask)


def masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] std of x's pixels (all channels) inside the mask, per sample."""
    mean = mask_mean(x, mask).view(-1, 1, 1, 1)
    return (mask_mean((x - mean).pow(2), mask) + 1e-8).sqrt()


DETAIL_SIGMA = 1.0   # px: the fine detail is what a Gaussian blur of this sigma removes (the part's grain)


def texture_loss(x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample, (std_m(x0_hat) - std_m(x0))^2 + (std_m(d(x0_hat)) - std_m(d(x0)))^2 on luminance,
    d(x) = x - blur(x): the two moments the card's texture figure (c) and the eye read. MSE's
    minimiser is the mean over what x_t leaves open, which is smoother than any one defect; a
    moment's minimiser is the expected moment, so grain is asked for, not a particular grain."""
    if x0.shape[1] == 3:
        x0_hat, x0 = luma_of(x0_hat), luma_of(x0)

    def detail(x):
        return x - gaussian_blur(x, DETAIL_SIGMA)
    level = masked_std(x0_hat, mask) - masked_std(x0, mask)
    grain = masked_std(detail(x0_hat), mask) - masked_std(detail(x0), mask)
    return level.pow(2) + grain.pow(2)


def settle_loss(x0_next: torch.Tensor, x0_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean over the mask of (x0_next - sg(x0_hat))^2: the next reverse step's
    prediction from the fake x_t against this step's (stop-gradient: the later step follows)."""
    return mask_mean((x0_next - x0_hat.detach()).pow(2), mask)


def diversity_loss(x0_a: torch.Tensor, x0_b: torch.Tensor, mask: torch.Tensor, cap: float,
                   luma: bool = False, weight: torch.Tensor | None = None) -> torch.Tensor:
    """-E_b min(mean_mask |x0_a - x0_b|, tau): two latents z for one x_t must paint different defects.

    The diversity-sensitive term of DSGAN (Yang et al., ICLR 2019) on the mask only (RCD discards the
    rest); z's distance is left out since two draws of N(0, I) are about equally far apart. Capped so
    that it asks for a real defect's spread, not for noise. luma: a colour difference is measured on
    its ITU-R 601 luminance, so a hue shift earns nothing (an option: on bottle it scored worse)."""
    diff = x0_a - x0_b
    if luma and diff.shape[1] == 3:
        diff = luma_of(diff)
    dist = mask_mean(diff.abs(), mask).clamp(max=cap)
    return -(dist * weight).mean() if weight is not None else -dist.mean()


def generator_loss(d_fake: DOutput, x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor,
                   cfg: LossConfig, beta: float, alpha_i: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """L_G = l_img L_adv-img + l_mask L_adv-mask + alpha L_MSE (paper eq. 4-6 of III-C).

    alpha_i: [B] reconstruction weight per sample (alpha faded with the step's noise), else cfg.alpha."""
    adv_img = F.softplus(-d_fake.img).mean()                                        # eq. 5
    adv_mask = F.softplus(-d_fake.fg).mean() if d_fake.fg is not None else torch.zeros_like(adv_img)  # eq. 6
    weight = alpha_i if alpha_i is not None else torch.full((x0.shape[0],), cfg.alpha, device=x0.device)
    mse = mse_loss(x0_hat, x0, mask, beta, cfg.region_mean, weight, cfg.mse_lowpass)
    total = cfg.l_img * adv_img + cfg.l_mask * adv_mask + mse
    out = {"total": total, "adv_img": adv_img, "adv_mask": adv_mask, "mse": mse}
    if cfg.chroma > 0 and x0.shape[1] == 3:
        out["chroma"] = (chroma_loss(x0_hat, x0, mask) * weight).mean()
        out["total"] = total + cfg.chroma * out["chroma"]
    if cfg.texture > 0:
        out["texture"] = texture_loss(x0_hat, x0, mask).mean()
        out["total"] = out["total"] + cfg.texture * out["texture"]
    return out
