"""The discriminator can learn: trained alone on real crops against the same crops with the defect
region zeroed, it separates them at the low-noise steps within a few hundred steps (the version
first landed reached a gap of 0.39 in 150 steps). At the noisiest steps no test can: real and fake
x_i differ by A_i (x0 - x0_fake) under noise sigma_i, and the probe reports that bound."""
import math

import torch

from conftest import MAGNETIC_TILE, requires_data
from sard.evaluation.d_probe import fake_x0, probe


def test_fakes_change_only_the_masked_region():
    x0 = torch.rand(2, 1, 16, 16) * 2 - 1
    m = torch.zeros(2, 1, 16, 16)
    m[..., 4:9, 5:12] = 1
    for kind in ("zero", "mean", "blur"):
        f = fake_x0(x0, m, kind)
        assert torch.equal(f[m == 0], x0[m == 0])
        assert not torch.equal(f[m == 1], x0[m == 1])


@requires_data
def test_discriminator_alone_separates_real_from_zeroed_defects():
    from sard.nets.discriminator import DiscriminatorConfig
    torch.set_num_threads(1)   # DDGAN's pair: the bound of a test on noisy x_i applies
    results = probe(str(MAGNETIC_TILE), DiscriminatorConfig(judges="pair"), fake="zero", steps=300)
    by_step = {r.step: r for r in results}
    assert by_step[0].bayes_bound > 0.99 and by_step[3].bayes_bound < 0.75   # the physics, not D
    assert by_step[0].gap_img > 2 and by_step[0].accuracy >= 0.95
    assert by_step[1].gap_img > 2 and by_step[1].accuracy >= 0.9
    # Step 2 (bound 0.93) is not asserted: the same seeded run ranked 0.77 here and 0.50 on CI's CPU,
    # so what the pair learns there within 300 steps is float-order luck, not a property of D.
    assert by_step[0].gap_fg > 1                                             # the DMG head learns too
    for r in results:
        assert math.isfinite(r.gap_img) and r.accuracy <= max(r.bayes_bound + 0.05, 0.6)


@requires_data
def test_judging_the_clean_x0_separates_blurred_defects_at_every_step():
    """discriminator.judges = "x0": D sees the clean image beside x_{i+1}, so the issue's bar (gap > 2,
    > 95 % ranked) holds at every reverse step, the noisiest included, against a blurred defect."""
    from sard.nets.discriminator import DiscriminatorConfig
    torch.set_num_threads(1)
    results = probe(str(MAGNETIC_TILE), DiscriminatorConfig(judges="x0"), fake="blur", steps=300)
    assert [r.step for r in results] == [0, 1, 2, 3]
    for r in results:
        assert r.gap_img > 2 and r.accuracy > 0.95, r
