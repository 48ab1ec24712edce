"""The studio's callbacks: plain Python on numpy arrays and the sard library, no layout.

`Studio` holds what every session shares (the model, the baselines, the mask bank, the export
root); each callback takes and returns a per-session `Session`. Errors the engineer can fix come
back as gr.Error with the library's message (ui.messages). Outputs are tuples in the order the
layout wires them (ui.layout names each group).
"""
from __future__ import annotations

import hashlib
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from sard.baselines import make_baseline
from sard.data import list_dataset, split_defects
from sard.io import SardInputError, png_bytes, read_image, read_mask, strict_mask
from sard.masks import MASK_KINDS, MaskBank, feather, feather_weights, grow_mask, random_mask, read_bank
from sard.pairs import PairWriter, safe_name
from sard.pipeline import SardPipeline
from sard.validate import seed as check_seed, whole_number
from ui.messages import count, user_error, user_errors
from ui.pictures import (display_rgb, editor_mask, example_crop, fit_display, heat_map, mask_layer, screen, tint,
                         to_display_mask, x0_change_map, x0_changes, zoom)
from ui.session import Session, Variation

METHODS = {"SARD": "sard", "CutPaste": "cutpaste", "DRAEM": "draem", "GLASS": "glass"}
MASK_LABELS = {"Perlin": "perlin", "Ellipse": "ellipse", "Scratch": "scratch", "Polygon": "polygon",
               "Real-mask bank": "bank"}
BRUSH_RGB = "#ff3030"
COMPARE_SIDE = 4096    # the before/after view: full resolution up to this side
EXAMPLES = 8           # real defects shown beside the results
NO_RESULTS = "No results yet."


def pixels_digest(a: np.ndarray) -> str:
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


def colour_note(channels: int) -> str:
    """What the loaded checkpoint does to gray and colour images, in words."""
    if channels == 3:
        return "RGB checkpoint: paints colour; on a gray image it synthesizes in colour and returns the result's gray"
    return "gray checkpoint: on a colour image it changes luminance and keeps the image's own colour"


def edited(params: dict | None, edit: str) -> dict:
    """mask_params after a dilate/erode: what it started from and the edits, in order."""
    if params and params.get("kind") == "edited":
        return {**params, "edits": params["edits"] + [edit]}
    return {"kind": "edited", "from": params, "edits": [edit]}


class Studio:
    def __init__(self, checkpoint: Path, export_root: Path, data: Path | None = None, device: str | None = None):
        self.pipe = SardPipeline.from_pretrained(checkpoint, device=device)
        self.checkpoint = Path(checkpoint)
        self.defects = self.pipe.defects or ["synthetic"]
        self.export_root = Path(export_root)
        self.normals: list[Path] = []
        self.defect_samples: dict[str, list] = {}      # real defects of the data set, by type
        self.bank: MaskBank | None = None
        self.data = Path(data) if data else None
        self.picked: dict[str, Path] = {}   # pixels of a gallery pick -> its data set file
        self._examples: dict[str, list] = {}
        if self.data is not None:
            samples = list_dataset(self.data)
            self.normals = [s.image for s in samples if s.is_normal and s.split == "train"] or \
                           [s.image for s in samples if s.is_normal]
            for s in samples:
                if not s.is_normal:
                    self.defect_samples.setdefault(s.defect, []).append(s)
            synth = split_defects(samples, self.pipe.config.split_seed).synth
            bank = MaskBank.from_samples(synth, f"real masks of {self.data.name}'s training third")
            self.bank = bank if len(bank) else None
        if self.bank is None:     # no data set (or one without masks): the checkpoint's own bank
            self.bank = read_bank(self.checkpoint)
        self.baselines = {"cutpaste": make_baseline("cutpaste"),
                          "draem": make_baseline("draem", sources=self.normals[:50] or None),
                          "glass": make_baseline("glass", sources=self.normals[:50] or None)}

    # -- the normal image ---------------------------------------------------------------------------
    def gallery_items(self, limit: int = 48) -> list[tuple[np.ndarray, str]]:
        items = []
        for p in self.normals[:limit]:
            try:
                items.append((screen(read_image(p), 160), p.name))
            except SardInputError:
                continue
        return items

    def pick_normal(self, evt: gr.SelectData) -> str:
        """A gallery pick becomes the image input: a lossless copy in the temp folder Gradio serves
        (the data set may lie outside what it serves); its pixels remember the real file."""
        path = self.normals[evt.index]
        with user_errors():
            a = read_image(path)
        self.picked[pixels_digest(a)] = path.resolve()
        out = Path(tempfile.mkdtemp(prefix="sard-pick-")) / f"{path.stem}.png"
        out.write_bytes(png_bytes(a))
        return str(out)

    def source_of(self, path: str, image: np.ndarray) -> str:
        """The absolute path the image came from: the data set file of a gallery pick, else the upload."""
        picked = self.picked.get(pixels_digest(image)) if self.picked else None
        return str(picked or Path(path).resolve())

    def load_image(self, path: str | None, session: Session):
        """New image: full resolution into the session, a display copy into the editor; the last
        run's results go. Outputs: editor, overlay, mask, info, session, *RUN."""
        if not path:
            session.image = None
            return (gr.update(value=None), None, None, "Load a normal part image to begin.", session,
                    *self.cleared_run(session))
        with user_errors(path):
            a = read_image(path)
        disp, scale = fit_display(display_rgb(a))
        session.new_image(self.source_of(path, a), a, scale)
        h, w = a.shape[:2]
        colour = {"rgb": " (SARD paints colour)", "luminance": " (gray model: SARD changes luminance, keeps its colour)",
                  "gray": " (RGB model: SARD synthesizes in colour, the result is its gray)" if self.pipe.channels == 3
                  else ""}[self.pipe.colour_mode(a)]
        note = f"{Path(session.source).name}: {w}x{h}, {'16' if a.dtype == np.uint16 else '8'}-bit, " \
               f"{'colour' if a.ndim == 3 else 'gray'}{colour}" + (f"; shown at {scale:.0%}" if scale < 1 else "")
        return ({"background": disp, "layers": [], "composite": None}, disp, None, note, session,
                *self.cleared_run(session))

    # -- masks --------------------------------------------------------------------------------------
    def random_mask(self, image_path: str | None, kind: str, area_min: float, area_max: float, seed: float,
                    defect: str | None, session: Session):
        """/random_mask: a mask (uint8 0/255, the image's full size) from a generator, an area range (percent
        of the image) and a seed; the session remembers its parameters for the manifest."""
        if not image_path:
            raise user_error("Load a normal part image first: the mask takes its size.")
        kind = MASK_LABELS.get(kind, kind)
        if kind not in MASK_KINDS:
            raise user_error(f"mask generator '{kind}': expected one of {', '.join(MASK_LABELS)}")
        if kind == "bank" and self.bank is None:
            raise user_error(f"The real-mask bank: {self.checkpoint.name} carries none and no data set was given; "
                             f"start the studio with --data DATASET_ROOT, or give the checkpoint its bank with "
                             f"python -m sard.export --write-bank CHECKPOINT --data DATASET_ROOT.")
        with user_errors(image_path):
            seed = check_seed("seed", seed)
            a = read_image(image_path)
            bank_defect = defect if self.bank is not None and defect in self.bank.defects else None
            area = None if kind == "bank" else (float(area_min) / 100, float(area_max) / 100)
            m, params = random_mask(kind, a.shape[:2], seed, area, bank=self.bank, defect=bank_defect)
        session.set_mask(m, params)
        return m, session

    def upload_mask(self, path: str | None, session: Session):
        """A mask PNG of the image's size, used as it is. Outputs: mask, session."""
        if session.image is None:
            raise user_error("Load a normal part image first: the mask must have its size.")
        if not path:
            return gr.update(), session
        name = Path(path).name
        with user_errors(path, name):
            m = strict_mask(read_image(path), name, session.image.shape[:2])
        session.set_mask(m, {"kind": "uploaded", "file": name})
        return m.astype(np.uint8) * 255, session

    def grow(self, px: float, sign: int, session: Session):
        """Dilate (sign 1) or erode (sign -1) the current mask by px image pixels. Outputs: mask, session."""
        if session.mask is None:
            raise user_error("Paint a mask, draw a random one or upload one first.")
        with user_errors():
            px = whole_number("pixels", px, 1, 256)
        m = grow_mask(session.mask, sign * px)
        if not m.any():
            raise user_error(f"Eroding by {count(px, 'pixel')} leaves nothing of the mask; erode less.")
        session.set_mask(m, edited(session.mask_params, f"{'dilate' if sign > 0 else 'erode'} {px}"))
        return m.astype(np.uint8) * 255, session

    def dilate(self, px: float, session: Session):
        return self.grow(px, 1, session)

    def erode(self, px: float, session: Session):
        return self.grow(px, -1, session)

    def show_mask(self, feather_px: float, session: Session):
        """The session's new mask into the editor as the layer strokes add to, and the overlay."""
        if session.image is None:
            return gr.update(), None, session
        disp = screen(session.image)
        layers = [] if session.base is None else [mask_layer(to_display_mask(session.base, disp.shape[:2]))]
        return {"background": disp, "layers": layers, "composite": None}, self.overlay(feather_px, session), session

    def clear_mask(self, feather_px: float, session: Session):
        """Clear mask: the editor keeps the image. Outputs: editor, overlay, mask, session."""
        session.set_mask(None, None)
        return (*self.show_mask(feather_px, session)[:2], None, session)

    def mask_from_editor(self, value, feather_px: float, session: Session):
        """The editor's layer -> the full-resolution mask. Strokes add to the mask the server put there
        (union), the eraser removes from it; the rest of that mask keeps its full-resolution pixels.
        Outputs: mask, overlay, session."""
        if session.image is None:
            return None, None, session
        H, W = session.image.shape[:2]
        m_disp = editor_mask(value)
        if m_disp is None or not m_disp.any():
            session.mask = session.mask_params = None
            return None, self.overlay(feather_px, session), session
        if session.base is None:
            full, params = to_display_mask(m_disp, (H, W)), {"kind": "painted"}
        else:
            base_disp = to_display_mask(session.base, m_disp.shape)
            if np.array_equal(base_disp, m_disp):
                full, params = session.base, session.base_params
            else:
                erased, added = base_disp & ~m_disp, m_disp & ~base_disp
                full = (session.base & ~to_display_mask(erased, (H, W))) | to_display_mask(added, (H, W))
                params = {"kind": "painted", "on": session.base_params}
        session.mask, session.mask_params = full, params
        return full.astype(np.uint8) * 255, self.overlay(feather_px, session), session

    def overlay(self, feather_px: float, session: Session) -> np.ndarray | None:
        """The image with the mask tinted in, the feather as a fading tint."""
        if session.image is None:
            return None
        disp = screen(session.image)
        if session.mask is None:
            return disp
        w = feather_weights(session.mask, float(feather_px or 0))
        return tint(disp, cv2.resize(w, (disp.shape[1], disp.shape[0]), interpolation=cv2.INTER_AREA))

    @staticmethod
    def brush(size: float):
        """The brush and eraser at `size` display pixels."""
        size = max(1, int(size))
        return gr.update(brush=gr.Brush(colors=[BRUSH_RGB], default_color=BRUSH_RGB, color_mode="fixed",
                                        default_size=size), eraser=gr.Eraser(default_size=size))

    # -- synthesis ----------------------------------------------------------------------------------
    def cleared_run(self, session: Session) -> tuple:
        """RUN outputs before a run: results, full-resolution results, status, compare, result download,
        real examples left as they are, and the step-through views empty."""
        session.variations, session.selected = [], 0
        return ([], [], "", None, gr.update(value=None, interactive=False, label="Download result"),
                *self.step_view(0, None, session))

    def begin_run(self, value, feather_px: float, session: Session):
        """Synthesize pressed: the editor's current layer becomes the mask (a stroke's change event may
        still be queued) and the last run's results and status go. Outputs: mask, overlay, session, *RUN."""
        mask, over, session = self.mask_from_editor(value, feather_px, session)
        return (mask, over, session, *self.cleared_run(session))

    def synthesize(self, image_path, mask, method: str, defect: str | None, seed: float, variations: float,
                   rcd: bool, feather_px: float, session: Session, progress=gr.Progress()):
        """/synthesize: `variations` results (seeds seed, seed+1, ...) streamed as they are computed.
        Each update: the display copies, the status, the full-resolution results (PNG, the input's size)."""
        if not image_path:
            raise user_error("Load a normal part image first.")
        if mask is None:
            raise user_error("Paint a mask, press Random mask or upload a mask first.")
        method = METHODS.get(method, method)
        if method not in METHODS.values():
            raise user_error(f"method '{method}': expected one of {', '.join(METHODS)}")
        if defect not in self.defects:
            raise user_error(f"defect '{defect}': expected one of {self.defects}")
        with user_errors(image_path):
            n = whole_number("variations", variations, 1, 16)
            seed = check_seed("seed", seed)
            fpx = whole_number("feather", feather_px or 0, 0, 256)
            image = read_image(image_path)
            m = np.asarray(mask)
            m = (m.any(axis=2) if m.ndim == 3 else m) > 0
            if m.shape != image.shape[:2]:
                raise SardInputError(f"mask: {m.shape[1]}x{m.shape[0]} does not match the image's "
                                     f"{image.shape[1]}x{image.shape[0]}")
        same = session.mask is not None and np.array_equal(session.mask, m)
        mask_params = session.mask_params if same else {"kind": "uploaded"}
        if session.image is None or session.image.shape != image.shape or not np.array_equal(session.image, image):
            session.new_image(self.source_of(image_path, image), image, fit_display(image)[1])
            session.mask, session.mask_params = m, mask_params
        session.variations, session.selected = [], 0
        weights = feather_weights(m, fpx) if fpx else None
        label = defect if self.pipe.generator.config.num_classes else None
        steps_total = n * (self.pipe.schedule.num_steps if method == "sard" else 1)
        run_dir = Path(tempfile.mkdtemp(prefix="sard-results-"))
        done = 0
        for k in range(n):
            s = seed + k
            t0 = time.perf_counter()
            with user_errors():
                if method == "sard":
                    for item in self.pipe.stream(image, m, seed=s, defect=label, rcd=bool(rcd)):
                        done += 1 if not hasattr(item, "image") else 0
                        progress(min(done, steps_total) / steps_total, desc=f"variation {k + 1}/{n}")
                    result = item
                else:
                    result = self.baselines[method](image, m, seed=s, defect=defect)
                    done += 1
                    progress(done / steps_total, desc=f"variation {k + 1}/{n}")
            out = np.asarray(result.image)
            if weights is not None:
                out = feather(out, image, weights)
            settings = {"method": method, "defect": defect, "seed": s, "rcd": bool(rcd) if method == "sard" else None,
                        "steps": self.pipe.schedule.num_steps if method == "sard" else None,
                        "checkpoint": self.pipe.checkpoint_hash if method == "sard" else None,
                        "source": session.source, "mask_params": mask_params, "feather": fpx, "colour": result.colour,
                        "seconds": round(time.perf_counter() - t0, 3)}
            file = run_dir / f"{Path(session.source).stem}_{method}_{safe_name(defect, 'defect')}_seed{s}.png"
            file.write_bytes(png_bytes(out))
            session.variations.append(Variation(out, np.asarray(result.mask), result.frames, result.roi, settings,
                                                str(file)))
            yield (self._results(session), f"{k + 1}/{n} done ({settings['seconds']:.2f} s for this one)",
                   [(v.file, f"#{i} seed {v.settings['seed']}") for i, v in enumerate(session.variations)], session)

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
        caption = (f"**Reverse step {k + 1}/{n}** (x_t at t = {f.step + 1} of {self.pipe.schedule.num_steps}; network "
                   f"region {region}). x_t as the network sees it: values {f.x_t_range[0]:.2f} "
                   f"to {f.x_t_range[1]:.2f}, shown black to white. Mean |change of the predicted x0| inside the mask "
                   f"(fraction of the full range), per step: {per_step}.{change}")
        dx0 = x0_change_map(v.frames, k)
        return (gr.update(visible=True, minimum=1, maximum=max(2, n), value=k + 1, interactive=n > 1), caption,
                zoom(f.x_t), zoom(f.x0_hat), None if dx0 is None else zoom(dx0), zoom(f.composite), out_heat)

    # -- real examples ------------------------------------------------------------------------------
    def examples(self, defect: str | None):
        """Real defects of this type from the data set, cropped around their masks (the gallery's value)."""
        if defect not in self._examples:
            items = []
            samples = self.defect_samples.get(defect, [])
            for s in samples[:: max(1, len(samples) // EXAMPLES)][:EXAMPLES]:
                try:
                    items.append((example_crop(read_image(s.image), read_mask(s.mask)), Path(s.image).name))
                except SardInputError:
                    continue
            self._examples[defect] = items
        return self._examples[defect]

    def examples_view(self, defect: str | None):
        items = self.examples(defect)
        label = (f"Real {defect} defects from {self.data.name} (compare)" if items else
                 f"No real {defect} defects in {self.data.name if self.data else 'the data set'}")
        return gr.update(value=items, label=label)

    # -- curation and export ------------------------------------------------------------------------
    def keep(self, index, session: Session):
        """/keep: add a result to this session's curated set."""
        if not session.variations:
            raise user_error("Nothing to keep yet: synthesize first.")
        index = int(index if index is not None else session.selected)
        if not 0 <= index < len(session.variations):
            raise user_error(f"index {index}: expected 0..{len(session.variations) - 1}")
        session.curated.append(session.variations[index])
        return self._curated(session), self._count(session), session

    def keep_all(self, session: Session):
        """/keep_all: add every result of the last run not kept yet."""
        if not session.variations:
            raise user_error("Nothing to keep yet: synthesize first.")
        session.curated += [v for v in session.variations if not any(v is c for c in session.curated)]
        return self._curated(session), self._count(session), session

    def pick_curated(self, evt: gr.SelectData, session: Session):
        session.curated_selected = int(evt.index)
        return session

    def remove(self, session: Session):
        if session.curated_selected is None or not 0 <= session.curated_selected < len(session.curated):
            raise user_error("Select a curated result to remove.")
        session.curated.pop(session.curated_selected)
        session.curated_selected = None
        return self._curated(session), self._count(session), session

    def _curated(self, session: Session):
        thumbs = [screen(v.image, 320) for v in session.curated]
        return [(tint(t, to_display_mask(v.mask, t.shape[:2]), alpha=0.25),
                 f"{v.settings['defect']} seed {v.settings['seed']}") for t, v in zip(thumbs, session.curated)]

    @staticmethod
    def _count(session: Session) -> str:
        return f"**Curated: {len(session.curated)}**"

    def export(self, category: str, session: Session):
        """/export: the curated set into <export root>/<category>/ (MVTec layout + manifest.jsonl), and a zip."""
        if not session.curated:
            raise user_error("Nothing curated yet: keep some results first.")
        with user_errors():
            category = safe_name((category or "").strip(), "category")
            writer = PairWriter(self.export_root, category, "mvtec")
            pairs, new = [], 0
            for v in session.curated:
                defect = safe_name(v.settings["defect"], "defect")
                rec, written = writer.add(defect, v.image, v.mask, {**v.settings, "studio": True})
                pairs.append(rec)
                new += written
        zip_dir = Path(tempfile.mkdtemp(prefix="sard-export-"))
        zip_path = zip_dir / f"{category}-{time.strftime('%Y%m%d-%H%M%S')}.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
            for rec in {r["image"]: r for r in pairs}.values():
                for key in ("image", "mask"):
                    z.write(writer.base / rec[key], f"{category}/{rec[key]}")
            z.write(writer.manifest, f"{category}/manifest.jsonl")
        names = sorted({r["image"] for r in pairs})
        old = len(pairs) - new
        status = (f"Exported {count(new, 'pair')} to `{writer.base}` ({', '.join(names[:3])}"
                  f"{' ...' if len(names) > 3 else ''})"
                  + (f"; {old} of the curated set {'was' if old == 1 else 'were'} already there, not written again."
                     if old else "."))
        return status, str(zip_path)

    @staticmethod
    def zip_ready(path: str | None):
        """The zip button comes alive with the first export (until then it says to export first)."""
        if not path:
            return gr.update(interactive=False, label="Download zip (export first)")
        return gr.update(interactive=True, label=f"Download zip ({Path(path).name})")
