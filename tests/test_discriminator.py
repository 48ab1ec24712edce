"""DMG: D_fg judges features of the whole pair masked at layer l (eq. 2), or the masked input (the
earlier variant); dmg=False keeps only the global head; the choices that let D learn do what they say."""
import torch

from sard.nets.discriminator import Discriminator, DiscriminatorConfig
from sard.nets.layers import timestep_embedding


def _inputs(seed=0, B=3, C=1, H=32):
    g = torch.Generator().manual_seed(seed)
    x, xt = torch.randn(B, C, H, H, generator=g), torch.randn(B, C, H, H, generator=g)
    m = torch.zeros(B, 1, H, H)
    m[0, :, 3:9, 4:7] = 1      # small defect
    m[1, :, 10:30, 2:25] = 1   # large defect
    m[2, :, 17, 17] = 1        # one pixel
    return x, xt, torch.tensor([0, 1, 3]), m


def test_input_masked_dmg_head_ignores_pixels_outside_the_mask():
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig.ddgan_literal(num_classes=2)).eval()
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
    assert 1 / 3 < small / large < 3   # unnormalised, the 36x larger mask would score ~36x more (edges differ)


def test_feature_masked_dmg_sees_the_boundary_but_not_far_pixels():
    """DMG eq. 2: f_l of the whole pair, masked at layer l, so D_fg sees the defect's edge with its
    surroundings; pixels beyond f_l's receptive field still cannot reach it."""
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig()).eval()
    x = torch.randn(1, 1, 64, 64)
    m = torch.zeros(1, 1, 64, 64)
    m[..., 8:16, 8:16] = 1
    i = torch.tensor([1])
    out = d(x, x, i, m).fg
    ring = torch.zeros_like(m)
    ring[..., 5:19, 5:19] = 1
    ring = ring - m                                  # up to 3 px outside the mask
    far = torch.zeros_like(m)
    far[..., 40:, 40:] = 1                            # > 24 px away
    noise = torch.randn_like(x) * 3
    assert not torch.allclose(d(x + noise * ring, x + noise * ring, i, m).fg, out)
    assert torch.equal(d(x + noise * far, x + noise * far, i, m).fg, out)


def test_mask_is_an_input_of_the_global_head():
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig()).eval()
    with torch.no_grad():
        torch.nn.init.normal_(d.linear_out.weight)   # the head starts at zero; give it weights
    x, xt, i, m = _inputs()
    moved = m.roll(5, dims=-1)
    assert not torch.allclose(d(x, xt, i, m).img, d(x, xt, i, moved).img)
    literal = Discriminator(DiscriminatorConfig.ddgan_literal(dmg=False)).eval()
    assert torch.equal(literal(x, xt, i, m).img, literal(x, xt, i, moved).img)


def test_steps_are_told_apart_by_the_scaled_embedding():
    """Indices 0..3 barely move a sinusoid of period up to 10^4; scaled by 1000 / T they do."""
    i = torch.arange(4)
    spread = lambda e: (e - e.mean(0)).norm(dim=1).mean() / e.norm(dim=1).mean()  # noqa: E731
    assert spread(timestep_embedding(i * 250.0, 128)) > 3 * spread(timestep_embedding(i, 128))


def test_signal_preserving_init_keeps_features_alive_with_depth():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 64, 64)
    m = torch.zeros(4, 1, 64, 64)
    i = torch.zeros(4, dtype=torch.long)

    def last_feature_std(cfg):
        d = Discriminator(cfg)
        return d._trunk(d.stack(x, x, i, m), d.embed_step(i))[-1].std().item()

    assert last_feature_std(DiscriminatorConfig()) > 0.25
    assert last_feature_std(DiscriminatorConfig.ddgan_literal()) < 0.1
