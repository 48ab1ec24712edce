"""The studio's synthesis callbacks: a run of variations (made by sard.variations), the results shown
full size beside the input, and the step-through of SARD's reverse process."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

from sard.io import SardInputError, png_bytes, read_image
from sard.pairs import safe_name
from sard.synthesizers import LABELS, METHODS, Synthesizer
from sard.validate import seed as check_seed, whole_number
from sard.variations import Progress, variations as make_variations
from ui.files import Published
from ui.messages import user_error, user_errors
from ui.pictures import fit_display, heat_map, screen, x0_change_map, x0_changes, zoom
from ui.session import Session, Variation

if TYPE_CHECKING:      # the studio's SARD synthesizer carries it (sard.synthesizers builds it)
    from sard.pipeline import SardPipeline

METHOD_LABELS = {LABELS[m]: m for m in METHODS}    # what the method radio shows -> the registry's name
COMPARE_SIDE = 4096    # the before/after view: full resolution up to this side
NO_RESULTS = "No results yet."
STARTING = "Synthesizing: starting ..."          # shown by the browser at the click
STARTED = "Synthesizing: started; the bar on the results follows the first variation."


class Synthesis:
    """Part of ui.actions.Studio: synthesis with the studio's synthesizers, and the views of its results."""
    pipe: SardPipeline
    synthesizers: dict[str, Synthesizer]
    defects: list[str]
    files: Published

    def cleared_run(self, session: Session, status: str = "") -> tuple:
        """RUN outputs before a run: results, full-resolution results, status, compare, result download,
        real examples left as they are, and the step-through views empty."""
        session.variations, session.selected = [], 0
        return ([], [], status, None, gr.update(value=None, interactive=False, label="Download result"),
                *self.step_view(0, None, session))

    def begin_run(self, value, feather_px: float, session: Session):
        """Synthesize pressed: the wait starts (the status counts from here), the editor's current layer
        becomes the mask (a stroke's change event may still be queued) and the last run's results go;
        the status says the run started, never blank until the first variation is done. Outputs:
        mask, overlay, session, *RUN."""
        session.pressed = time.monotonic()
        mask, over, session = self.mask_from_editor(value, feather_px, session)
        return (mask, over, session, *self.cleared_run(session, STARTED))

    def synthesize(self, image_path, mask, method: str, defect: str | None, seed: float, variations: float,
                   rcd: bool, feather_px: float, session: Session, progress=gr.Progress()):
        """/synthesize: `variations` results (seeds seed, seed+1, ...) streamed as they are computed.
        Each update: the display copies, the status, the full-resolution results (PNG, the input's size)."""
        method, n, seed, fpx, image, m = self.run_inputs(image_path, mask, method, defect, seed, variations,
                                                         feather_px)
        same = session.mask is not None and np.array_equal(session.mask, m)
        mask_params = session.mask_params if same else {"kind": "uploaded"}
        if session.image is None or session.image.shape != image.shape or not np.array_equal(session.image, image):
            session.new_image(self.source_of(image_path, image), image, fit_display(image)[1])
            session.mask, session.mask_params = m, mask_params
        session.variations, session.selected = [], 0
        pressed, session.pressed = session.pressed or time.monotonic(), None   # the API: from this call
        made = make_variations(self.synthesizers[method], image, m, defect=defect, seed=seed, count=n, rcd=rcd,
                               feather_px=fpx, source=session.source, mask_params=mask_params)
        with user_errors():
            for item in made:
                if isinstance(item, Progress):
                    progress(item.fraction, desc=f"variation {item.variation}/{item.variations}")
                    continue
                s, result = item.settings["seed"], item.result
                name = f"{Path(session.source).stem}_{method}_{safe_name(defect, 'defect')}_seed{s}.png"
                file = self.files.bytes(png_bytes(item.image), name)     # written once, under its own name
                session.variations.append(Variation(item.image, np.asarray(result.mask), result.frames, result.roi,
                                                    item.settings, file))
                yield (self._results(session), f"{len(session.variations)}/{n} done, "
                       f"{time.monotonic() - pressed:.1f} s since Synthesize "
                       f"({item.settings['seconds']:.2f} s computing this one)",
                       [(v.file, f"#{i} seed {v.settings['seed']}") for i, v in enumerate(session.variations)],
                       session)

    def run_inputs(self, image_path, mask, method, defect, seed, variations, feather_px) -> tuple:
        """synthesize's inputs checked: method name, variations, seed, feather, the image, the mask (bool)."""
        if not image_path:
            raise user_error("Load a normal part image first.")
        if mask is None:
            raise user_error("Paint a mask, press Random mask or upload a mask first.")
        method = METHOD_LABELS.get(method, method)
        if method not in METHOD_LABELS.values():
            raise user_error(f"method '{method}': expected one of {', '.join(METHOD_LABELS)}")
        if defect not in self.defects:
            raise user_error(f"defect '{defect}': expected one of {self.defects}")
        with user_errors(image_path):
            n = whole_number("variations", variations, 1, 16)
            seed = check_seed("seed", seed)
            fpx = whole_number("feather", feather_px or 0, 0, 256)
            image = read_image(image_path, alpha=True)     # an alpha channel comes back in the results
            m = np.asarray(mask)
            m = (m.any(axis=2) if m.ndim == 3 else m) > 0
            if m.shape != image.shape[:2]:
                raise SardInputError(f"mask: {m.shape[1]}x{m.shape[0]} does not match the image's "
                                     f"{image.shape[1]}x{image.shape[0]}")
        return method, n, seed, fpx, image, m

    def _results(self, session: Session) -> list[tuple[np.ndarray, str]]:
        return [(screen(v.image), f"#{i} seed {v.settings['seed']}") for i, v in enumerate(session.variations)]

    @staticmethod
    def cancelled() -> str:
        return "Cancelled: the results so far stay; press Synthesize to run again."

    @staticmethod
    def new_seed() -> int:
        return int(np.random.default_rng().integers(0, 2**31 - 1))

    def select(self, evt: gr.SelectData, session: Session):
        """A result picked. Outputs: selected, compare, result download, *VIEWS."""
        session.selected = int(evt.index)
        return (session.selected, *self.result_view(session.selected, session), *self.step_view(session.selected,
                                                                                                   None, session))

    def result_view(self, index, session: Session):
        """Before / after at full size, and the result's download. Outputs: compare, result download."""
        if not session.variations or session.image is None:
            return None, gr.update(value=None, interactive=False, label="Download result")
        index = min(max(int(index or 0), 0), len(session.variations) - 1)
        v = session.variations[index]
        pair = (screen(session.image, COMPARE_SIDE), screen(v.image, COMPARE_SIDE))
        return pair, gr.update(value=v.file, interactive=True, label=f"Download #{index} (full resolution PNG)")

    def step_view(self, index, step, session: Session):
        """One reverse step of a variation (step counts 1..n as the caption does). Outputs (VIEWS): step
        slider, caption, x_t, predicted x0, its change from the previous step, composite, |output - input|."""
        if not session.variations:
            return gr.update(visible=False, value=1, maximum=2), NO_RESULTS, None, None, None, None, None
        index = min(max(int(index or 0), 0), len(session.variations) - 1)
        v = session.variations[index]
        out_heat = heat_map(v.image, session.image, v.mask) if session.image is not None else None
        if not v.frames:
            return (gr.update(visible=False), f"{v.settings['method']}: training-free, no reverse steps to show.",
                    None, None, None, screen(v.image), out_heat)
        n = len(v.frames)
        k = n - 1 if step is None else min(max(int(step) - 1, 0), n - 1)
        f = v.frames[k]
        top, left, bottom, right = v.roi
        changes = x0_changes(v.frames, v.mask[top:bottom, left:right] > 0)
        per_step = ", ".join("-" if c is None else f"{c:.3f}" for c in changes)
        change = "" if changes[k] is None else f" It changed by {changes[k]:.3f} from the previous step."
        region = f"{right - left}x{bottom - top} px" if f.scale == 1 else \
            (f"{right - left}x{bottom - top} px painted at {f.scale:.2f} of its size, the scale of the crops the model "
             f"learnt masks this large from; shown at full size")
        if f.scale == 1 and v.frames[0].scale < 1:   # the checkpoint's refine (ModelConfig.refine)
            region += (f", at native scale: a refine step that paints the image's own fine grain into the fill "
                       f"painted at {v.frames[0].scale:.2f} of its size")
        caption = (f"**Reverse step {k + 1}/{n}** (x_t at t = {f.step + 1} of {self.pipe.schedule.num_steps}; network "
                   f"region {region}). x_t as the network sees it: values {f.x_t_range[0]:.2f} "
                   f"to {f.x_t_range[1]:.2f}, shown black to white. Mean |change of the predicted x0| inside the mask "
                   f"(fraction of the full range), per step: {per_step}.{change}")
        dx0 = x0_change_map(v.frames, k)
        return (gr.update(visible=True, minimum=1, maximum=max(2, n), value=k + 1, interactive=n > 1), caption,
                zoom(f.x_t), zoom(f.x0_hat), None if dx0 is None else zoom(dx0), zoom(f.composite), out_heat)
