"""The adversarial objectives of SARD (paper section III-B) with softplus phi(x) = log(1 + e^x).

Losses take discriminator outputs and tensors, never a trainer; dmg=False simply means D_fg is None.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from sard.nets.discriminator import DOutput


@dataclass
class LossConfig:
    lam: float = 0.2          # lambda: weight of D_fg in L_D
    l_img: float = 1.0        # lambda_img in L_G
    l_mask: float = 1.0       # lambda_mask in L_G
    alpha: float = 1.0        # weight of L_MSE
    beta: float = 0.1         # background weight inside L_MSE
    r1_gamma: float = 1.0
    lazy_r1: int = 10         # R1 every this many steps

    def to_dict(self) -> dict:
        return asdict(self)


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


def discriminator_loss(d_real: DOutput, d_fake: DOutput, lam: float) -> torch.Tensor:
    """L_D (DMG eq. 3)."""
    return d_real_loss(d_real, lam) + d_fake_loss(d_fake, lam)


def r1_penalty(real_loss: torch.Tensor, x_real: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * E ||grad_x L_D,real||^2 on the real x_{t-1}, as DDGAN regularises D."""
    (grad,) = torch.autograd.grad(real_loss.sum(), x_real, create_graph=True)
    return gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()


def mse_loss(x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """L_MSE = ||m (x0_hat - x0)||^2 + beta ||(1 - m)(x0_hat - x0)||^2, as means over pixels."""
    sq = (x0_hat - x0).pow(2)
    return (mask * sq).mean() + beta * ((1 - mask) * sq).mean()


def generator_loss(d_fake: DOutput, x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor,
                   cfg: LossConfig) -> dict[str, torch.Tensor]:
    """L_G = l_img L_adv-img + l_mask L_adv-mask + alpha L_MSE (paper eq. 4-6 of III-C)."""
    adv_img = F.softplus(-d_fake.img).mean()                                        # eq. 5
    adv_mask = F.softplus(-d_fake.fg).mean() if d_fake.fg is not None else torch.zeros_like(adv_img)  # eq. 6
    mse = mse_loss(x0_hat, x0, mask, cfg.beta)
    total = cfg.l_img * adv_img + cfg.l_mask * adv_mask + cfg.alpha * mse
    return {"total": total, "adv_img": adv_img, "adv_mask": adv_mask, "mse": mse}
