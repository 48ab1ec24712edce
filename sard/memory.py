"""What one training step needs in memory, against what the machine has: a batch, a crop size or a
network width that cannot fit is refused before any data is read or a model is built, naming the flag
or field and the largest value that fits.

The estimate, in bytes:
- the networks: the parameters of G and D, counted on PyTorch's meta device (nothing is allocated),
  held as weights, gradients and two Adam moments (16 a parameter), G's EMA copy, and the copies a
  checkpoint serialises (G, G_ema, D, the moments): 40 a parameter of G, 28 of D;
- each sample: the tensors autograd keeps from one forward pass of G and one of D at the crop size
  (saved_tensors_hooks on the meta device, weights left out), G twice when the diversity term draws a
  second latent, times 1.4 for the backward pass's transients and the allocator; counted at no more
  than 256 px and scaled by the area beyond (the nets are convolutional); gray or RGB alike (RGB counted);
against 90 % of MemAvailable (/proc/meminfo, shared by the processes of a torchrun on the CPU) or of
the GPU's free memory. Real steps on the CPU stay within it (tests/test_memory.py).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from sard.config import TrainConfig
from sard.io import SardInputError
from sard.nets.discriminator import Discriminator
from sard.nets.generator import Generator
from sard.store.model_folder import CONFIG_NAME, ModelConfig

G_BYTES, D_BYTES = 40, 28      # a parameter: weights, gradients, Adam, EMA (G), checkpoint copies
MARGIN = 1.4                   # on the saved activations: backward transients, allocator, threads
SHARE = 0.9                    # of what is available: the data set, sample grids, the interpreter
PROBE_RES = 256                # activations counted at most at this size, scaled beyond
WIDTHS = ("generator.base_channels", "generator.nz", "generator.style_dim", "generator.num_res_blocks",
          "generator.z_mlp_layers", "discriminator.base_channels", "discriminator.temb_dim")
UNCOUNTABLE = math.inf         # sizes whose tensors int64 cannot even count


@dataclass
class StepCost:
    networks: float      # bytes whatever the batch
    per_sample: float    # bytes a sample at the crop size (margin included)
    res: int
    params: tuple[int, int] = (0, 0)   # of G and D

    def total(self, batch: int) -> float:
        return self.networks + batch * self.per_sample


def size_text(n: float) -> str:
    """'about 1.2 GB'; sizes int64 cannot count are said so."""
    if n == UNCOUNTABLE:
        return "more bytes than int64 can count"
    unit, scale = next(((u, s) for u, s in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)) if n >= s), ("kB", 1e3))
    return f"about {n / scale:.3g} {unit}" if n < 1000 * scale else f"about {n / scale:,.0f} {unit}"


def mem_available() -> int:
    """MemAvailable of /proc/meminfo (bytes), else the free pages; no bound where neither is known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def available(device: torch.device) -> tuple[int, str]:
    """(bytes a training process may plan for, what the machine has in words)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device if device.index is not None else None)
        return int(free * SHARE), f"{device} has {size_text(free)} free"
    have, share = mem_available(), max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    per = f" for {share} processes" if share > 1 else ""
    return int(have * SHARE) // share, f"this machine has {size_text(have)} available{per}"


def _saved_bytes(forward, params) -> int:
    """Bytes of the tensors autograd saves for backward while `forward()` runs, weights left out."""
    skip, total = {id(p) for p in params}, [0]

    def pack(t):
        if id(t) not in skip and (t._base is None or id(t._base) not in skip):
            total[0] += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return total[0]


def step_cost(cfg: TrainConfig, res: int | None = None) -> StepCost:
    """What a training step of cfg's networks needs: the networks, and a sample at res (cfg.res)."""
    res = res or cfg.res
    g = replace(cfg.generator, image_channels=3)
    d = replace(cfg.discriminator, image_channels=3, num_steps=cfg.schedule.num_steps)
    stride = max(g.stride, 2 ** (len(d.channel_mult) - 1))
    probe = res if res <= PROBE_RES else max(stride, PROBE_RES // stride * stride)
    try:
        with torch.device("meta"):
            G, D = Generator(g), Discriminator(d)
            x, m = torch.zeros(1, 3, probe, probe), torch.zeros(1, 1, probe, probe)
            i, z = torch.zeros(1, dtype=torch.long), torch.zeros(1, g.nz)
            y = torch.zeros(1, dtype=torch.long) if g.num_classes > 0 else None
            params = [*G.parameters(), *D.parameters()]
            per = _saved_bytes(lambda: G(x, i, z, m, x, y), params) * (2 if cfg.loss.diversity > 0 else 1)
            per += _saved_bytes(lambda: D(x, x, i, m, y if d.num_classes > 0 else None), params)
    except (RuntimeError, ValueError, OverflowError, MemoryError):   # sizes beyond int64: nothing fits
        return StepCost(UNCOUNTABLE, UNCOUNTABLE, res)
    counts = sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())
    return StepCost(G_BYTES * counts[0] + D_BYTES * counts[1], math.ceil(MARGIN * per * res * res / (probe * probe)),
                    res, counts)


def _with(cfg: TrainConfig, dotted: str, value) -> TrainConfig:
    section, _, name = dotted.partition(".")
    return replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})


def _value(cfg: TrainConfig, dotted: str):
    section, _, name = dotted.partition(".")
    return getattr(getattr(cfg, section), name)


def largest_width(cfg: TrainConfig, dotted: str, budget: int) -> int:
    """The largest value of a width field with which cfg's step fits in budget (0: none): the cost is a
    quadratic in a width (weights grow with its square, activations with it), fitted on three values
    and checked."""
    p = max(1, _value(TrainConfig(), dotted))
    y1, y2, y3 = (step_cost(_with(cfg, dotted, k * p)).total(cfg.batch) for k in (1, 2, 3))
    if UNCOUNTABLE in (y1, y2, y3) or y1 > budget:
        return 0
    a = (y3 - 2 * y2 + y1) / (2 * p * p)
    b = (y2 - y1) / p - 3 * a * p
    c = y1 - a * p * p - b * p
    if a > 0:
        v = (-b + math.sqrt(b * b - 4 * a * (c - budget))) / (2 * a)
    else:
        v = (budget - c) / b if b > 0 else _value(cfg, dotted)
    best = min(int(v), _value(cfg, dotted))
    for _ in range(20):       # the fit is close: step down until the real estimate fits
        if best < 1 or step_cost(_with(cfg, dotted, best)).total(cfg.batch) <= budget:
            break
        best = int(best * 0.97)
    return max(best, 0)


def largest_res(cfg: TrainConfig, cost: StepCost, budget: int) -> int:
    """The largest crop size (a multiple of the nets' stride) whose step fits at cfg.batch (0: none)."""
    stride = max(cfg.generator.stride, 2 ** (len(cfg.discriminator.channel_mult) - 1))
    room = budget - cost.networks
    if room <= 0:
        return 0
    res = math.isqrt(int(room * cfg.res * cfg.res // (cfg.batch * cost.per_sample))) // stride * stride
    while res >= 16 and step_cost(cfg, res).total(cfg.batch) > budget:
        res -= stride
    return res if res >= 16 else 0


def refusal(cfg: TrainConfig, cost: StepCost, budget: int, where: str) -> str:
    """Which flag or field to lower, and to what: a width above its default that alone makes it fit,
    else the batch when one sample fits, else the crop size."""
    need = (f"a training step needs {size_text(cost.total(cfg.batch))} ({size_text(cost.networks)} for the "
            f"networks, {size_text(cost.per_sample)} a sample at {cfg.res} px) and {where}")
    default = TrainConfig()
    over = [f for f in WIDTHS if _value(cfg, f) > _value(default, f)] or \
        (list(WIDTHS) if cost.networks > budget else [])
    fits = {f: largest_width(cfg, f, budget) for f in over}
    fits = {f: v for f, v in fits.items() if v >= 1}
    if fits:
        name = max(fits, key=lambda f: _value(cfg, f) / fits[f])
        return f"{name} {_value(cfg, name)}: {need}; the largest {name} that fits is {fits[name]}"
    if cost.total(1) <= budget:
        best = int((budget - cost.networks) // cost.per_sample)
        return f"--batch {cfg.batch}: at --res {cfg.res} {need}; the largest --batch that fits is {best}"
    best = largest_res(cfg, cost, budget)
    if best:
        return f"--res {cfg.res}: at --batch {cfg.batch} {need}; the largest --res that fits is {best}"
    return (f"--batch {cfg.batch} and --res {cfg.res}: {need}; not even --res 16 fits at this batch: lower --batch "
            f"and --res, or the networks' widths (generator.base_channels, discriminator.base_channels)")


def check_fits(cfg: TrainConfig, device: torch.device | str = "cpu", budget: int | None = None) -> StepCost:
    """cfg's training step against what `device` has (or `budget` bytes): its cost, or a SardInputError
    naming the flag or field to lower and the largest value that fits."""
    if budget is None:
        budget, where = available(torch.device(device))
    else:
        where = f"{size_text(budget)} are available"
    if cfg.init and (Path(cfg.init) / CONFIG_NAME).is_file():    # fine-tuning keeps the checkpoint's generator
        cfg = replace(cfg, generator=ModelConfig.read(Path(cfg.init)).generator)
    cost = step_cost(cfg)
    if cost.total(cfg.batch) <= budget:
        return cost
    raise SardInputError(refusal(cfg, cost, budget, where))
