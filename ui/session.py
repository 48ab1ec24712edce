"""Per-browser-session state of the studio (held in a gr.State: two sessions never share it)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sard.results import FrameImages


@dataclass
class Variation:
    """One synthesized result and everything needed to show, keep and export it."""
    image: np.ndarray                 # the result, the input's dtype and channels
    mask: np.ndarray                  # uint8 [H, W] 0/255
    frames: list[FrameImages]         # reverse steps (empty for training-free methods)
    roi: tuple[int, int, int, int]
    settings: dict                    # method, defect, seed, rcd, steps, source, mask, timings
    file: str = ""                    # the result as a full-resolution PNG (download, API)


@dataclass
class Session:
    source: str = ""                  # absolute path of the normal image's file (manifest "source")
    image: np.ndarray | None = None   # the normal image at full resolution (uint8/uint16, its alpha last)
    scale: float = 1.0                # display size / full size
    base: np.ndarray | None = None    # full-resolution mask the server put in the editor (random, uploaded, grown)
    base_params: dict | None = None   # how `base` was made
    mask: np.ndarray | None = None    # the current full-resolution mask (base plus the strokes on it)
    mask_params: dict | None = None   # how `mask` was made (the manifest's mask_params)
    variations: list[Variation] = field(default_factory=list)
    selected: int = 0
    curated: list[Variation] = field(default_factory=list)
    curated_selected: int | None = None
    export_dir: str = ""              # <export root>/session-...: this session's exports (ui.curation)
    pressed: float | None = None      # time.monotonic() when Synthesize was pressed (the status counts from it)

    def new_image(self, source: str, image: np.ndarray, scale: float) -> "Session":
        """Start on another image; the curated set stays."""
        self.source, self.image, self.scale = source, image, scale
        self.set_mask(None, None)
        self.variations, self.selected = [], 0
        return self

    def set_mask(self, mask: np.ndarray | None, params: dict | None) -> None:
        """A mask from the server (None: cleared): the editor's new starting layer."""
        self.base = self.mask = None if mask is None else np.asarray(mask) > 0
        self.base_params = self.mask_params = params
