"""DMG: D_fg sees nothing outside the mask; dmg=False keeps only the global head."""
import torch

from sard.nets.discriminator import Discriminator, DiscriminatorConfig


def _inputs(seed=0, B=3, C=1, H=32):
    g = torch.Generator().manual_seed(seed)
    x, xt = torch.randn(B, C, H, H, generator=g), torch.randn(B, C, H, H, generator=g)
    m = torch.zeros(B, 1, H, H)
    m[0, :, 3:9, 4:7] = 1      # small defect
    m[1, :, 10:30, 2:25] = 1   # large defect
    m[2, :, 17, 17] = 1        # one pixel
    return x, xt, torch.tensor([0, 1, 3]), m


def test_dmg_head_ignores_pixels_outside_the_mask():
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(num_classes=2)).eval()
    x, xt, i, m = _inputs()
    out = d(x, xt, i, m, torch.tensor([0, 1, 0]))
    noise = torch.randn_like(x) * 3
    changed = d(x + noise * (1 - m), xt + noise * (1 - m), i, m, torch.tensor([0, 1, 0]))
    assert torch.equal(out.fg, changed.fg)
    assert not torch.allclose(out.img, changed.img)   # the global head does see them
    inside = d(x + noise * m, xt, i, m, torch.tensor([0, 1, 0]))
    assert not torch.allclose(out.fg, inside.fg)       # and D_fg reacts to the defect itself


def test_dmg_off_has_only_the_global_head():
    d = Discriminator(DiscriminatorConfig(dmg=False))
    x, xt, i, m = _inputs()
    out = d(x, xt, i, m)
    assert out.fg is None and out.img.shape == (3,)
    assert not hasattr(d, "psi") or d.psi is None


def test_dmg_is_normalised_by_mask_area():
    # The same local pattern scores on the same scale whatever the mask's size: D_fg is a mean.
    torch.manual_seed(1)
    d = Discriminator(DiscriminatorConfig()).eval()
    x = torch.zeros(2, 1, 32, 32)
    m = torch.zeros(2, 1, 32, 32)
    m[0, :, 8:12, 8:12] = 1
    m[1, :, 4:28, 4:28] = 1
    out = d(x, x, torch.zeros(2, dtype=torch.long), m)
    small, large = out.fg.abs().tolist()
    assert 1 / 1.5 < small / large < 1.5   # unnormalised, the 36x larger mask would score ~36x more
