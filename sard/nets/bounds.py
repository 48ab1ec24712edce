"""Bounds of configuration numbers, as 'name: expected ..., got ...' lines (None: within bounds).

The nets' configs check their fields with it (a core module imports nothing above sard.nets), and so
do the training config, the loss weights and the commands' flags (through sard.validate).
"""
from __future__ import annotations

import math

MAX_LEVELS = 10        # entries of a channel_mult: a stride of 2^9
MAX_MULT = 64          # a level's width in base channels
MAX_BLOCKS = 64        # residual blocks a level, layers of an MLP
MAX_CLASSES = 65536    # defect types
MAX_STEPS = 1000       # reverse steps T of the noise schedule
MAX_ITERS = 10**9      # training steps of a run, and every cadence counted in them


def is_number(value) -> bool:
    """A finite int or float (a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (isinstance(value, int) or math.isfinite(value))


def out_of_bounds(name: str, value, lo=None, hi=None, *, whole: bool = False, above: bool = False,
                  below: bool = False) -> str | None:
    """None when value is a finite number (a whole one with whole=True) within lo..hi, lo excluded with
    above=True and hi with below=True; else the line saying what was expected and what was given."""
    ok = is_number(value) and (not whole or isinstance(value, int) or value.is_integer()) and \
        (lo is None or (value > lo if above else value >= lo)) and (hi is None or (value < hi if below else value <= hi))
    if ok:
        return None
    kind = "whole" if whole else "finite"
    if not (above or below) and lo is not None:
        span = f"from {_text(lo)} to {_text(hi)}" if hi is not None else f"of at least {_text(lo)}"
        return f"{name}: expected a {kind} number {span}, got {value!r}"
    parts = [f"{'>' if above else '>='} {_text(lo)}" if lo is not None else "",
             f"{'<' if below else '<='} {_text(hi)}" if hi is not None else ""]
    return f"{name}: expected a {kind} number {' and '.join(p for p in parts if p)}, got {value!r}"


def _text(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def choice(name: str, value, allowed: tuple) -> str | None:
    return None if value in allowed and not isinstance(value, bool) else \
        f"{name}: expected one of {', '.join(map(str, allowed))}, got {value!r}"


def widths(name: str, mult) -> str | None:
    """A channel_mult: 1 to MAX_LEVELS whole numbers from 1 to MAX_MULT."""
    if isinstance(mult, (tuple, list)) and 1 <= len(mult) <= MAX_LEVELS and \
            all(out_of_bounds(name, m, 1, MAX_MULT, whole=True) is None for m in mult):
        return None
    return f"{name}: expected 1 to {MAX_LEVELS} whole numbers from 1 to {MAX_MULT} (a level's width in base " \
           f"channels), got {mult!r}"


def problems_of(*lines: str | None) -> list[str]:
    """The lines that say something (a config's problems())."""
    return [line for line in lines if line]
