"""What the discriminator judges in a training step: DDGAN's pair (x_{t-1}, x_t), or with
discriminator.judges = "x0" the clean image beside x_t, G's prediction pasted on the real background."""
import pytest
import torch

from sard.augment import augment_pair
from sard.config import TrainConfig
from sard.nets.discriminator import Discriminator, DiscriminatorConfig
from sard.nets.generator import Generator
from sard.schedule import Schedule
from sard.losses import diversity_loss
from sard.steps import Batch, GapMeter, d_step, g_step, judged_view, predict_x0, train_step


def _batch(B=2, H=16):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(B, 1, H, H, generator=g) * 2 - 1
    m = torch.zeros(B, 1, H, H)
    m[..., 4:10, 5:12] = 1
    return Batch(x0=x0, mask=m, label=torch.zeros(B, dtype=torch.long))


def test_pair_mode_judges_x_prev_and_x0_mode_the_clean_images():
    b = _batch()
    x_prev, x0_hat = torch.randn_like(b.x0), torch.randn_like(b.x0)
    pair, clean = TrainConfig(), TrainConfig()
    pair.discriminator.judges = "pair"
    assert clean.discriminator.judges == "x0"                                     # the default
    assert judged_view(pair, b, x_prev) is x_prev
    assert judged_view(pair, b, x_prev, x0_hat) is x_prev
    assert torch.equal(judged_view(clean, b, x_prev), b.x0)                       # the real side: x0 itself
    fake = judged_view(clean, b, x_prev, x0_hat)
    inside = b.mask.bool().expand_as(fake)
    assert torch.equal(fake[inside], x0_hat[inside])                              # G's prediction in the mask
    assert torch.equal(fake[~inside], b.x0[~inside])                              # RCD: the real background
    clean.rcd = False
    assert torch.equal(judged_view(clean, b, x_prev, x0_hat), x0_hat)             # DDGAN: all of x0_hat


def test_a_clean_x0_brightens_by_c_and_a_noisy_x_i_by_its_signal():
    sch = Schedule()
    x = torch.zeros(1, 1, 8, 8)
    i = torch.tensor([2])
    for clean in (False, True):
        out, _, _ = augment_pair(x, x, torch.ones_like(x), i, sch, torch.Generator().manual_seed(3), shift=0.0,
                                 prev_clean=clean)
        c = torch.Generator().manual_seed(3)
        c = (torch.rand(1, generator=c) * 2 - 1) * 0.2
        want = c if clean else sch.signal(i) * c
        assert torch.allclose(out, want.expand_as(out))


def test_training_steps_run_in_x0_mode_with_r1_and_move_both_nets():
    """d_step then g_step in x0 mode (R1 due at step 0); then train_step takes d_steps steps of D per G step."""
    cfg = TrainConfig()
    cfg.discriminator.judges = "x0"
    cfg.generator.base_channels, cfg.discriminator.base_channels = 8, 8
    cfg.discriminator.num_classes = cfg.generator.num_classes = 1
    G, D = Generator(cfg.generator), Discriminator(cfg.discriminator)
    sch = Schedule(cfg.schedule)
    opt_g, opt_d = (torch.optim.Adam(n.parameters(), lr=1e-3) for n in (G, D))
    b, rng, gaps = _batch(B=4, H=32), torch.Generator().manual_seed(1), GapMeter(sch.num_steps)
    before_g, before_d = [p.clone() for p in G.parameters()], [p.clone() for p in D.parameters()]
    amp = torch.autocast("cpu", enabled=False)
    d_out = d_step(G, D, opt_d, sch, b, rng, cfg, step=0, amp=lambda: amp, gaps=gaps)   # step 0: R1 is due
    g_out = g_step(G, D, opt_g, sch, b, rng, cfg, amp=lambda: amp)
    assert "r1" in d_out and all(torch.isfinite(torch.as_tensor(v)) for v in (*d_out.values(), *g_out.values()))
    assert any(not torch.equal(p, q) for p, q in zip(G.parameters(), before_g))
    assert any(not torch.equal(p, q) for p, q in zip(D.parameters(), before_d))
    assert gaps.fields(dmg=True)                                                  # the gap is logged per step
    cfg.d_steps = 3
    out = train_step(G, D, opt_g, opt_d, sch, b, rng, cfg, step=1, amp=lambda: amp, gaps=gaps)
    adam_steps = lambda opt: int(next(iter(opt.state.values()))["step"])        # noqa: E731
    assert adam_steps(opt_d) == 1 + 3 and adam_steps(opt_g) == 1 + 1
    assert {"d_real", "d_fake", "g_total", "g_mse"} <= set(out)


def test_the_diversity_term_makes_two_latents_paint_apart():
    """loss.diversity > 0: G's step adds the hinge on two z for one x_t (logged as g_div); trained on
    it alone, the two seeds' predictions inside the mask move apart; off, nothing is logged."""
    cfg = TrainConfig()
    cfg.generator.base_channels, cfg.discriminator.base_channels = 8, 8
    cfg.discriminator.num_classes = cfg.generator.num_classes = 1
    cfg.loss.l_img = cfg.loss.l_mask = cfg.loss.alpha = cfg.loss.texture = 0.0
    cfg.loss.diversity, cfg.loss.diversity_cap = 1.0, 10.0
    torch.manual_seed(0)
    G, D = Generator(cfg.generator), Discriminator(cfg.discriminator)
    sch, b = Schedule(cfg.schedule), _batch(B=4, H=32)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    amp = torch.autocast("cpu", enabled=False)
    x_next, i = torch.randn_like(b.x0), torch.full((4,), 3)
    with torch.no_grad():   # away from the zero-initialised output, where two seeds are equal and |a - b| is flat
        for p in G.parameters():
            p.add_(0.02 * torch.randn_like(p))

    def spread():
        with torch.no_grad():
            a, c = (predict_x0(G, b, x_next, i, torch.Generator().manual_seed(s), cfg.generator.nz) for s in (5, 6))
        return -diversity_loss(a, c, b.mask, cap=10.0).item()

    before = spread()
    outs = [g_step(G, D, opt_g, sch, b, torch.Generator().manual_seed(k), cfg, amp=lambda: amp) for k in range(15)]
    assert all(o["g_div"] <= 0 for o in outs)
    after = spread()
    assert after > 2 * before
    # diversity_fade: at the last reverse step (i = 0) x_1 holds sqrt(alpha_bar_1) of x0, so the hinge
    # weighs 1 - sqrt(alpha_bar_1) there; a seed whose first draw puts every sample at i = 0:
    seed = next(k for k in range(100000)
                if not torch.randint(0, sch.num_steps, (4,), generator=torch.Generator().manual_seed(k)).any())
    still = torch.optim.Adam(G.parameters(), lr=0.0)
    div = {}
    for fade in (True, False):
        cfg.loss.diversity_fade = fade
        div[fade] = g_step(G, D, still, sch, b, torch.Generator().manual_seed(seed), cfg, amp=lambda: amp)["g_div"]
    assert div[False] < 0 and (div[True] / div[False]).item() == pytest.approx(1 - sch.signal(torch.tensor([1])).item(), rel=1e-4)
    cfg.loss.diversity = 0.0
    assert "g_div" not in g_step(G, D, opt_g, sch, b, torch.Generator().manual_seed(0), cfg, amp=lambda: amp)


def test_x0_mode_scales_the_texture_channel_as_for_a_clean_image():
    """A clean x0's texture gets step 0's gain at every step; a noisy x_i's its own, smaller one."""
    x = torch.randn(1, 1, 16, 16)
    m = torch.ones(1, 1, 16, 16)
    i = torch.tensor([3])
    pair = Discriminator(DiscriminatorConfig(judges="pair"))
    clean = Discriminator(DiscriminatorConfig(judges="x0"))
    hp_pair, hp_clean = pair.stack(x, x, i, m)[:, 3], clean.stack(x, x, i, m)[:, 3]
    ratio = (hp_clean.std() / hp_pair.std()).item()
    assert abs(ratio - (clean.hp_scale[0] / pair.hp_scale[3]).item()) < 1e-4
    assert ratio > 5


def test_the_settle_term_makes_the_next_step_keep_what_x_t_holds():
    """loss.settle > 0: G's step runs the next reverse step on its own fake x_t and pulls that
    prediction toward this step's (logged as g_settle); trained on it alone, the change between the
    two predictions inside the mask falls; off, nothing is logged."""
    cfg = TrainConfig()
    cfg.generator.base_channels, cfg.discriminator.base_channels = 8, 8
    cfg.discriminator.num_classes = cfg.generator.num_classes = 1
    cfg.loss.l_img = cfg.loss.l_mask = cfg.loss.alpha = cfg.loss.diversity = cfg.loss.texture = 0.0
    cfg.loss.settle = 1.0
    torch.manual_seed(0)
    G, D = Generator(cfg.generator), Discriminator(cfg.discriminator)
    sch, b = Schedule(cfg.schedule), _batch(B=4, H=32)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    amp = torch.autocast("cpu", enabled=False)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))

    def change():
        with torch.no_grad():
            x2 = torch.randn(b.x0.shape, generator=torch.Generator().manual_seed(9))
            x0a = predict_x0(G, b, x2, torch.full((4,), 1), torch.Generator().manual_seed(1), cfg.generator.nz)
            x1 = sch.q_sample(x0a, torch.full((4,), 1), torch.randn(b.x0.shape, generator=torch.Generator().manual_seed(2)))
            x0b = predict_x0(G, b, x1, torch.full((4,), 0), torch.Generator().manual_seed(3), cfg.generator.nz)
        return (x0b - x0a).abs()[b.mask.expand_as(x0a).bool()].mean().item()

    before = change()
    outs = [g_step(G, D, opt_g, sch, b, torch.Generator().manual_seed(k), cfg, amp=lambda: amp) for k in range(30)]
    assert all(o["g_settle"] >= 0 for o in outs) and any(o["g_settle"] > 0 for o in outs)
    assert change() < 0.5 * before
    cfg.loss.settle = 0.0
    assert "g_settle" not in g_step(G, D, opt_g, sch, b, torch.Generator().manual_seed(0), cfg, amp=lambda: amp)
