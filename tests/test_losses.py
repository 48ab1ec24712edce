"""L_D and L_G on a case small enough to compute by hand."""
import math

import pytest
import torch

from sard.losses import (LossConfig, chroma_loss, d_fake_loss, d_real_loss, diversity_loss, gaussian_blur,
                         generator_loss, mse_loss, r1_penalty, settle_loss, texture_loss)


def discriminator_loss(d_real, d_fake, lam):
    """L_D (DMG eq. 3) as the trainer takes it, in its two halves."""
    return d_real_loss(d_real, lam) + d_fake_loss(d_fake, lam)
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
    cfg = LossConfig(region_mean=False, mse_lowpass=0, texture=0)  # the paper's literal form: l_img = l_mask = alpha = 1
    fake = DOutput(img=torch.tensor([1.0]), fg=torch.tensor([-2.0]))
    x0 = torch.zeros(1, 1, 2, 2)
    x0_hat = torch.tensor([[[[1.0, 0.5], [0.0, -1.0]]]])
    m = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # MSE as means over the 4 pixels: mask part (1 + 0.25) / 4, background part (0 + 1) / 4.
    mse = (1 + 0.25) / 4 + 0.1 * (0 + 1) / 4
    out = generator_loss(fake, x0_hat, x0, m, cfg, beta=0.1)
    assert out["mse"].item() == pytest.approx(mse)
    assert out["adv_img"].item() == pytest.approx(sp(-1.0))
    assert out["adv_mask"].item() == pytest.approx(sp(2.0))
    assert out["total"].item() == pytest.approx(sp(-1.0) + sp(2.0) + mse)
    assert mse_loss(x0_hat, x0, m, beta=0.0, region_mean=False).item() == pytest.approx(1.25 / 4)
    # Each term over its own pixels: mask (1 + 0.25) / 2, background (0 + 1) / 2.
    assert mse_loss(x0_hat, x0, m, beta=0.1).item() == pytest.approx(1.25 / 2 + 0.1 * 1 / 2)
    # alpha_i per sample multiplies that sample's term.
    faded = generator_loss(fake, x0_hat, x0, m, LossConfig(mse_lowpass=0), beta=0.0, alpha_i=torch.tensor([0.5]))
    assert faded["mse"].item() == pytest.approx(0.5 * 1.25 / 2)


def test_region_mean_weighs_a_small_defect_like_a_large_one():
    """With both terms over all pixels a 4-pixel defect's error counts 1/64 of a 256-pixel one's."""
    x0 = torch.zeros(2, 1, 32, 32)
    m = torch.zeros(2, 1, 32, 32)
    m[0, :, :2, :2] = 1
    m[1, :, :16, :16] = 1
    x0_hat = m.clone()                                  # error 1 on every defect pixel, none outside
    per_sample = lambda rm: [mse_loss(x0_hat[k:k + 1], x0[k:k + 1], m[k:k + 1], 0.0, rm).item() for k in (0, 1)]  # noqa: E731
    small, large = per_sample(True)
    assert small == pytest.approx(1.0) and large == pytest.approx(1.0)
    small, large = per_sample(False)
    assert large / small == pytest.approx(64.0)


def test_background_weight_is_zero_under_rcd_unless_set():
    assert LossConfig().background_weight(rcd=True) == 0.0     # RCD discards the background output
    assert LossConfig().background_weight(rcd=False) == 0.1
    assert LossConfig(beta=0.3).background_weight(rcd=True) == 0.3


def test_r1_on_summed_logits_is_per_sample_not_over_the_batch_mean():
    """DDGAN differentiates the summed logits; the batch-mean loss would shrink the penalty by 1/B^2."""
    x = torch.ones(4, 1, 1, 2, requires_grad=True)
    logits = (3 * x).flatten(1).sum(1)                  # d logit_b / d x_b = 3 per pixel
    assert r1_penalty(logits, x, gamma=2.0).item() == pytest.approx(1.0 * 2 * 9)
    assert r1_penalty(logits.mean(), x, gamma=2.0).item() == pytest.approx(2 * 9 / 16)


def test_r1_penalty_by_hand():
    # D(x) = sum(3 x) -> loss = softplus(-D) ; grad = -3 sigmoid(-D) per pixel.
    x = torch.tensor([[[[0.0, 0.0]]]], requires_grad=True)
    loss = torch.nn.functional.softplus(-(3 * x).sum())
    g = 3 * 0.5  # |d softplus(-3 sum x) / dx| at 0
    assert r1_penalty(loss, x, gamma=1.0).item() == pytest.approx(0.5 * 2 * g**2)


def test_lowpass_mse_leaves_texture_to_d_and_still_charges_the_layout():
    """With mse_lowpass a zero-mean pixel texture inside the mask costs almost nothing, while a
    wrong brightness of the whole defect costs what it costs without it (away from the edge)."""
    x0 = torch.zeros(1, 1, 48, 48)
    m = torch.zeros(1, 1, 48, 48)
    m[..., 8:40, 8:40] = 1
    yy, xx = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    texture = m * 0.3 * ((yy + xx) % 2 * 2 - 1).float()   # a +-0.3 checkerboard: pure grain
    offset = m * 0.3                                          # the whole defect 0.3 too bright
    plain = [mse_loss(x0 + e, x0, m, 0.0).item() for e in (texture, offset)]
    low = [mse_loss(x0 + e, x0, m, 0.0, lowpass=2.0).item() for e in (texture, offset)]
    assert plain[0] == pytest.approx(0.09) and plain[1] == pytest.approx(0.09)
    assert low[0] < 0.01 * plain[0]
    assert low[1] > 0.7 * plain[1]                          # only the edge band loses weight
    # What lies outside the mask never enters the mask term, blurred or not.
    outside = (1 - m) * 5.0
    assert mse_loss(x0 + outside, x0, m, 0.0, lowpass=2.0).item() == pytest.approx(0.0, abs=1e-9)
    # The generator loss uses the config's sigma.
    d = DOutput(img=torch.zeros(1), fg=torch.zeros(1))
    cfg = LossConfig(mse_lowpass=2.0, alpha_fade=False)
    assert generator_loss(d, x0 + texture, x0, m, cfg, beta=0.0)["mse"].item() == pytest.approx(low[0], rel=1e-5)


def test_diversity_loss_counts_the_mask_only_and_stops_at_its_cap():
    """Two seeds' x0_hat: mean |a - b| inside the mask, negated, capped at tau per sample."""
    m = torch.zeros(2, 1, 4, 4)
    m[:, :, :2, :2] = 1                               # 4 mask pixels each
    a = torch.zeros(2, 1, 4, 4)
    b = torch.zeros(2, 1, 4, 4)
    b[0, :, 0, 0] = 0.4                               # sample 0: mean 0.1 inside the mask
    b[1, :, :2, :2] = 2.0                             # sample 1: mean 2.0, over the cap
    b[:, :, 3, 3] = 5.0                               # outside the mask: ignored (RCD discards it)
    assert diversity_loss(a, b, m, cap=0.25).item() == pytest.approx(-(0.1 + 0.25) / 2)
    assert diversity_loss(a, a, m, cap=0.25).item() == 0.0
    # Under the cap its gradient pushes the seeds apart; over it, not at all.
    b.requires_grad_(True)
    diversity_loss(a, b, m, cap=0.25).backward()
    assert b.grad[0, 0, 0, 0] < 0 and b.grad[1].abs().sum() == 0
    # weight (diversity_fade's noise share): each sample's capped distance scaled by its own factor
    w = torch.tensor([1.0, 0.2])
    assert diversity_loss(a, b.detach(), m, cap=0.25, weight=w).item() == pytest.approx(-(0.1 + 0.2 * 0.25) / 2)


def test_diversity_loss_on_luminance_gives_a_pure_hue_shift_nothing():
    """luma=True: an RGB difference orthogonal to the ITU-R 601 weights (a hue shift of equal
    luminance) earns no diversity; a grey shift of 0.2 earns 0.2 either way; gray images are untouched."""
    m = torch.ones(1, 1, 4, 4)
    a = torch.zeros(1, 3, 4, 4)
    hue = torch.tensor([0.587, -0.299, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert diversity_loss(a, hue, m, cap=1.0, luma=True).item() == pytest.approx(0.0, abs=1e-7)
    assert diversity_loss(a, hue, m, cap=1.0, luma=False).item() == pytest.approx(-(0.587 + 0.299) / 3)
    grey = torch.full((1, 3, 4, 4), 0.2)
    assert diversity_loss(a, grey, m, cap=1.0, luma=True).item() == pytest.approx(-0.2)
    g = torch.zeros(1, 1, 4, 4)
    assert diversity_loss(g, g + 0.3, m, cap=1.0, luma=True).item() == pytest.approx(-0.3)


def test_chroma_loss_charges_a_hue_error_not_a_brightness_error_and_only_inside_the_mask():
    """A grey offset (the same in R, G and B) has no chroma; a green cast does, at full resolution
    (a 1 px checkerboard of hue costs as much as a flat one); gray images and a weight of 0 add nothing."""
    m = torch.zeros(1, 1, 8, 8)
    m[..., 2:6, 2:6] = 1
    x0 = torch.zeros(1, 3, 8, 8)
    grey = m.expand(1, 3, 8, 8) * 0.5
    green = torch.tensor([-0.2, 0.2, -0.2]).view(1, 3, 1, 1) * m
    yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checker = green * ((yy + xx) % 2 * 2 - 1).float()
    assert chroma_loss(x0 + grey, x0, m).item() == pytest.approx(0.0, abs=1e-7)
    flat = chroma_loss(x0 + green, x0, m).item()
    assert flat > 0.04 and chroma_loss(x0 + checker, x0, m).item() == pytest.approx(flat, rel=1e-5)
    assert chroma_loss(x0 + (1 - m) * torch.tensor([3.0, 0, 0]).view(1, 3, 1, 1), x0, m).item() == pytest.approx(0.0, abs=1e-7)
    d = DOutput(img=torch.zeros(1), fg=torch.zeros(1))
    on, off = LossConfig(chroma=2.0, alpha_fade=False), LossConfig(alpha_fade=False)
    a, b = generator_loss(d, x0 + green, x0, m, on, 0.0), generator_loss(d, x0 + green, x0, m, off, 0.0)
    assert a["chroma"].item() == pytest.approx(flat, rel=1e-5) and "chroma" not in b
    assert a["total"].item() == pytest.approx(b["total"].item() + 2.0 * flat, rel=1e-5)
    gray = torch.zeros(1, 1, 8, 8)
    assert "chroma" not in generator_loss(d, gray + m * 0.3, gray, m, on, 0.0)


def test_texture_loss_charges_lost_grain_not_a_different_grain_and_only_inside_the_mask():
    """Another draw of the same grain costs ~nothing (a moment, not a pixel match, unlike MSE); the grain
    blurred away or doubled costs; grain outside the mask is all but free (only the detail filter's 1 px reach crosses the edge); its gradient puts grain back."""
    g = torch.Generator().manual_seed(0)
    m = torch.zeros(2, 1, 32, 32)
    m[..., 6:26, 6:26] = 1
    real, other = (0.3 * torch.randn(2, 1, 32, 32, generator=g) for _ in range(2))
    same = texture_loss(other, real, m)
    smooth = texture_loss(gaussian_blur(real, 2.0), real, m)
    assert same.max() < 0.01 * smooth.min() and mse_loss(other, real, m, 0.0) > 0.1
    assert texture_loss(2 * real, real, m).min() > 0.05
    assert texture_loss(real + (1 - m) * torch.randn(2, 1, 32, 32, generator=g), real, m).max() < 0.01 * smooth.min()
    flat = torch.zeros(2, 1, 32, 32).add_(0.01 * torch.randn(2, 1, 32, 32, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([flat], lr=0.02)
    for _ in range(100):
        opt.zero_grad()
        texture_loss(flat, real, m).sum().backward()
        opt.step()
    assert texture_loss(flat.detach(), real, m).max() < 0.05 * smooth.min()
    d = DOutput(img=torch.zeros(2), fg=torch.zeros(2))
    on, off = LossConfig(texture=3.0, alpha_fade=False), LossConfig(alpha_fade=False, texture=0.0)
    a, b = generator_loss(d, other, real, m, on, 0.0), generator_loss(d, other, real, m, off, 0.0)
    assert "texture" not in b and a["total"].item() == pytest.approx(b["total"].item() + 3.0 * a["texture"].item())


def test_settle_loss_moves_the_later_prediction_only():
    """The stop-gradient sits on this step's x0_hat: only the next step's prediction gets a gradient."""
    m = torch.zeros(1, 1, 8, 8)
    m[..., 2:6, 2:6] = 1
    earlier, later = torch.zeros(1, 1, 8, 8, requires_grad=True), torch.ones(1, 1, 8, 8, requires_grad=True)
    loss = settle_loss(later, earlier, m)
    loss.sum().backward()
    assert loss.item() == pytest.approx(1.0) and earlier.grad is None
    assert later.grad[m.bool()].abs().min() > 0 and later.grad[~m.bool()].abs().max() == 0
