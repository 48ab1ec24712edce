"""The fast training step: G's and D's forwards compiled with torch.compile, so that a small step on a
GPU stops being bound by Python and thousands of kernel launches (on by default on CUDA only: on this
CPU a compiled step was 9 times slower).

The raw modules stay what checkpoints, the EMA and the optimizers see (a compiled module's state_dict
keys carry an `_orig_mod.` prefix); the compiled ones are views sharing their parameters. D runs eagerly
where R1 differentiates twice (sard.steps.d_step): AOTAutograd refuses double backward.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

FAST_CHOICES = ("auto", "on", "off")       # auto: on where the device is CUDA
# torch.compile's modes; reduce-overhead adds CUDA graphs (outputs live until the next step begins)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")


def fast_on(fast: str, device: torch.device | str) -> bool:
    """Whether the step is compiled: --fast on, or auto on a CUDA device."""
    return fast == "on" or (fast == "auto" and torch.device(device).type == "cuda")


def eager(net: nn.Module) -> nn.Module:
    """The module a compiled one wraps (itself when it is not compiled): same parameters, run eagerly."""
    return getattr(net, "_orig_mod", net)


@dataclass
class StepNets:
    """G and D as the step calls them (compiled or not), and what each iteration must do first."""
    G: nn.Module
    D: nn.Module
    compiled: bool = False
    cudagraphs: bool = False

    def begin_step(self) -> None:
        """A new iteration: CUDA graphs may reuse the memory of the last one's outputs from here on
        (G is called several times a step, so the heuristic of 'no pending backward' is not trusted)."""
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()


def step_nets(G: nn.Module, D: nn.Module, fast: str, device: torch.device | str, mode: str = "default",
              backend: str = "inductor") -> StepNets:
    """G and D compiled when fast_on(fast, device), else as given. G and D may be DDP wrappers: DDP is
    compiled around, as PyTorch advises. backend: "aot_eager" runs the same AOTAutograd layer without
    code generation (the tests' cheap backend on the CPU); mode is inductor's."""
    if not fast_on(fast, device):
        return StepNets(G, D)
    if mode not in COMPILE_MODES:
        raise ValueError(f"fast_mode: expected one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    # static shapes: a run's batch and crop size never change, and CUDA graphs need them fixed
    kwargs = {"mode": mode} if backend == "inductor" else {}
    G_fast, D_fast = (torch.compile(net, backend=backend, dynamic=False, **kwargs) for net in (G, D))
    return StepNets(G_fast, D_fast, compiled=True, cudagraphs=backend == "inductor" and mode in CUDAGRAPH_MODES)
