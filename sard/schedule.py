"""DDGAN's variance-preserving noise schedule with T discrete steps (DESIGN.md section 1).

Indexing follows DDGAN: the time grid has T + 1 points t_0..t_T; x_i is the image at t_i, x_0
the clean image. A reverse step with index i (0..T-1) maps x_{i+1} to x_i. The schedule holds
coefficients only (no nn.Module); training and sampling both use it, nothing else copies it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MAX_STEPS = 1000   # reverse steps T (sard.nets.bounds keeps the same bound)


@dataclass(frozen=True)
class ScheduleConfig:
    num_steps: int = 4  # T
    beta_min: float = 0.1
    beta_max: float = 20.0
    eps_small: float = 1e-3

    def problems(self) -> list[str]:
        """What is wrong with these values, as 'field: expected ..., got ...' lines (empty: fine); a
        schedule whose coefficients overflow is named by beta_max."""
        def real(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        T, lo, hi, eps = self.num_steps, self.beta_min, self.beta_max, self.eps_small
        out = [] if isinstance(T, int) and not isinstance(T, bool) and 1 <= T <= MAX_STEPS else \
            [f"num_steps: expected a whole number from 1 to {MAX_STEPS}, got {T!r}"]
        if not (real(hi) and hi > 0):
            out.append(f"beta_max: expected a finite number > 0 (and > beta_min), got {hi!r}")
        if not (real(lo) and 0 <= lo < (hi if real(hi) else math.inf)):
            out.append(f"beta_min: expected a finite number >= 0 and < beta_max ({hi!r}), got {lo!r}")
        if not (real(eps) and 0 < eps < 1):
            out.append(f"eps_small: expected a finite number > 0 and < 1, got {eps!r}")
        if not out and not all(torch.isfinite(v).all() for v in vars(Schedule(self)).values() if torch.is_tensor(v)):
            out.append(f"beta_max: {hi!r} with beta_min {lo!r} over {T} steps overflows the noise schedule; "
                       f"expected a smaller one (DDGAN: 20)")
        return out


def _extract(coef: torch.Tensor, i: torch.Tensor, ndim: int) -> torch.Tensor:
    """coef[i] shaped [B, 1, 1, 1] for broadcasting against a [B, C, H, W] image."""
    return coef.to(i.device)[i].reshape(-1, *([1] * (ndim - 1)))


class Schedule:
    """Coefficients of q(x_i | x_0), q(x_{i+1} | x_i) and the posterior q(x_i | x_{i+1}, x_0)."""

    def __init__(self, config: ScheduleConfig = ScheduleConfig()):
        if config.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {config.num_steps}")
        self.config = config
        T = config.num_steps
        t = torch.arange(T + 1, dtype=torch.float64) / T * (1 - config.eps_small) + config.eps_small
        # var(t) = 1 - exp(-0.5 t^2 (beta_max - beta_min) - t beta_min)
        var = 1 - torch.exp(-0.5 * t**2 * (config.beta_max - config.beta_min) - t * config.beta_min)
        alpha_bar = 1 - var
        betas = torch.cat([torch.tensor([1e-8], dtype=torch.float64), 1 - alpha_bar[1:] / alpha_bar[:-1]])
        # Forward chain over the T + 1 grid points (index 0 is the ~identity step from x_0).
        self.alphas = (1 - betas).sqrt().float()              # sqrt(1 - beta_i)      [T+1]
        self.sigmas = betas.sqrt().float()                    # sqrt(beta_i)          [T+1]
        a_cum = torch.cumprod((1 - betas).sqrt(), 0)
        self.sqrt_alpha_bar = a_cum.float()                   # sqrt(alpha_bar_i)     [T+1]
        self.sqrt_one_minus_alpha_bar = (1 - a_cum**2).sqrt().float()
        # Posterior q(x_i | x_{i+1}, x_0) for reverse index i = 0..T-1 (eq. 1-3 of the paper).
        b = betas[1:]
        ac = torch.cumprod(1 - b, 0)
        ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        self.posterior_variance = (b * (1 - ac_prev) / (1 - ac)).float()
        self.posterior_log_variance = torch.log((b * (1 - ac_prev) / (1 - ac)).clamp(min=1e-20)).float()
        self.posterior_coef_x0 = (b * ac_prev.sqrt() / (1 - ac)).float()          # A_t
        self.posterior_coef_xt = ((1 - ac_prev) * (1 - b).sqrt() / (1 - ac)).float()  # B_t

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    def signal(self, i: torch.Tensor, ndim: int = 1) -> torch.Tensor:
        """sqrt(alpha_bar_i): how much of x_0 the image x_i holds, shaped to broadcast over ndim dims."""
        return _extract(self.sqrt_alpha_bar, i, ndim)

    def q_sample(self, x0: torch.Tensor, i: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_i ~ q(x_i | x_0) = N(sqrt(alpha_bar_i) x_0, (1 - alpha_bar_i) I).  x0: [B, C, H, W], i: [B]."""
        return (_extract(self.sqrt_alpha_bar, i, x0.ndim) * x0
                + _extract(self.sqrt_one_minus_alpha_bar, i, x0.ndim) * noise)

    def q_sample_pairs(self, x0: torch.Tensor, i: torch.Tensor, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_i, x_{i+1}) with x_i ~ q(x_i | x_0) and x_{i+1} ~ q(x_{i+1} | x_i), as DDGAN trains."""
        n1 = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        n2 = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_i = self.q_sample(x0, i, n1)
        x_next = _extract(self.alphas, i + 1, x0.ndim) * x_i + _extract(self.sigmas, i + 1, x0.ndim) * n2
        return x_i, x_next

    def posterior_mean(self, x0_hat: torch.Tensor, x_next: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """mu = A_t x0_hat + B_t x_t (paper eq. 1), the mean of q(x_i | x_{i+1}, x0_hat)."""
        return (_extract(self.posterior_coef_x0, i, x0_hat.ndim) * x0_hat
                + _extract(self.posterior_coef_xt, i, x0_hat.ndim) * x_next)

    def posterior_sample(self, x0_hat: torch.Tensor, x_next: torch.Tensor, i: torch.Tensor,
                         noise: torch.Tensor) -> torch.Tensor:
        """x_i ~ q(x_i | x_{i+1}, x0_hat) = N(mu, sigma_t^2 I) (paper eq. 1-3); no noise at i = 0."""
        mean = self.posterior_mean(x0_hat, x_next, i)
        std = torch.exp(0.5 * _extract(self.posterior_log_variance, i, x0_hat.ndim))
        nonzero = (i != 0).to(x0_hat.dtype).reshape(-1, *([1] * (x0_hat.ndim - 1)))
        return mean + nonzero * std * noise
