import pytest
import torch

from sard.schedule import Schedule, ScheduleConfig


def test_t4_numbers_from_design():
    s = Schedule(ScheduleConfig(num_steps=4))
    assert torch.allclose(s.sqrt_alpha_bar, torch.tensor([1.0, 0.7223, 0.2805, 0.0586, 0.0066]), atol=6e-4)
    assert torch.allclose(s.posterior_variance, torch.tensor([0.0, 0.441, 0.884, 0.984]), atol=6e-4)


@pytest.mark.parametrize("T", [2, 4, 8])
def test_schedule_is_monotone_and_last_step_is_noise_free(T):
    s = Schedule(ScheduleConfig(num_steps=T))
    assert len(s.sqrt_alpha_bar) == T + 1 and len(s.posterior_variance) == T
    assert (s.sqrt_alpha_bar[1:] < s.sqrt_alpha_bar[:-1]).all()
    # The last reverse step (i = 0) returns x0_hat itself: A_0 = 1, B_0 = 0, no noise.
    x0, xt = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    i = torch.zeros(3, dtype=torch.long)
    out = s.posterior_sample(x0, xt, i, torch.randn_like(x0))
    assert torch.allclose(out, x0, atol=1e-6)


def test_q_sample_pairs_have_the_forward_statistics():
    s = Schedule()
    x0 = torch.full((20000, 1, 1, 1), 0.5)
    i = torch.full((20000,), 1, dtype=torch.long)
    x1, x2 = s.q_sample_pairs(x0, i, torch.Generator().manual_seed(0))
    # x_1 ~ N(sqrt(ab_1) x0, 1 - ab_1); x_2 ~ N(sqrt(ab_2) x0, 1 - ab_2)
    for x, k in ((x1, 1), (x2, 2)):
        assert abs(x.mean().item() - 0.5 * s.sqrt_alpha_bar[k].item()) < 0.02
        assert abs(x.var().item() - (1 - s.sqrt_alpha_bar[k].item() ** 2)) < 0.03


def test_posterior_mean_is_exact_bayes_for_gaussian_forward():
    # With x0 known, E[x_{i} | x_{i+1}, x0] must equal A x0 + B x_{i+1}: check by simulation.
    s = Schedule()
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((200000, 1, 1, 1), 0.3)
    i = torch.full((200000,), 1, dtype=torch.long)
    x_i, x_next = s.q_sample_pairs(x0, i, g)
    A, B = s.posterior_coef_x0[1].item(), s.posterior_coef_xt[1].item()
    resid = x_i - (A * x0 + B * x_next)
    assert abs(resid.mean().item()) < 0.01
    assert abs(resid.var().item() - s.posterior_variance[1].item()) < 0.01
    assert abs((resid * x_next).mean().item()) < 0.01  # residual uncorrelated with x_{i+1}
