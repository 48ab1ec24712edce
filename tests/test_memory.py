"""sard.memory: the estimate of a training step's memory holds what real steps take, and a step that
cannot fit is refused naming the flag or field to lower and the largest value that fits (issue 32 item 11)."""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import REPO
from sard.config import TrainConfig, config_from_dict
from sard.io import SardInputError
from sard.memory import check_fits, step_cost

STEP = """
import json, sys, torch
from pathlib import Path
from sard.config import config_from_dict
from sard.schedule import Schedule
from sard.steps import Batch, GapMeter, build_models, train_step
torch.set_num_threads(1)
for d in [json.loads(sys.argv[1])]:      # one step a process: freed memory the allocator keeps would hide the next
    cfg = config_from_dict(d)
    cfg.loss.lazy_r1 = 1                         # R1 in this step too: the costlier D step
    B, R = cfg.batch, cfg.res
    m = build_models(cfg)
    x0 = torch.rand(B, 1, R, R) * 2 - 1
    b = Batch(x0, (torch.rand(B, 1, R, R) > 0.7).float(), torch.zeros(B, dtype=torch.long))
    status = lambda k: next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines()
                            if l.startswith(k + ":"))
    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS")
    train_step(m.G, m.D, m.opt_g, m.opt_d, Schedule(cfg.schedule), b, torch.Generator().manual_seed(0), cfg, 0,
               lambda: torch.autocast("cpu", enabled=False), GapMeter(cfg.schedule.num_steps))
    print((status("VmHWM") - before) * 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset the peak mark")
def test_real_training_steps_stay_within_the_estimate_and_near_it():
    configs = [{"batch": 4, "res": 64},
               {"batch": 2, "res": 96, "loss": {"diversity": 0.0}, "discriminator": {"base_channels": 32}}]
    for d in configs:
        r = subprocess.run([sys.executable, "-c", STEP, json.dumps(d)], capture_output=True, text=True, timeout=600,
                           cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        measured = int(r.stdout)
        cfg = config_from_dict(d)
        cost = step_cost(cfg)
        # the step: gradients and Adam's moments appear (the weights were there), plus the batch's activations
        estimate = 12 * sum(cost.params) + cfg.batch * cost.per_sample
        assert measured <= estimate <= 1.75 * measured, (d, measured / 2**20, estimate / 2**20)
        assert cost.total(cfg.batch) > estimate       # the whole run also holds the EMA and checkpoint copies


def test_a_step_that_fits_passes_and_its_cost_grows_with_batch_and_area():
    cfg = TrainConfig(batch=4, res=64)
    cost = check_fits(cfg, budget=10**15)
    assert cost.networks > 0 and cost.per_sample > 0
    big = step_cost(replace(cfg, res=128))
    assert 3.5 < big.per_sample / cost.per_sample < 4.5 and big.networks == cost.networks


def test_the_batch_is_named_with_the_largest_that_fits():
    cfg = TrainConfig(batch=100, res=64)
    cost = step_cost(cfg)
    budget = int(cost.total(37) + cost.per_sample / 2)
    with pytest.raises(SardInputError, match=r"--batch 100: .* the largest --batch that fits is 37$"):
        check_fits(cfg, budget=budget)


def test_the_crop_size_is_named_when_one_sample_does_not_fit():
    cfg = TrainConfig(batch=2, res=4096)
    budget = int(step_cost(replace(cfg, res=512)).total(2) * 1.05)
    with pytest.raises(SardInputError, match=r"--res 4096: at --batch 2 .* the largest --res that fits is (\d+)$") as e:
        check_fits(cfg, budget=budget)
    best = int(e.value.args[0].rsplit(" ", 1)[1])
    assert 512 <= best < 560 and best % 8 == 0
    assert step_cost(replace(cfg, res=best)).total(2) <= budget < step_cost(replace(cfg, res=best + 8)).total(2)


@pytest.mark.parametrize("field", ["generator.nz", "generator.base_channels", "discriminator.temb_dim"])
def test_a_width_is_named_with_the_largest_value_that_fits(field):
    section, name = field.split(".")
    cfg = config_from_dict({section: {name: 100_000_000}})
    budget = 4 * 10**9
    with pytest.raises(SardInputError, match=rf"^{field} 100000000: .*; the largest {field} that fits is (\d+)$") as e:
        check_fits(cfg, budget=budget)
    best = int(e.value.args[0].rsplit(" ", 1)[1])
    at = lambda v: step_cost(config_from_dict({section: {name: v}})).total(cfg.batch)  # noqa: E731
    assert at(best) <= budget < at(int(best * 1.05) + 1)


def test_on_cuda_the_devices_free_memory_is_the_budget(monkeypatch):
    import torch

    from sard.memory import SHARE, available
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 10**9, 80 * 10**9))
    budget, where = available(torch.device("cuda:0"))
    assert budget == int(8e9 * SHARE) and where == "cuda:0 has about 8 GB free"


def test_on_the_cpu_the_processes_of_a_torchrun_share_the_machine(monkeypatch):
    import torch

    from sard.memory import available
    alone, _ = available(torch.device("cpu"))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    shared, where = available(torch.device("cpu"))
    assert abs(shared - alone / 4) < alone / 40 and "for 4 processes" in where
