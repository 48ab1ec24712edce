"""The studio's callbacks: plain Python on numpy arrays and the sard library, no layout.

`Studio` holds what every session shares (the model, the baselines, the mask bank, the export
root); each callback takes and returns a per-session `Session`. Errors the engineer can fix come
back as gr.Error with the library's message.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from sard.baselines import make_baseline
from sard.data import list_dataset, split_defects
from sard.pairs import PairWriter, safe_name
from sard.io import SardInputError, png_bytes, read_image
from sard.masks import MASK_KINDS, MaskBank, random_mask
from sard.pipeline import SardPipeline
from sard.train_samples import overlay
from sard.validate import seed as check_seed, whole_number
from ui.session import Session, Variation

METHODS = {"SARD": "sard", "CutPaste": "cutpaste", "DRAEM": "draem", "GLASS": "glass"}
MASK_LABELS = {"Perlin": "perlin", "Ellipse": "ellipse", "Scratch": "scratch", "Polygon": "polygon",
               "Real-mask bank": "bank"}
DISPLAY_SIDE = 1024     # larger images are shown scaled; synthesis stays at full resolution
MASK_RGBA = (255, 48, 48, 255)


# Where Gradio keeps uploads (its own rule) and the system temp folder: never shown to the engineer.
TEMP_PATH = re.compile("|".join(re.escape(d) + r"/\S*/" for d in {
    os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio"), tempfile.gettempdir()}))


def user_error(message: str, upload: str | os.PathLike | None = None, name: str | None = None) -> gr.Error:
    """An error the engineer can fix: a message in the browser (and for API clients) that names an
    upload by its own name, never by the server's temp path, and one line in the server's log."""
    if upload:
        message = message.replace(str(upload), name or Path(upload).name)
    message = TEMP_PATH.sub("", message)
    print(f"studio: refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


@contextmanager
def user_errors(upload: str | os.PathLike | None = None, name: str | None = None):
    """Library input errors become user errors (about `upload`, shown as `name`)."""
    try:
        yield
    except SardInputError as e:
        raise user_error(str(e), upload, name) from None


def pixels_digest(a: np.ndarray) -> str:
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


# -- pictures -------------------------------------------------------------------------------------
def display_rgb(a: np.ndarray) -> np.ndarray:
    """Any image array -> uint8 RGB for the screen (16-bit scaled down)."""
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    return np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a[..., :3]


def fit_display(a: np.ndarray, side: int = DISPLAY_SIDE) -> tuple[np.ndarray, float]:
    h, w = a.shape[:2]
    s = min(1.0, side / max(h, w))
    if s == 1.0:
        return a, 1.0
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


def to_display_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape[:2] == shape:
        return mask > 0
    return cv2.resize((mask > 0).astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def mask_layer(mask: np.ndarray) -> np.ndarray:
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask > 0] = MASK_RGBA
    return layer


def editor_mask(value) -> np.ndarray | None:
    """The painted mask at display resolution: any layer's alpha > 0 (GRADIO-NOTES)."""
    if not value or not value.get("layers"):
        return None
    layers = [np.asarray(lay) for lay in value["layers"] if lay is not None]
    if not layers:
        return None
    alpha = np.zeros(layers[0].shape[:2], bool)
    for lay in layers:
        if lay.ndim == 3 and lay.shape[2] == 4:
            alpha |= lay[..., 3] > 0
        else:
            alpha |= (lay if lay.ndim == 2 else lay.max(axis=2)) > 0
    return alpha


def heat_map(result: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """|output - input| (max over channels, x4), inferno colour map, the mask's outline in green:
    black everywhere outside the mask shows that RCD changed nothing there."""
    d = np.abs(result.astype(np.int32) - source.astype(np.int32))
    if d.ndim == 3:
        d = d.max(axis=2)
    if source.dtype == np.uint16:
        d = d >> 8
    heat = cv2.applyColorMap(np.clip(d * 4, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1].copy()
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(heat, contours, -1, (0, 255, 0), 1)
    return fit_display(heat)[0]


def zoom(a: np.ndarray, target: int = 256) -> np.ndarray:
    """Small ROI frames upscaled (nearest) so single pixels stay visible."""
    k = max(1, target // max(a.shape[:2]))
    return np.kron(a, np.ones((k, k, 1) if a.ndim == 3 else (k, k), a.dtype)) if k > 1 else a


class Studio:
    def __init__(self, checkpoint: Path, export_root: Path, data: Path | None = None, device: str | None = None):
        self.pipe = SardPipeline.from_pretrained(checkpoint, device=device)
        self.checkpoint = Path(checkpoint)
        self.defects = self.pipe.defects or ["synthetic"]
        self.export_root = Path(export_root)
        self.normals: list[Path] = []
        self.bank: MaskBank | None = None
        self.data = Path(data) if data else None
        self.picked: dict[str, Path] = {}   # pixels of a gallery pick -> its data set file
        if self.data is not None:
            samples = list_dataset(self.data)
            self.normals = [s.image for s in samples if s.is_normal and s.split == "train"] or \
                           [s.image for s in samples if s.is_normal]
            self.bank = MaskBank.from_samples(split_defects(samples).synth)
        self.baselines = {"cutpaste": make_baseline("cutpaste"),
                          "draem": make_baseline("draem", sources=self.normals[:50] or None),
                          "glass": make_baseline("glass", sources=self.normals[:50] or None)}

    # -- the normal image ---------------------------------------------------------------------------
    def gallery_items(self, limit: int = 48) -> list[tuple[np.ndarray, str]]:
        items = []
        for p in self.normals[:limit]:
            try:
                items.append((fit_display(display_rgb(read_image(p)), 160)[0], p.name))
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
        """New image: full resolution into the session, a display copy into the editor."""
        if not path:
            session.image = None
            return gr.update(value=None), None, None, session, "Load a normal part image to begin."
        with user_errors(path):
            a = read_image(path)
        disp, scale = fit_display(display_rgb(a))
        session.new_image(self.source_of(path, a), a, scale)
        h, w = a.shape[:2]
        colour = {"rgb": " (SARD paints colour)", "luminance": " (gray model: SARD changes luminance, keeps its colour)",
                  "gray": ""}[self.pipe.colour_mode(a)]
        note = f"{Path(session.source).name}: {w}x{h}, {'16' if a.dtype == np.uint16 else '8'}-bit, " \
               f"{'colour' if a.ndim == 3 else 'gray'}{colour}" + (f"; shown at {scale:.0%}" if scale < 1 else "")
        return {"background": disp, "layers": [], "composite": None}, None, None, session, note

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
            raise user_error("The real-mask bank needs a data set: start the studio with --data DATASET_ROOT.")
        with user_errors(image_path):
            seed = check_seed("seed", seed)
            a = read_image(image_path)
            bank_defect = defect if self.bank is not None and defect in self.bank.defects else None
            area = None if kind == "bank" else (float(area_min) / 100, float(area_max) / 100)
            m, params = random_mask(kind, a.shape[:2], seed, area, bank=self.bank, defect=bank_defect)
        session.random_mask, session.random_mask_params = m > 0, params
        return m, session

    def show_mask(self, mask: np.ndarray | None, session: Session):
        """A random mask into the editor as a layer the engineer can edit, and the overlay."""
        if mask is None or session.image is None:
            return gr.update(), None, session
        full = (np.asarray(mask) > 0)
        if full.ndim == 3:
            full = full.any(axis=2)
        disp, _ = fit_display(display_rgb(session.image))
        m_disp = to_display_mask(full, disp.shape[:2])
        session.random_mask = full.copy()
        editor = {"background": disp, "layers": [mask_layer(m_disp)], "composite": None}
        return editor, overlay(disp, m_disp), session

    def mask_from_editor(self, value, session: Session):
        """Painted layers -> the full-resolution mask (the untouched random mask keeps its resolution)."""
        if session.image is None:
            return None, None, session
        m_disp = editor_mask(value)
        disp, _ = fit_display(display_rgb(session.image))
        if m_disp is None or not m_disp.any():
            return None, disp, session
        if session.random_mask is not None and np.array_equal(to_display_mask(session.random_mask, m_disp.shape), m_disp):
            full = session.random_mask
        else:
            session.random_mask, session.random_mask_params = None, None
            H, W = session.image.shape[:2]
            full = to_display_mask(m_disp, (H, W))
        return full.astype(np.uint8) * 255, overlay(disp, to_display_mask(full, disp.shape[:2])), session

    # -- synthesis ----------------------------------------------------------------------------------
    def synthesize(self, image_path, mask, method: str, defect: str | None, seed: float, variations: float,
                   rcd: bool, session: Session, progress=gr.Progress()):
        """/synthesize: `variations` results (seeds seed, seed+1, ...) streamed as they are computed."""
        if not image_path:
            raise user_error("Load a normal part image first.")
        if mask is None:
            raise user_error("Paint a mask or press Random mask first.")
        method = METHODS.get(method, method)
        if method not in METHODS.values():
            raise user_error(f"method '{method}': expected one of {', '.join(METHODS)}")
        if defect not in self.defects:
            raise user_error(f"defect '{defect}': expected one of {self.defects}")
        with user_errors(image_path):
            n = whole_number("variations", variations, 1, 16)
            seed = check_seed("seed", seed)
            image = read_image(image_path)
            m = np.asarray(mask)
            m = (m.any(axis=2) if m.ndim == 3 else m) > 0
            if m.shape != image.shape[:2]:
                raise SardInputError(f"mask: {m.shape[1]}x{m.shape[0]} does not match the image's "
                                     f"{image.shape[1]}x{image.shape[0]}")
        drawn = session.random_mask is not None and np.array_equal(session.random_mask, m)
        mask_params = session.random_mask_params if drawn else {"kind": "painted"}
        if session.image is None or session.image.shape != image.shape or not np.array_equal(session.image, image):
            session.new_image(self.source_of(image_path, image), image, fit_display(image)[1])
        session.variations, session.selected = [], 0
        label = defect if self.pipe.generator.config.num_classes else None
        steps_total = n * (self.pipe.schedule.num_steps if method == "sard" else 1)
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
            settings = {"method": method, "defect": defect, "seed": s, "rcd": bool(rcd) if method == "sard" else None,
                        "steps": self.pipe.schedule.num_steps if method == "sard" else None,
                        "checkpoint": self.pipe.checkpoint_hash if method == "sard" else None,
                        "source": session.source, "mask_params": mask_params, "colour": result.colour,
                        "seconds": round(time.perf_counter() - t0, 3)}
            session.variations.append(Variation(np.asarray(result.image), np.asarray(result.mask), result.frames,
                                                result.roi, settings))
            yield self._results(session), f"{k + 1}/{n} done ({settings['seconds']:.2f} s each)", session

    def _results(self, session: Session) -> list[tuple[np.ndarray, str]]:
        return [(fit_display(display_rgb(v.image))[0], f"#{i} seed {v.settings['seed']}")
                for i, v in enumerate(session.variations)]

    def select(self, evt: gr.SelectData, session: Session):
        session.selected = int(evt.index)
        return (session.selected, *self.step_view(session.selected, None, session))

    def step_view(self, index, step, session: Session):
        """x_t, predicted x0 and the composite at one reverse step of a variation, and its heat map."""
        if not session.variations:
            return gr.update(maximum=1, value=0), None, None, None, None, "No results yet."
        index = min(max(int(index or 0), 0), len(session.variations) - 1)
        v = session.variations[index]
        heat = heat_map(v.image, session.image, v.mask) if session.image is not None else None
        if not v.frames:
            return (gr.update(maximum=1, value=0), None, None, fit_display(display_rgb(v.image))[0], heat,
                    f"{v.settings['method']}: training-free, no reverse steps to show.")
        n = len(v.frames)
        k = n - 1 if step is None else min(max(int(step), 0), n - 1)
        f = v.frames[k]
        T = self.pipe.schedule.num_steps
        caption = (f"Reverse step {k + 1}/{n}: x_t at t={f.step + 1} of {T}, the predicted x0, and the composite "
                   f"(network region {v.roi[3] - v.roi[1]}x{v.roi[2] - v.roi[0]} px).")
        return (gr.update(maximum=max(1, n - 1), value=k), zoom(f.x_t), zoom(f.x0_hat), zoom(f.composite), heat, caption)

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
        return [(fit_display(overlay(display_rgb(v.image), v.mask > 0, alpha=0.25))[0],
                 f"{v.settings['defect']} seed {v.settings['seed']}") for v in session.curated]

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
        status = (f"Exported {new} pairs to `{writer.base}` ({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})"
                  + (f"; {len(pairs) - new} of the curated set were already there, not written again." if new < len(pairs)
                     else "."))
        return status, str(zip_path)

