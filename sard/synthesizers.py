"""Every synthesis method by name, built one way: SARD checkpoints and the training-free baselines,
all called as `synth(image, mask, seed=, defect=) -> SynthesisResult`, each with the parameters a
manifest records to build it again. Export, the benchmarks, realism, the bench and the studio
take their methods from here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sard.baselines import BASELINES, make_baseline
from sard.io import SardInputError
from sard.pipeline import SardPipeline
from sard.results import SynthesisResult
from sard.store.model_folder import DEFAULT_CHECKPOINT, resolve_checkpoint, sampler_of, synthesis_hash

SARD = "sard"
METHODS = (SARD, *BASELINES)
LABELS = {"sard": "SARD", "cutpaste": "CutPaste", "draem": "DRAEM", "glass": "GLASS"}
TEXTURED = ("draem", "glass")      # baselines that take anomaly textures from other images


@dataclass
class Synthesizer:
    name: str                      # a method of METHODS, or any label of a SARD checkpoint (ddgan, w_rcd, ...)
    params: dict                   # what the manifest records to build it again
    run: Callable[..., SynthesisResult]
    pipeline: SardPipeline | None = None
    run_batch: Callable[..., list[SynthesisResult]] | None = None   # SARD: jobs sharing the network's calls

    def __call__(self, image, mask, seed: int = 0, defect: str | None = None) -> SynthesisResult:
        return self.run(image, mask, seed, defect)

    def batch(self, jobs: list[tuple], size: int) -> list[SynthesisResult]:
        """Each (image, mask, seed, defect) job's result: SARD at most `size` jobs a network call
        (SardPipeline.batch), a baseline or size 1 one job at a time, as __call__."""
        if self.run_batch is None or size == 1:
            return [self(*job) for job in jobs]
        return self.run_batch(jobs, size)

    @property
    def defects(self) -> list[str]:
        """The defect types a SARD checkpoint was trained on; [] for a baseline (any name goes)."""
        return self.pipeline.defects if self.pipeline is not None else []


def defect_label(pipe: SardPipeline, defect: str | None) -> str | None:
    """The type a checkpoint is asked for: its own type by name; a single-type (or unconditional) one
    paints whatever folder name it is given; a multi-type one refuses a name it does not know."""
    return defect if defect in pipe.defects or len(pipe.defects) > 1 else None


def build(method: str, checkpoint: str | Path | None = None, *, steps: int | None = None, roi: bool | None = None,
          rcd: bool | None = None, texture_dir: str | Path | None = None, sources: list | None = None,
          device=None, sampler: dict | None = None) -> Synthesizer:
    """`method`: a baseline, "sard" (default checkpoint unless one is given) or any label with a
    checkpoint. rcd / roi None: as the checkpoint was trained (an ablation without RCD resamples
    the whole image); sampler None: the checkpoint's (ModelConfig.sampler), else those choices."""
    if method in BASELINES:
        textured = method in TEXTURED
        base = make_baseline(method, **({"texture_dir": texture_dir, "sources": sources} if textured else {}))
        params = {"texture_dir": str(texture_dir) if texture_dir else None,
                  "sources": len(sources) if sources and textured else 0}
        return Synthesizer(method, params, lambda image, mask, seed, defect: base(image, mask, seed=seed, defect=defect))
    if checkpoint is None and method != SARD:
        raise SardInputError(f"method '{method}': expected one of {', '.join(METHODS)}, or NAME=CHECKPOINT_DIR "
                             f"for a SARD checkpoint")
    folder = resolve_checkpoint(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    pipe = SardPipeline.from_pretrained(folder, device=device)
    if sampler is not None and sampler != pipe.config.sampler:   # a pair made before the folder's sampler changed
        pipe.config = dataclasses.replace(pipe.config, **sampler)
        pipe.checkpoint_hash = synthesis_hash(folder, pipe.config)
    rcd = pipe.config.rcd if rcd is None else rcd
    roi = rcd if roi is None else roi
    params = {"checkpoint": str(folder), "checkpoint_hash": pipe.checkpoint_hash, "defects": pipe.defects,
              "steps": steps or pipe.schedule.num_steps, "roi": roi, "rcd": rcd}

    def run(image, mask, seed, defect):
        return pipe(image, mask, seed=seed, defect=defect_label(pipe, defect), steps=steps, roi=roi, rcd=rcd)

    def run_batch(jobs, size):
        return pipe.batch([(image, mask, seed, defect_label(pipe, defect)) for image, mask, seed, defect in jobs],
                          size, steps=steps, roi=roi, rcd=rcd)
    return Synthesizer(method, params, run, pipe, run_batch)


def from_record(record: dict, checkpoint: str | Path | None = None, texture_dir=None, sources: list | None = None,
                device=None) -> Synthesizer:
    """The synthesizer a manifest line was made with (its method and method_params)."""
    mp = record["method_params"]
    made_with = mp.get("checkpoint_hash")
    return build(record["method"], checkpoint or mp.get("checkpoint"), steps=mp.get("steps"),
                 roi=mp.get("roi", True), rcd=mp.get("rcd", True), texture_dir=texture_dir, sources=sources,
                 device=device, sampler=sampler_of(made_with) if made_with else None)
