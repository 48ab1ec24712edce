"""Region-Constrained Diffusion: the reverse process that only touches the masked region.

`rcd_step` is eq. (6)/(7) of the paper as DESIGN.md makes it precise: blend in x0 space,
x0_mix = m * x0_hat + (1 - m) * x0_bg, then sample the posterior q(x_{t-1} | x_t, x0_mix).
The background then follows the exact forward chain of the clean image, and the last step
(no noise, A_0 = 1, B_0 = 0) returns it; the final hard paste makes it exact to the bit.
`rcd_sample` is the whole reverse process, one frame per step, in the manner of EDM's sampler;
`carry_latent` is its optional annealed latent (DESIGN.md: the latent across reverse steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from sard.schedule import Schedule

# G(x_t, i, z, mask, context, label) -> x0_hat, all [B, C, H, W] except mask [B, 1, H, W], i [B].
GeneratorFn = Callable[..., torch.Tensor]


@dataclass
class Frame:
    """One reverse step, for display and for the caller's loop."""
    step: int                  # reverse index i: this step maps x_{i+1} to x_i (T-1 .. 0)
    x_t: torch.Tensor          # the step's input x_{i+1}               [B, C, H, W]
    x0_hat: torch.Tensor       # G's prediction of the clean image      [B, C, H, W]
    x_prev: torch.Tensor       # the step's output x_i                   [B, C, H, W]
    composite: torch.Tensor    # m * x0_hat + (1 - m) * x0_bg (RCD), else x0_hat
    z: torch.Tensor | None = None   # the latent G painted this step with [B, nz]


def paste(x_fg: torch.Tensor, x_bg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """m * x_fg + (1 - m) * x_bg, exact where m is 0 or 1 (eq. 6's blend)."""
    if mask.dtype == torch.bool:
        return torch.where(mask, x_fg, x_bg)
    return torch.where(mask >= 1, x_fg, torch.where(mask <= 0, x_bg, mask * x_fg + (1 - mask) * x_bg))


def rcd_step(schedule: Schedule, x0_hat: torch.Tensor, x_t: torch.Tensor, x0_bg: torch.Tensor,
             mask: torch.Tensor, i: torch.Tensor, noise: torch.Tensor, rcd: bool = True) -> torch.Tensor:
    """x_{t-1} = T_rcd(x_t, x0_hat, m) (paper eq. 6-7, blended in x0 space as DESIGN.md fixes).

    rcd=False is DDGAN's plain step: the posterior of x0_hat over the whole image."""
    x0_mix = paste(x0_hat, x0_bg, mask) if rcd else x0_hat
    return schedule.posterior_sample(x0_mix, x_t, i, noise)


def normal_noise(rng: torch.Generator | Sequence[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """N(0, I) of `shape` [B, ...]: from one generator, or sample b's slice from rng[b] alone, so a
    batched job draws exactly what it draws on its own."""
    if isinstance(rng, torch.Generator):
        return torch.randn(*shape, generator=rng, device=rng.device)
    return torch.cat([torch.randn(1, *shape[1:], generator=g, device=g.device) for g in rng])


def carry_latent(schedule: Schedule, z_prev: torch.Tensor, fresh: torch.Tensor, step: int, z_carry: float) -> torch.Tensor:
    """z_i = rho_i z_{i+1} + sqrt(1 - rho_i^2) eps_i with rho_i = sqrt(alpha_bar_{i+1}) ** (1 / z_carry): each
    step keeps more of the previous step's latent as its input x_{i+1} holds more of the image, so the
    defect G commits to early is refined, not redrawn, at the last steps (still N(0, I) at every step,
    as in training). z_carry 0 is eq. 4 as DDGAN samples it: a fresh z each step."""
    if z_carry <= 0:
        return fresh
    return keep_latent(z_prev, fresh, float(schedule.sqrt_alpha_bar[step + 1]) ** (1.0 / z_carry))


def keep_latent(z_prev: torch.Tensor, fresh: torch.Tensor, rho: float) -> torch.Tensor:
    """rho z_prev + sqrt(1 - rho^2) fresh: N(0, I) again, correlated rho with z_prev (1: z_prev itself)."""
    return rho * z_prev + math.sqrt(max(0.0, 1.0 - rho * rho)) * fresh


@torch.no_grad()
def rcd_sample(generator: GeneratorFn, schedule: Schedule, x0_bg: torch.Tensor, mask: torch.Tensor,
               nz: int, rng: torch.Generator | Sequence[torch.Generator], label: torch.Tensor | None = None,
               rcd: bool = True, start_step: int | None = None, z_carry: float = 0.0,
               z_prev: torch.Tensor | None = None, keep: float = 0.0) -> Iterator[Frame]:
    """Reverse process from x_T to x_0, yielding a Frame per step; the last frame's composite is the result.

    x0_bg: [B, C, H, W] normal image in [-1, 1]; mask: [B, 1, H, W] in {0, 1};
    rng: the only source of randomness (z and noise), so a seed fixes the output: one generator, or
    one per sample (a batch of jobs, each drawing from its own seed);
    start_step k < T starts from x_k ~ q(x_k | x0_bg) and runs k steps (a milder change);
    z_carry > 0 carries the latent from step to step (carry_latent);
    z_prev: a latent the first step keeps with correlation `keep` (keep_latent; 0: a fresh z), e.g. a
    native-scale refine pass going on from the scaled pass's last z."""
    B = x0_bg.shape[0]
    T = schedule.num_steps if start_step is None else start_step
    randn = lambda *shape: normal_noise(rng, shape).to(x0_bg)  # noqa: E731
    context = paste(torch.zeros_like(x0_bg), x0_bg, mask)          # (1 - m) * x0, the clean context
    # Start: x_T ~ q(x_T | x0_bg), the background's forward chain; DDGAN's pure noise without RCD.
    i_T = torch.full((B,), T, dtype=torch.long, device=x0_bg.device)
    plain = not rcd and T == schedule.num_steps
    x_t = randn(*x0_bg.shape) if plain else schedule.q_sample(x0_bg, i_T, randn(*x0_bg.shape))
    z = None
    for step in reversed(range(T)):
        i = torch.full((B,), step, dtype=torch.long, device=x0_bg.device)
        fresh = randn(B, nz)
        if z is not None:
            z = carry_latent(schedule, z, fresh, step, z_carry)
        elif z_prev is not None and keep > 0:   # a refine pass going on from the scaled pass's latent
            z = keep_latent(z_prev.to(fresh), fresh, keep)
        else:
            z = fresh
        x0_hat = generator(x_t, i, z, mask, context, label).to(x0_bg)   # eq. 4
        x_prev = rcd_step(schedule, x0_hat, x_t, x0_bg, mask, i, randn(*x0_bg.shape), rcd)  # eq. 6-7
        composite = paste(x0_hat, x0_bg, mask) if rcd else x_prev
        yield Frame(step=step, x_t=x_t, x0_hat=x0_hat, x_prev=x_prev, composite=composite, z=z)
        x_t = x_prev
