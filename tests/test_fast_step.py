"""The fast step (sard.fast_step) on the CPU: real training runs with G and D compiled through
AOTAutograd without code generation (backend aot_eager: the layer that refuses R1's double backward),
against the eager run from the same seed; auto means eager here; the EMA's foreach update is the loop's."""
import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from sard.config import TrainConfig
from sard.fast_step import eager, fast_on, step_nets
from sard.steps import build_models, ema_update


def tiny_config(data, out, fast: str) -> TrainConfig:
    cfg = TrainConfig(data=str(data), out=str(out), iters=3, res=32, batch=2, log_every=1, sample_every=100,
                      ckpt_every=3, fast=fast)
    cfg.generator.base_channels, cfg.generator.num_res_blocks = 8, 1
    cfg.loss.lazy_r1 = 2             # steps 0 and 2 with R1 (D eager on the real side), step 1 without
    return cfg


def run(tiny_data, out, fast: str) -> tuple[list[dict], dict, dict]:
    from sard.train import train
    train(tiny_config(tiny_data, out, fast), device="cpu", backend="aot_eager")
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    meta = json.loads((out / "train_state.json").read_text())
    return log, load_file(str(out / meta["file"])), load_file(str(out / "model.safetensors"))


def test_the_compiled_step_trains_as_the_eager_one_and_saves_the_same_keys(tiny_data, tmp_path):
    log_e, state_e, model_e = run(tiny_data, tmp_path / "eager", "off")
    log_f, state_f, model_f = run(tiny_data, tmp_path / "fast", "on")
    assert [x["step"] for x in log_f] == [1, 2, 3] and "r1" in log_f[0] and "r1" not in log_f[1]
    for e, f in zip(log_e, log_f):
        losses = sorted(k for k in e if k not in ("sec_per_step",))
        assert losses == sorted(k for k in f if k != "sec_per_step")
        assert [f[k] for k in losses] == pytest.approx([e[k] for k in losses], rel=1e-4, abs=1e-5)
    # checkpoints hold the raw modules: no `_orig_mod.` in any key, the eager run's keys exactly
    assert set(state_f) == set(state_e) and set(model_f) == set(model_e)
    for k in state_e:
        torch.testing.assert_close(state_f[k], state_e[k], rtol=1e-4, atol=1e-5)


def test_auto_is_eager_on_the_cpu_and_compiled_modules_share_the_weights():
    assert not fast_on("auto", "cpu") and fast_on("auto", "cuda") and fast_on("on", "cpu")
    assert not fast_on("off", "cuda")
    m = build_models(TrainConfig())
    nets = step_nets(m.G, m.D, "auto", "cpu")
    assert nets.G is m.G and nets.D is m.D and not nets.compiled and not nets.cudagraphs
    # the CPU keeps Adam's default (no fused kernels): CPU runs stay bit-identical to before
    assert all(g["fused"] is None for g in m.opt_g.param_groups + m.opt_d.param_groups)
    on = step_nets(m.G, m.D, "on", "cpu", backend="aot_eager")
    assert on.compiled and eager(on.D) is m.D and eager(on.G) is m.G and eager(m.D) is m.D
    assert not on.cudagraphs
    assert set(on.G.state_dict()) == {f"_orig_mod.{k}" for k in m.G.state_dict()}   # why checkpoints save m.G
    with pytest.raises(ValueError, match="fast_mode"):
        step_nets(m.G, m.D, "on", "cpu", mode="fastest")


def test_the_foreach_ema_update_equals_the_loop_bit_for_bit():
    torch.manual_seed(0)
    cfg = TrainConfig()
    cfg.generator.base_channels = 16
    model = build_models(cfg).G
    ema, loop = copy.deepcopy(model).requires_grad_(False), copy.deepcopy(model).requires_grad_(False)
    for decay in (0.1, 0.5, 0.9, 0.999):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            for pe, p in zip(loop.parameters(), model.parameters()):
                pe.lerp_(p, 1 - decay)
        ema_update(ema, model, decay)
        assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), loop.parameters()))
