"""L_D and L_G on a case small enough to compute by hand."""
import math

import pytest
import torch

from sard.losses import LossConfig, discriminator_loss, generator_loss, mse_loss, r1_penalty
from sard.nets.discriminator import DOutput

sp = lambda v: math.log1p(math.exp(v))  # noqa: E731  softplus


def test_discriminator_loss_by_hand():
    real = DOutput(img=torch.tensor([0.0, 2.0]), fg=torch.tensor([1.0, -1.0]))
    fake = DOutput(img=torch.tensor([-1.0, 0.5]), fg=torch.tensor([0.0, 3.0]))
    lam = 0.2
    expected = ((sp(-0.0) + sp(-2.0)) / 2 + lam * (sp(-1.0) + sp(1.0)) / 2
                + (sp(-1.0) + sp(0.5)) / 2 + lam * (sp(0.0) + sp(3.0)) / 2)
    assert discriminator_loss(real, fake, lam).item() == pytest.approx(expected, rel=1e-6)
    # Without DMG only the global terms remain.
    no_fg = discriminator_loss(DOutput(real.img, None), DOutput(fake.img, None), lam).item()
    assert no_fg == pytest.approx((sp(0.0) + sp(-2.0)) / 2 + (sp(-1.0) + sp(0.5)) / 2, rel=1e-6)


def test_generator_loss_by_hand():
    cfg = LossConfig()  # l_img = l_mask = alpha = 1, beta = 0.1
    fake = DOutput(img=torch.tensor([1.0]), fg=torch.tensor([-2.0]))
    x0 = torch.zeros(1, 1, 2, 2)
    x0_hat = torch.tensor([[[[1.0, 0.5], [0.0, -1.0]]]])
    m = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # MSE as means over the 4 pixels: mask part (1 + 0.25) / 4, background part (0 + 1) / 4.
    mse = (1 + 0.25) / 4 + 0.1 * (0 + 1) / 4
    out = generator_loss(fake, x0_hat, x0, m, cfg)
    assert out["mse"].item() == pytest.approx(mse)
    assert out["adv_img"].item() == pytest.approx(sp(-1.0))
    assert out["adv_mask"].item() == pytest.approx(sp(2.0))
    assert out["total"].item() == pytest.approx(sp(-1.0) + sp(2.0) + mse)
    assert mse_loss(x0_hat, x0, m, beta=0.0).item() == pytest.approx(1.25 / 4)


def test_r1_penalty_by_hand():
    # D(x) = sum(3 x) -> loss = softplus(-D) ; grad = -3 sigmoid(-D) per pixel.
    x = torch.tensor([[[[0.0, 0.0]]]], requires_grad=True)
    loss = torch.nn.functional.softplus(-(3 * x).sum())
    g = 3 * 0.5  # |d softplus(-3 sum x) / dx| at 0
    assert r1_penalty(loss, x, gamma=1.0).item() == pytest.approx(0.5 * 2 * g**2)
