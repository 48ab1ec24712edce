"""The deterministic split of each defect type: a third trains the synthesizer (as the paper), the
rest is held out for evaluation and never reaches a synthesizer or a mask bank."""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from sard.data.readers import Sample


@dataclass
class Split:
    synth: list[Sample]      # trains the synthesizers; its masks form the mask bank
    held_out: list[Sample]   # evaluation only

    def defects(self) -> list[str]:
        return sorted({s.defect for s in self.synth})


def split_defects(samples: list[Sample], seed: int = 0, fraction: float = 1 / 3) -> Split:
    """Per defect type, sort by path, shuffle with a seed derived from (seed, type) and give the
    first ceil(fraction * n) to the synthesizer. Normal images are in neither list."""
    synth, held = [], []
    by_type: dict[str, list[Sample]] = {}
    for s in samples:
        if not s.is_normal:
            by_type.setdefault(s.defect, []).append(s)
    for defect in sorted(by_type):
        items = sorted(by_type[defect], key=lambda s: str(s.image))
        rng = np.random.default_rng([seed, zlib.crc32(defect.encode())])
        order = rng.permutation(len(items))
        k = min(len(items), max(1, math.ceil(fraction * len(items))))
        synth += [items[j] for j in order[:k]]
        held += [items[j] for j in order[k:]]
    return Split(synth=synth, held_out=held)
