"""Variations of one image and mask (seeds seed, seed+1, ...), as the studio makes them: each by a
synthesizer of sard.synthesizers (SARD's pipeline streamed so that progress follows its reverse
steps), feathered into the image, with the settings record its manifest line keeps.

A generator of Progress and Made items; it knows nothing of a UI (the studio reports the progress,
names the files and keeps the session).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from sard.masks import feather, feather_weights
from sard.results import SynthesisResult
from sard.synthesizers import Synthesizer, defect_label


@dataclass
class Progress:
    done: int            # reverse steps finished so far (a baseline counts one per variation)
    total: int
    variation: int       # which variation runs, 1..variations
    variations: int

    @property
    def fraction(self) -> float:
        return min(self.done, self.total) / self.total


@dataclass
class Made:
    image: np.ndarray          # the result feathered into the input: its size, dtype and channels
    result: SynthesisResult    # as the synthesizer returned it (mask, frames, roi, colour)
    settings: dict             # method, defect, seed, rcd, steps, checkpoint, source, mask_params, feather,
                               # colour, seconds: the manifest record of this variation


def variations(synth: Synthesizer, image: np.ndarray, mask: np.ndarray, *, defect: str | None, seed: int,
               count: int, rcd: bool, feather_px: int, source: str,
               mask_params: dict | None) -> Iterator[Progress | Made]:
    """`count` variations of `image` in `mask` (bool, the image's size): a Progress per reverse step
    (per variation for a baseline), then the variation. Inputs are checked by the caller; rcd
    applies to SARD only (its region is the mask's), feather_px 0 pastes the result as it is."""
    pipe = synth.pipeline
    weights = feather_weights(mask, feather_px) if feather_px else None
    steps = pipe.schedule.num_steps if pipe is not None else None
    total = count * (steps or 1)
    done = 0
    for k in range(count):
        s = seed + k
        t0 = time.perf_counter()
        if pipe is not None:
            for item in pipe.stream(image, mask, seed=s, defect=defect_label(pipe, defect), rcd=bool(rcd)):
                done += 0 if isinstance(item, SynthesisResult) else 1
                yield Progress(done, total, k + 1, count)
            result = item
        else:
            result = synth(image, mask, seed=s, defect=defect)
            done += 1
            yield Progress(done, total, k + 1, count)
        out = np.asarray(result.image)
        if weights is not None:
            out = feather(out, image, weights)
        settings = {"method": synth.name, "defect": defect, "seed": s, "rcd": bool(rcd) if pipe is not None else None,
                    "steps": steps, "checkpoint": pipe.checkpoint_hash if pipe is not None else None,
                    "source": source, "mask_params": mask_params, "feather": feather_px, "colour": result.colour,
                    "seconds": round(time.perf_counter() - t0, 3)}
        yield Made(out, result, settings)
