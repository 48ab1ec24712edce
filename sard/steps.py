"""One SARD training step, in phases: diffuse a real batch, D's steps (DMG eq. 3 + R1), G's step
(paper eq. 4-6), the EMA; and the nets and optimizers they update. The trainer (`python -m sard.train`)
and the benchmark both run these.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sard.augment import augment_pair
from sard.config import TrainConfig
from sard.fast_step import eager
from sard.losses import (LossConfig, d_fake_loss, d_real_loss, diversity_loss, generator_loss, r1_penalty,
                         real_logits, settle_loss)
from sard.nets.discriminator import Discriminator
from sard.nets.generator import Generator
from sard.rcd import paste, rcd_step
from sard.schedule import Schedule


@dataclass
class Models:
    G: Generator
    D: Discriminator
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam


def build_models(cfg: TrainConfig, device: torch.device | str = "cpu") -> Models:
    """G and D from the config, each with its own Adam (lr_g, lr_d, betas: the config's); fused Adam
    kernels on CUDA (on the CPU the default, so CPU runs stay bit-identical)."""
    G, D = Generator(cfg.generator).to(device), Discriminator(cfg.discriminator).to(device)
    fused = True if torch.device(device).type == "cuda" else None
    return Models(G, D, torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas, fused=fused),
                  torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas, fused=fused))


@dataclass
class Batch:
    x0: torch.Tensor      # real defect crops       [B, C, H, W]
    mask: torch.Tensor    # their masks             [B, 1, H, W]
    label: torch.Tensor   # defect index            [B]


def predict_x0(G: nn.Module, b: Batch, x_next: torch.Tensor, i: torch.Tensor, rng: torch.Generator,
               nz: int) -> torch.Tensor:
    """G's x0_hat from x_{t+1} for a fresh latent z, given the real background around the mask."""
    z = torch.randn(b.x0.shape[0], nz, generator=rng, device=rng.device).to(b.x0)
    return G(x_next, i, z, b.mask, b.x0 * (1 - b.mask), b.label)


def fake_pair(G: nn.Module, schedule: Schedule, b: Batch, x_next: torch.Tensor, i: torch.Tensor,
              rng: torch.Generator, nz: int, rcd: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """G's x0_hat from x_{t+1} and the fake x_t drawn from the posterior, keeping the real
    background under RCD (eq. 6-7 in training as in sampling)."""
    x0_hat = predict_x0(G, b, x_next, i, rng, nz)
    noise = torch.randn(b.x0.shape, generator=rng, device=rng.device).to(b.x0)
    return x0_hat, rcd_step(schedule, x0_hat.float(), x_next, b.x0, b.mask, i, noise, rcd)


def settle_term(G: nn.Module, schedule: Schedule, b: Batch, x_fake: torch.Tensor, x0_hat: torch.Tensor,
                i: torch.Tensor, rng: torch.Generator, nz: int) -> torch.Tensor:
    """The next reverse step (i - 1) run on the fake x_i must keep what x_i holds of x0_hat, weighted
    by that share, sqrt(alpha_bar_i) (0 at i = 0, where there is no next step): coarse early, detail late."""
    x0_next = predict_x0(G, b, x_fake.to(b.x0), (i - 1).clamp(min=0), rng, nz)
    share = schedule.signal(i) * (i > 0)
    return (settle_loss(x0_next.float(), x0_hat.float(), b.mask) * share).mean()


def diffuse(schedule: Schedule, b: Batch, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random step index i and the real pair (x_i, x_{i+1}) ~ q (DDGAN's q_sample_pairs)."""
    i = torch.randint(0, schedule.num_steps, (b.x0.shape[0],), generator=rng, device=rng.device).to(b.x0.device)
    x_i, x_next = schedule.q_sample_pairs(b.x0, i, rng)
    return i, x_i, x_next


class GapMeter:
    """Mean real-minus-fake logit of D per reverse step i since the last log line: is the game alive?
    Summed on the step's device and read only at log time: no host synchronisation inside a step."""

    def __init__(self, num_steps: int, device: torch.device | str = "cpu"):
        self.sums = torch.zeros(2, num_steps, dtype=torch.float64, device=device)
        self.counts = torch.zeros(num_steps, dtype=torch.float64, device=device)

    def add(self, i: torch.Tensor, real, fake) -> None:
        i = i.to(self.counts.device)
        self.counts.index_add_(0, i, torch.ones(len(i), dtype=torch.float64, device=i.device))
        for row, r, f in ((0, real.img, fake.img), (1, real.fg, fake.fg)):
            if r is not None:
                self.sums[row].index_add_(0, i, (r - f).detach().double())

    def fields(self, dmg: bool) -> dict[str, float]:
        mean, counts = (self.sums / self.counts.clamp(min=1)).cpu(), self.counts.cpu()
        heads = ("img", "fg") if dmg else ("img",)
        out = {f"d_gap_{h}_{k}": round(mean[row, k].item(), 4)
               for row, h in enumerate(heads) for k in range(len(counts)) if counts[k] > 0}
        self.sums.zero_()
        self.counts.zero_()
        return out


def judged_view(cfg: TrainConfig, b: Batch, x_prev: torch.Tensor, x0_hat: torch.Tensor | None = None) -> torch.Tensor:
    """What D judges beside x_t. DDGAN's pair: x_{t-1}, which at the noisy steps is mostly noise, so
    real and fake differ by A_t (x0 - x0_hat) under sigma_t and D learned nothing there (reports: realism_judges).
    discriminator.judges = "x0": the clean x0 (real) or G's x0_hat pasted on the real background
    (fake) at every step, as at the last step (A_0 = 1, sigma_0 = 0) already, so each reverse step's
    prediction must look like a real defect given x_t, not like the mean one. x0_hat None: the real side."""
    if cfg.discriminator.judges == "pair":
        return x_prev
    if x0_hat is None:
        return b.x0.clone()
    x0_hat = x0_hat.to(b.x0)
    return paste(x0_hat, b.x0, b.mask) if cfg.rcd else x0_hat


def judge(D, cfg: TrainConfig, schedule: Schedule, x_prev, x_t, b: Batch, i, rng):
    """D's verdict on a pair, shown through the augmentation when it is on (real and fake alike)."""
    mask = b.mask
    if cfg.augment:
        x_prev, x_t, mask = augment_pair(x_prev, x_t, mask, i, schedule, rng,
                                         prev_clean=cfg.discriminator.judges == "x0")
    return D(x_prev, x_t, i, mask, b.label)


def d_step(G, D, opt_d, schedule, b: Batch, rng, cfg: TrainConfig, step: int, amp,
           gaps: GapMeter) -> dict[str, torch.Tensor]:
    """L_D on a real and a fake pair (DMG eq. 3), plus lazy R1 on the real x_t."""
    lc: LossConfig = cfg.loss
    i, x_i, x_next = diffuse(schedule, b, rng)
    do_r1 = lc.r1_gamma > 0 and step % lc.lazy_r1 == 0
    x_real = judged_view(cfg, b, x_i).requires_grad_(do_r1)
    with amp():   # R1 differentiates D twice: a compiled D cannot, its eager module can (same weights)
        d_real = judge(eager(D) if do_r1 else D, cfg, schedule, x_real, x_next, b, i, rng)
        real_loss = d_real_loss(d_real, lc.lam)
        with torch.no_grad():
            x0_hat, x_fake = fake_pair(G, schedule, b, x_next, i, rng, cfg.generator.nz, cfg.rcd)
        d_fake = judge(D, cfg, schedule, judged_view(cfg, b, x_fake, x0_hat), x_next, b, i, rng)
        fake_loss = d_fake_loss(d_fake, lc.lam)
    gaps.add(i, d_real, d_fake)
    loss = real_loss + fake_loss
    r1 = torch.zeros((), device=loss.device)
    if do_r1:   # DDGAN: gradient of the summed real logits (not of the batch-mean loss)
        score = real_logits(d_real, lc.lam).float() if lc.r1_on_logits else real_loss
        r1 = r1_penalty(score, x_real, lc.r1_gamma)
    opt_d.zero_grad(set_to_none=True)
    (loss + r1).backward()
    opt_d.step()
    out = {"d_real": real_loss.detach(), "d_fake": fake_loss.detach()}
    if do_r1:
        out["r1"] = r1.detach()
    return out


def g_step(G, D, opt_g, schedule, b: Batch, rng, cfg: TrainConfig, amp) -> dict[str, torch.Tensor]:
    """L_G = l_img L_adv-img + l_mask L_adv-mask + alpha_i L_MSE (paper eq. 4-6 of III-C)."""
    lc: LossConfig = cfg.loss
    i, _, x_next = diffuse(schedule, b, rng)
    alpha_i = lc.alpha * schedule.signal(i + 1) if lc.alpha_fade else None
    with amp():
        x0_hat, x_fake = fake_pair(G, schedule, b, x_next, i, rng, cfg.generator.nz, cfg.rcd)
        d_fake = judge(D, cfg, schedule, judged_view(cfg, b, x_fake, x0_hat), x_next, b, i, rng)
        losses = generator_loss(d_fake, x0_hat.float(), b.x0, b.mask, lc, lc.background_weight(cfg.rcd), alpha_i)
        if lc.diversity > 0:   # a second z on the same x_t: seeds must differ (DSGAN)
            x0_other = predict_x0(G, b, x_next, i, rng, cfg.generator.nz)
            room = 1 - schedule.signal(i + 1) if lc.diversity_fade else None
            losses["div"] = diversity_loss(x0_hat.float(), x0_other.float(), b.mask, lc.diversity_cap,
                                            lc.diversity_luma, room)
            losses["total"] = losses["total"] + lc.diversity * losses["div"]
        if lc.settle > 0:
            losses["settle"] = settle_term(G, schedule, b, x_fake, x0_hat, i, rng, cfg.generator.nz)
            losses["total"] = losses["total"] + lc.settle * losses["settle"]
    opt_g.zero_grad(set_to_none=True)
    losses["total"].backward()
    opt_g.step()
    return {f"g_{k}": v.detach() for k, v in losses.items()}


def train_step(G, D, opt_g, opt_d, schedule, b: Batch, rng, cfg: TrainConfig, step: int, amp,
               gaps: GapMeter) -> dict[str, torch.Tensor]:
    """One iteration: cfg.d_steps steps of D (fresh reverse steps and noise on the same crops, so D
    keeps ahead of G), then one of G. The EMA is the caller's (it holds the shadow weights). The
    losses stay tensors on the device (read_stats at log time)."""
    for _ in range(cfg.d_steps):
        stats = d_step(G, D, opt_d, schedule, b, rng, cfg, step, amp, gaps)
    return stats | g_step(G, D, opt_g, schedule, b, rng, cfg, amp)


def read_stats(stats: dict[str, torch.Tensor]) -> dict[str, float]:
    """A step's losses as numbers: the one host synchronisation, at log time."""
    return {k: float(v) for k, v in stats.items()}


def ema_decay(cfg: TrainConfig, step: int) -> float:
    """With warm-up min(ema, (1 + s) / (10 + s)): without it 0.999^s of the weights stay the initialisation."""
    return min(cfg.ema, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema += (1 - decay) (model - ema), every parameter in one foreach call (one kernel per chunk on
    CUDA; on the CPU bit-identical to a loop of lerp_)."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
