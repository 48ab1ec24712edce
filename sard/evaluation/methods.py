"""One name -> one synthesizer with the pipeline's call shape, for every evaluation."""
from __future__ import annotations

from pathlib import Path

from sard.baselines import make_baseline
from sard.pipeline import SardPipeline

BASELINE_NAMES = ("cutpaste", "draem", "glass")


def load_synthesizer(name: str, checkpoint: Path | None = None, sources: list | None = None, device=None):
    """`name` is a baseline, or any label for a SARD checkpoint folder (sard, ddgan, w_rcd, ...)."""
    if name in BASELINE_NAMES:
        kwargs = {"sources": sources} if name in ("draem", "glass") else {}
        return make_baseline(name, **kwargs)
    if checkpoint is None:
        raise ValueError(f"method '{name}' needs a checkpoint folder")
    pipe = SardPipeline.from_pretrained(checkpoint, device=device)
    rcd = bool(pipe.config.get("rcd", True))

    def synthesize(image, mask, seed=0, defect=None):
        label = defect if defect in pipe.defects else None
        # The ablations sample as they were trained: without RCD the whole image is resampled.
        return pipe(image, mask, seed=seed, defect=label, rcd=rcd, roi=rcd)
    synthesize.pipeline = pipe
    return synthesize
