"""The studio's mask callbacks: random, uploaded, painted, grown and shrunk masks, kept at the
image's full resolution in the session with how each was made (the manifest's mask_params)."""
from __future__ import annotations

from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from sard.io import read_image, strict_mask
from sard.masks import MASK_KINDS, MaskBank, feather_weights, grow_mask, part_for_masks, random_mask
from sard.validate import seed as check_seed, whole_number
from ui.messages import count, user_error, user_errors
from ui.pictures import editor_mask, mask_layer, screen, tint, to_display_mask
from ui.session import Session

MASK_LABELS = {"Perlin": "perlin", "Ellipse": "ellipse", "Scratch": "scratch", "Polygon": "polygon",
               "Real-mask bank": "bank"}
BRUSH_RGB = "#ff3030"


def edited(params: dict | None, edit: str) -> dict:
    """mask_params after a dilate/erode: what it started from and the edits, in order."""
    if params and params.get("kind") == "edited":
        return {**params, "edits": params["edits"] + [edit]}
    return {"kind": "edited", "from": params, "edits": [edit]}


class MaskEditing:
    """Part of ui.actions.Studio: the mask callbacks, on the studio's real-mask bank."""
    bank: MaskBank | None
    checkpoint: Path

    def random_mask(self, image_path: str | None, kind: str, area_min: float, area_max: float, seed: float,
                    defect: str | None, session: Session):
        """/random_mask: a mask (uint8 0/255, the image's full size) from a generator, an area range (percent
        of the image) and a seed, on the part of an object image; the session remembers its parameters for
        the manifest. A real mask from the bank keeps its shape, orientation (up to the bank's rotation)
        and place, scaled to an area in the range, as every other generator's."""
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
            area = (float(area_min) / 100, float(area_max) / 100)   # a bank mask too: its real shape, scaled
            part = part_for_masks(a, "auto")      # an object's masks stay on the part (the manifest records it)
            m, params = random_mask(kind, a.shape[:2], seed, area, foreground=part.mask, bank=self.bank,
                                    defect=bank_defect)
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
