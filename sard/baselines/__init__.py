"""Training-free defect synthesizers with the pipeline's call shape:
`method(image, mask=None, seed=0, defect=None) -> SynthesisResult`, pixels outside the returned
mask untouched. With a mask they fill it (the benchmark gives all methods the same normals and
masks); without one they draw their own, as the original method does."""
from __future__ import annotations

from sard.baselines.cutpaste import CutPaste
from sard.baselines.draem import DraemBlend
from sard.baselines.glass import GlassSynthesis
from sard.io import SardInputError

BASELINES = {"cutpaste": CutPaste, "draem": DraemBlend, "glass": GlassSynthesis}


def make_baseline(name: str, **kwargs):
    """A baseline by name, constructed with `kwargs`; SardInputError for an unknown name."""
    if name not in BASELINES:
        raise SardInputError(f"baseline: '{name}' is unknown; expected one of {', '.join(BASELINES)}")
    return BASELINES[name](**kwargs)


__all__ = ["BASELINES", "CutPaste", "DraemBlend", "GlassSynthesis", "make_baseline"]
