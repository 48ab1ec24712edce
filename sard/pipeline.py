"""SardPipeline: a checkpoint folder in, defect images out.

`SardPipeline.from_pretrained(folder)` rebuilds the generator from `config.json` and loads
`model.safetensors`; `pipe(image, mask, seed=..., defect=...)` runs the RCD sampler on the
region around the mask (ROI) or on the whole image and pastes the result into the input, so
every pixel outside the mask is the input's own, bit for bit. `pipe.batch(jobs, size=N)` synthesizes
many jobs together: regions of one padded size share the network's calls, each job keeping its own
noise (its seed's generator), so a job's result differs from its one-at-a-time result only by the
float rounding of a batched network call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sard.devices import pick_device
from sard.imaging import (as_input_type, colour_mode, fit_scale, from_unit, mask_bbox, prepare_image, prepare_inputs,
                          rescale, rescale_mask, restore_layout, to_unit)
from sard.io import SardInputError
from sard.nets.generator import Generator
from sard.rcd import Frame, paste, rcd_sample
from sard.results import FrameImages, SynthesisResult
from sard.schedule import Schedule
from sard.store.model_folder import CONFIG_NAME, WEIGHTS_NAME, ModelConfig, synthesis_hash
from sard.store.tensors import load_state_checked, load_tensors
from sard.validate import whole_number


def roi_box(mask: np.ndarray, tile: int, margin: int) -> tuple[int, int, int, int]:
    """The mask's bounding box plus `margin` of context, grown to whole tiles of `tile` pixels,
    kept inside the image where the image is large enough."""
    H, W = mask.shape
    top, left, bottom, right = mask_bbox(mask)

    def span(lo: int, hi: int, size: int) -> tuple[int, int]:
        lo, hi = max(0, lo - margin), min(size, hi + margin)
        want = -(-(hi - lo) // tile) * tile
        if want >= size:
            return 0, size
        lo = min(max(0, (lo + hi - want) // 2), size - want)
        return lo, lo + want

    t, b = span(top, bottom, H)
    l, r = span(left, right, W)
    return t, l, b, r


def pad_to_multiple(x: torch.Tensor, m: int, mode: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad [B, C, H, W] at the bottom/right to multiples of m; returns the padded tensor and (H, W)."""
    H, W = x.shape[-2:]
    ph, pw = (-H) % m, (-W) % m
    if ph == 0 and pw == 0:
        return x, (H, W)
    if mode == "reflect" and (ph >= H or pw >= W):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode) if mode != "constant" else F.pad(x, (0, pw, 0, ph)), (H, W)


@dataclass
class _Job:
    """One synthesis job, checked: the caller's image, its pixels, alpha and mask, the defect label, the
    seed, the reverse steps, and the region the network runs on (box, at `scale`) as x0 [1, C, h, w] and
    mk [1, 1, h, w]."""
    image: object
    pixels: np.ndarray
    alpha: np.ndarray | None
    m: np.ndarray
    label: torch.Tensor | None
    seed: int
    steps: int
    box: tuple[int, int, int, int]
    scale: float
    x0: torch.Tensor
    mk: torch.Tensor


class SardPipeline:
    def __init__(self, generator: Generator, schedule: Schedule, config: ModelConfig, device: torch.device,
                 checkpoint_hash: str = ""):
        self.generator = generator.to(device).eval()
        self.schedule = schedule
        self.config = config
        self.device = device
        self.defects: list[str] = list(config.defects)
        self.res: int = config.res
        self.checkpoint_hash = checkpoint_hash

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device | None = None) -> "SardPipeline":
        folder = Path(folder)
        if not folder.is_dir():
            raise SardInputError(f"checkpoint {folder} is not a folder; expected a folder with "
                                 f"{CONFIG_NAME} and {WEIGHTS_NAME}")
        config = ModelConfig.read(folder)
        try:
            gen = Generator(config.generator)
            schedule = Schedule(config.schedule)
        except (TypeError, ValueError) as e:
            raise SardInputError(f"{folder / CONFIG_NAME}: config does not describe a generator ({e})") from None
        load_state_checked(gen, load_tensors(folder / WEIGHTS_NAME), folder / WEIGHTS_NAME)
        return cls(gen.float(), schedule, config, pick_device(device), synthesis_hash(folder, config))

    # -- inputs ---------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        """1: a gray checkpoint, 3: an RGB one."""
        return self.generator.config.image_channels

    def colour_mode(self, image) -> str:
        """What synthesis does to this image's colour: 'rgb' (this RGB checkpoint paints colour),
        'luminance' (this gray checkpoint on a colour image changes luminance and keeps the image's
        own chroma) or 'gray'."""
        return colour_mode(self.channels, prepare_image(image)[0])

    def label_of(self, defect: str | int | None) -> torch.Tensor | None:
        if self.generator.config.num_classes == 0:
            return None
        if defect is None:
            if len(self.defects) == 1:
                return torch.zeros(1, dtype=torch.long, device=self.device)
            raise SardInputError(f"defect: this checkpoint knows {self.defects}; name one")
        if isinstance(defect, (int, np.integer)):
            if not 0 <= defect < len(self.defects):
                raise SardInputError(f"defect: index {defect} out of range 0..{len(self.defects) - 1}")
            return torch.tensor([int(defect)], device=self.device)
        if defect not in self.defects:
            raise SardInputError(f"defect: '{defect}' is not one of this checkpoint's types {self.defects}")
        return torch.tensor([self.defects.index(defect)], device=self.device)

    def scale_for(self, mask: np.ndarray) -> float:
        """The scale synthesis works at in this mask: a checkpoint trained on fit crops
        (config fit_crops > 0) paints a mask too large for its crop at the scale those crops had."""
        if self.config.fit_crops <= 0:
            return 1.0
        return fit_scale(mask, self.res, self.config.fit_min_width)

    # -- synthesis ------------------------------------------------------------------------------
    def _prepare(self, image, mask, seed, defect, steps: int | None, roi: bool, rcd: bool) -> _Job:
        """A job checked and cut to the region the network runs on."""
        seed = whole_number("seed", seed, 0, 2**63 - 1)   # what torch.Generator takes
        pixels, alpha, m = prepare_inputs(image, mask)
        label = self.label_of(defect)
        T = self.schedule.num_steps
        steps = T if steps is None else int(steps)
        if not 1 <= steps <= T:
            raise SardInputError(f"steps: expected 1..{T} (this checkpoint's T), got {steps}")
        scale = self.scale_for(m) if rcd else 1.0
        if roi and rcd:   # scaled: the window a fit crop of this mask covers (context res / 8 at that scale)
            box = roi_box(m, self.res, margin=self.res // 4) if scale == 1 else \
                roi_box(m, 1, margin=int(np.ceil(self.res // 8 / scale)))
        else:  # without RCD the whole image is resampled, so the network must see all of it
            box = (0, 0, m.shape[0], m.shape[1])
        top, left, bottom, right = box
        x0 = to_unit(pixels[top:bottom, left:right], self.channels)[None].to(self.device)
        mk = torch.from_numpy(m[top:bottom, left:right])[None, None].float().to(self.device)
        return _Job(image, pixels, alpha, m, label, int(seed), steps, box, scale, x0, mk)

    def stream(self, image, mask, seed: int = 0, defect: str | int | None = None, steps: int | None = None,
               roi: bool = True, rcd: bool = True, refine: int | None = None) -> Iterator[FrameImages | SynthesisResult]:
        """Yields a FrameImages per reverse step, then the SynthesisResult. A mask painted at a smaller
        scale (scale_for) may get `refine` more reverse steps at native scale, started from the scaled
        result noised to t = refine (default: the checkpoint's, ModelConfig.refine)."""
        t0 = time.perf_counter()
        job = self._prepare(image, mask, seed, defect, steps, roi, rcd)
        refine = whole_number("refine", self.config.refine if refine is None else refine, 0, self.schedule.num_steps)
        rng = torch.Generator(device=self.device).manual_seed(job.seed)
        timed = _TimedGenerator(self.generator, self.device)
        frames, composite, z = [], None, None
        for s, k in [(job.scale, job.steps)] + ([(1.0, refine)] if job.scale < 1 and refine else []):
            start = job.x0 if composite is None else paste(composite, job.x0, job.mk)   # detail pass: from the scaled result
            for fi, composite, z in self._reverse(timed, start, job.mk, s, k, rng, job.label, rcd, z):
                frames.append(fi)
                yield fi
        yield self._result(job, composite[0], frames, rcd, t0, timed)

    def batch(self, jobs: Sequence[tuple], size: int = 8, steps: int | None = None, roi: bool = True,
              rcd: bool = True) -> list[SynthesisResult]:
        """Many (image, mask, seed, defect) jobs at once: regions of one padded size go through the network
        together, at most `size` a call per reverse step, each job drawing its noise from its own seed.
        Results in the order of `jobs`, without frames; timings["batch"] gives the network input's size
        and the jobs (indices into `jobs`, in call order) of each one's call. A job the checkpoint refines
        at native scale (ModelConfig.refine) goes on alone from its batched scaled pass, with its own
        seed's draws and latent, so it is what the job makes on its own."""
        t0 = time.perf_counter()
        size = whole_number("batch", size, 1)
        ready = [self._prepare(image, mask, seed, defect, steps, roi, rcd) for image, mask, seed, defect in jobs]
        results: list[SynthesisResult] = [None] * len(ready)
        inputs = {n: self._network_input(job.x0, job.mk, job.scale) for n, job in enumerate(ready)}
        buckets: dict[tuple[int, ...], list[int]] = {}
        for n, (x0p, _, _) in inputs.items():
            buckets.setdefault(tuple(x0p.shape), []).append(n)
        for shape, members in buckets.items():
            for lo in range(0, len(members), size):
                chunk = members[lo:lo + size]
                timed = _TimedGenerator(self.generator, self.device)
                done = self._sample_together(timed, [ready[n] for n in chunk], [inputs[n] for n in chunk], rcd)
                for n, (composite, rng, z) in zip(chunk, done):
                    if self.config.refine and ready[n].scale < 1:
                        composite = self._refine_alone(timed, ready[n], composite, rng, z, rcd)
                    results[n] = self._result(ready[n], composite, [], rcd, t0, timed, len(chunk),
                                              {"size": len(chunk), "shape": list(shape[-2:]), "members": chunk})
        each = (time.perf_counter() - t0) / max(1, len(results))
        for r in results:   # the call's time, shared
            r.timings["total_s"] = each
        return results

    def _sample_together(self, timed, jobs: list[_Job], inputs: list[tuple], rcd: bool
                         ) -> list[tuple[torch.Tensor, torch.Generator, torch.Tensor]]:
        """One reverse process for jobs whose network inputs (_network_input) have one size: per job, the
        composite [C, h, w] of its region, its generator (drawn as far as its own call draws) and last latent."""
        x0p, mkp = (torch.cat([x[i] for x in inputs]) for i in (0, 1))
        labels = None if jobs[0].label is None else torch.cat([job.label for job in jobs])
        rngs = [torch.Generator(device=self.device).manual_seed(job.seed) for job in jobs]
        *_, last = rcd_sample(timed, self.schedule, x0p, mkp, self.generator.config.nz, rngs, labels, rcd,
                              start_step=jobs[0].steps, z_carry=self.config.z_carry)
        return [(native(last.composite[b:b + 1])[0], rngs[b], last.z[b:b + 1])
                for b, (_, _, native) in enumerate(inputs)]

    def _refine_alone(self, timed, job: _Job, composite: torch.Tensor, rng, z: torch.Tensor, rcd: bool) -> torch.Tensor:
        """The native-scale refine pass (stream's second pass) of one job from its scaled composite [C, h, w]."""
        start = paste(composite[None], job.x0, job.mk)
        *_, (last, native) = self._steps(timed, start, job.mk, 1.0, self.config.refine, rng, job.label, rcd, z)
        return native(last.composite)[0]   # no pictures: a batch keeps no frames

    def _network_input(self, x0: torch.Tensor, mk: torch.Tensor, scale: float
                       ) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The region x0 [1, C, h, w] (mask mk) as the network takes it: at `scale` of its size, padded to
        the generator's stride; and the map from the network's size back to the region's (which adds
        ModelConfig.part_grain of the region's own band finer than that scale)."""
        h, w = x0.shape[-2:]
        band = None
        if scale < 1:   # the scale the checkpoint's fit crops trained at; the mask covers every native pixel
            small = (max(1, round(h * scale)), max(1, round(w * scale)))
            if self.config.part_grain:   # the part's detail finer than `small` holds, which the painting cannot
                band = self.config.part_grain * (x0 - rescale(rescale(x0, small), (h, w)))
            x0, mk = rescale(x0, small), rescale_mask(mk, small, cover=True)
        stride = self.generator.config.stride
        x0p, (hs, ws) = pad_to_multiple(x0, stride, "reflect")
        mkp, _ = pad_to_multiple(mk, stride, "constant")
        native = (lambda x: rescale(x[..., :hs, :ws], (h, w))) if scale < 1 else (lambda x: x[..., :h, :w])
        return x0p, mkp, native if band is None else (lambda x: native(x) + band)

    def _steps(self, timed, x0: torch.Tensor, mk: torch.Tensor, scale: float, steps: int, rng, label, rcd: bool,
               z_prev: torch.Tensor | None = None) -> Iterator[tuple[Frame, Callable[[torch.Tensor], torch.Tensor]]]:
        """One reverse process on the region x0 [1, C, h, w] (mask mk) run at `scale` of its size: each
        step's Frame at the network's size and the map back to the region's. z_prev: the previous pass's
        last latent, kept as ModelConfig.refine_carry says (the refine pass refines, not redraws)."""
        x0p, mkp, native = self._network_input(x0, mk, scale)
        for fr in rcd_sample(timed, self.schedule, x0p, mkp, self.generator.config.nz, rng, label, rcd,
                             start_step=steps, z_carry=self.config.z_carry, z_prev=z_prev, keep=self.config.refine_carry):
            yield fr, native

    def _reverse(self, timed, x0: torch.Tensor, mk: torch.Tensor, scale: float, steps: int, rng, label, rcd: bool,
                 z_prev: torch.Tensor | None = None) -> Iterator[tuple[FrameImages, torch.Tensor, torch.Tensor]]:
        """_steps with each step's pictures: yields them, the composite at the region's own size and the latent."""
        for fr, native in self._steps(timed, x0, mk, scale, steps, rng, label, rcd, z_prev):
            x_t, composite = native(fr.x_t)[0], native(fr.composite)
            lo, hi = float(x_t.min()), float(x_t.max())
            yield FrameImages(fr.step, _picture(2 * (x_t - lo) / max(hi - lo, 1e-6) - 1), _picture(native(fr.x0_hat)[0]),
                              _picture(composite[0]), (lo, hi), scale), composite, fr.z

    def __call__(self, image, mask, seed: int = 0, defect: str | int | None = None, steps: int | None = None,
                 roi: bool = True, rcd: bool = True, refine: int | None = None) -> SynthesisResult:
        *_, result = self.stream(image, mask, seed, defect, steps, roi, rcd, refine)
        return result

    def _result(self, job: _Job, composite: torch.Tensor, frames: list[FrameImages], rcd: bool, t0: float, timed,
                share: int = 1, batch: dict | None = None) -> SynthesisResult:
        """The job's SynthesisResult from its region's composite [C, h, w]; the `share` jobs of a batched
        call split the time of its network calls."""
        out = self._paste(job.pixels, job.m, composite, job.box, rcd)
        result_image = as_input_type(job.image, out, job.alpha)
        top, left, bottom, right = job.box
        timings = {"total_s": time.perf_counter() - t0, "network_s": timed.seconds / share,
                   "network_calls": timed.calls, "roi": list(job.box), "roi_pixels": (bottom - top) * (right - left),
                   "scale": job.scale, **({"batch": batch} if batch else {})}
        return SynthesisResult(result_image, job.m.astype(np.uint8) * 255, frames, job.box, timings,
                               self.defects[int(job.label)] if job.label is not None else None, job.seed,
                               colour_mode(self.channels, job.pixels))

    def _paste(self, pixels: np.ndarray, m: np.ndarray, composite: torch.Tensor, box, rcd: bool) -> np.ndarray:
        """The synthesized region, in the input's dtype and channels, pasted over a copy of the input."""
        top, left, bottom, right = box
        if not rcd:  # plain DDGAN: the whole image is the network's
            return restore_layout(from_unit(composite, pixels.dtype), pixels)
        synth = restore_layout(from_unit(composite, pixels.dtype), pixels[top:bottom, left:right])
        out = pixels.copy()
        region = out[top:bottom, left:right]
        sel = m[top:bottom, left:right]
        region[sel] = synth[sel]
        return out

def _picture(x: torch.Tensor) -> np.ndarray:
    """[C, h, w] in [-1, 1] -> uint8 [h, w] or [h, w, 3] for display."""
    a = from_unit(x, np.uint8)
    return a[..., 0] if a.shape[2] == 1 else a


class _TimedGenerator:
    """Wraps G to count its evaluations and the seconds spent in them (for the speed report)."""

    def __init__(self, generator: Generator, device: torch.device):
        self.generator, self.device = generator, device
        self.seconds, self.calls = 0.0, 0

    def __call__(self, *args):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.generator(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out.float()
