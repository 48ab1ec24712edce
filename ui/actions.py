"""The studio's callbacks: plain Python on numpy arrays and the sard library, no layout.

`Studio` holds what every session shares (the synthesizers, the mask bank, the data set's images,
the export root) and composes the callbacks by idea: masks (ui.mask_editing), synthesis and its
views (ui.synthesis), real examples, curation and export (ui.curation). Each callback takes and
returns a per-session `Session`. Errors the engineer can fix come back as gr.Error with the
library's message (ui.messages). Outputs are tuples in the order the layout wires them (ui.layout
names each group).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import gradio as gr
import numpy as np

from sard.data import list_dataset, normal_images, split_defects
from sard.io import SardInputError, png_bytes, read_image
from sard.masks import MaskBank, read_bank
from sard.synthesizers import BASELINES, SARD, build
from ui.curation import Curation
from ui.files import Published
from ui.mask_editing import MaskEditing
from ui.messages import user_errors
from ui.pictures import display_rgb, fit_display, screen
from ui.session import Session
from ui.synthesis import Synthesis


def pixels_digest(a: np.ndarray) -> str:
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


def colour_note(channels: int) -> str:
    """What the loaded checkpoint does to gray and colour images, in words."""
    if channels == 3:
        return "RGB checkpoint: paints colour; on a gray image it synthesizes in colour and returns the result's gray"
    return "gray checkpoint: on a colour image it changes luminance and keeps the image's own colour"


class Studio(MaskEditing, Synthesis, Curation):
    def __init__(self, checkpoint: Path, export_root: Path, data: Path | None = None, device: str | None = None):
        sard = build(SARD, checkpoint, device=device)
        self.pipe = sard.pipeline      # its schedule, colour and split seed: the views and the bank
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
            self.normals = normal_images(samples, "train")
            for s in samples:
                if not s.is_normal:
                    self.defect_samples.setdefault(s.defect, []).append(s)
            synth = split_defects(samples, self.pipe.config.split_seed).synth
            bank = MaskBank.from_samples(synth, f"real masks of {self.data.name}'s training third")
            self.bank = bank if len(bank) else None
        if self.bank is None:     # no data set (or one without masks): the checkpoint's own bank
            self.bank = read_bank(self.checkpoint)
        self.files = Published()     # what the browser is handed: PNGs written once (ui.files)
        sources = self.normals[:50] or None
        self.synthesizers = {SARD: sard, **{name: build(name, sources=sources) for name in BASELINES}}

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
        """A gallery pick becomes the image input: a lossless copy among the files the studio serves
        (the data set may lie outside what Gradio serves); its pixels remember the real file."""
        path = self.normals[evt.index]
        with user_errors():
            a = read_image(path, alpha=True)
        self.picked[pixels_digest(a)] = path.resolve()
        return self.files.bytes(png_bytes(a), f"{path.stem}.png")

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
            a = read_image(path, alpha=True)
        disp, scale = fit_display(display_rgb(a))
        session.new_image(self.source_of(path, a), a, scale)
        h, w = a.shape[:2]
        colour = {"rgb": " (SARD paints colour)", "luminance": " (gray model: SARD changes luminance, keeps its colour)",
                  "gray": " (RGB model: SARD synthesizes in colour, the result is its gray)" if self.pipe.channels == 3
                  else ""}[self.pipe.colour_mode(a)]
        channels = 1 if a.ndim == 2 else a.shape[2]
        alpha = " with alpha (kept in the results)" if channels in (2, 4) else ""
        note = f"{Path(session.source).name}: {w}x{h}, {'16' if a.dtype == np.uint16 else '8'}-bit, " \
               f"{'colour' if channels >= 3 else 'gray'}{alpha}{colour}" + \
            (f"; shown at {scale:.0%}" if scale < 1 else "")
        return ({"background": disp, "layers": [], "composite": None}, disp, None, note, session,
                *self.cleared_run(session))
