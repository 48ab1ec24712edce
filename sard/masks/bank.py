"""The real-mask bank: annotated masks of each defect type held cropped (MaskBank), their disk format
in a model folder (write_bank, read_bank), and how random_mask('bank') flips, turns, scales and
places one."""
from __future__ import annotations

import io
import math
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sard.data import list_dataset, split_defects
from sard.io import SardInputError, atomic_write_json, read_mask, replace_folder
from sard.store.model_folder import BANK_DIR, ModelConfig
from sard.store.tensors import read_config

BANK_PLACEMENTS = ("source", "anywhere")   # where it sat in its own image (edges kept), or anywhere


def _crop_to_content(m: np.ndarray) -> np.ndarray:
    return _crop_and_box(m)[0]


def _crop_and_box(m: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The mask cropped to its content, and that box as fractions (top, left, bottom, right) of the
    image: where the defect sat, so a bank mask can be put back there (1.0 = on the far edge)."""
    ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if len(ys) == 0:
        return m[:0, :0], (0.0, 0.0, 0.0, 0.0)
    H, W = m.shape
    box = (ys[0] / H, xs[0] / W, (ys[-1] + 1) / H, (xs[-1] + 1) / W)
    return m[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1], tuple(float(v) for v in box)


class MaskBank:
    """Real annotated masks of each defect type, flipped, slightly rotated, scaled and put back where
    they sat by random_mask('bank', ...). Holds each mask cropped to its bounding box, and that box."""

    def __init__(self, crops: dict[str, dict[Path, np.ndarray]], skipped: int = 0,
                 boxes: dict[Path, tuple[float, float, float, float]] | None = None, origin: str = ""):
        self._crops = {d: dict(v) for d, v in sorted(crops.items()) if v}
        self._boxes = dict(boxes or {})
        self.skipped = skipped
        self.origin = origin          # where the masks come from, in words (for the studio)

    @classmethod
    def from_samples(cls, samples: list, origin: str = "") -> "MaskBank":
        """From `Sample`s (normal ones are ignored); unreadable or empty masks are skipped and
        counted in .skipped. Give it the synthesizer's split only, never held-out samples."""
        return cls.from_masks([(s.defect, Path(s.mask)) for s in samples if s.mask is not None], origin)

    @classmethod
    def from_masks(cls, masks: list[tuple[str, Path]], origin: str = "") -> "MaskBank":
        """From (defect type, mask file) pairs; unreadable or empty masks are skipped and counted."""
        crops: dict[str, dict[Path, np.ndarray]] = {}
        boxes: dict[Path, tuple[float, float, float, float]] = {}
        skipped = 0
        for defect, path in masks:
            try:
                m = read_mask(path)
            except SardInputError:
                skipped += 1
                continue
            if not m.any():
                skipped += 1
                continue
            crops.setdefault(defect, {})[path], boxes[path] = _crop_and_box(m)
        return cls(crops, skipped, boxes, origin)

    @property
    def defects(self) -> list[str]:
        return list(self._crops)

    def sources(self, defect: str) -> list[Path]:
        if defect not in self._crops:
            raise SardInputError(f"defect: '{defect}' has no masks in the bank; known types {self.defects}")
        return list(self._crops[defect])

    def crop(self, path: str | Path) -> np.ndarray:
        """bool [h, w]: the mask at `path` cropped to its content (read from disk if not held)."""
        return self._held(Path(path))[0]

    def box(self, path: str | Path) -> tuple[float, float, float, float]:
        """Where the mask at `path` sat in its image: (top, left, bottom, right) as fractions."""
        return self._held(Path(path))[1]

    def _held(self, path: Path) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        for by_path in self._crops.values():
            if path in by_path and path in self._boxes:
                return by_path[path], self._boxes[path]
        m, box = _crop_and_box(read_mask(path))
        if m.size == 0:
            raise SardInputError(f"{path}: mask is empty; expected a defect region")
        return m, box

    def __len__(self) -> int:
        return sum(len(v) for v in self._crops.values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{d}: {len(v)}" for d, v in self._crops.items())
        return f"MaskBank({counts}; skipped {self.skipped})"


# -- a checkpoint's own bank -------------------------------------------------------------------------
# A model folder carries the real masks it was trained beside, so the bank works without the data
# set: bank/<defect>/<name>.png (1-bit, the mask's full image size, so its box is kept) and
# bank/bank.json naming the data set, the split and each mask's source file.
BANK_INDEX = "bank.json"
BANK_FORMAT = "sard-mask-bank/1"
BANK_MAX_BYTES = 1_000_000     # the magnetic-tile bank (131 masks) takes 37 kB


def write_bank(folder: str | Path, data_root: str | Path, max_bytes: int = BANK_MAX_BYTES) -> Path:
    """Give the checkpoint in `folder` its real-mask bank: the binary masks of the synthesizer's third
    of `data_root` (the split its config.json records, its defect types only) as 1-bit PNGs in
    folder/bank/, with bank.json. Refuses a bank over `max_bytes` before writing anything; an older
    bank is replaced whole. Returns the bank folder."""
    folder, data_root = Path(folder), Path(data_root)
    config = ModelConfig.read(folder)
    split_seed, known = config.split_seed, set(config.defects)
    synth = [s for s in split_defects(list_dataset(data_root), split_seed).synth if not known or s.defect in known]
    if not synth:
        raise SardInputError(f"{data_root}: no defect masks of the checkpoint's types {sorted(known)}; "
                             f"expected the data set the checkpoint was trained on")
    files, masks, sources, skipped = {}, {}, {}, []
    for s in synth:
        source = str(Path(s.mask).resolve().relative_to(data_root.resolve()))
        try:
            m = read_mask(s.mask)
        except SardInputError:
            m = None
        if m is None or not m.any():
            skipped.append(source)
            continue
        # numbered, not named after the data set's files: bank.json maps each to its source
        name = f"{s.defect}/{len(masks.get(s.defect, [])):04d}.png"
        files[name] = _png_1bit(m)
        masks.setdefault(s.defect, []).append(name)
        sources[name] = source
    total = sum(len(b) for b in files.values())
    if total > max_bytes:
        raise SardInputError(f"{data_root}: its {len(files)} bank masks take {total} bytes; expected at most "
                             f"{max_bytes} in a model folder")
    tmp = Path(tempfile.mkdtemp(prefix=".bank-", dir=folder))
    try:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        atomic_write_json(tmp / BANK_INDEX, {
            "format": BANK_FORMAT, "data": data_root.resolve().name, "split_seed": split_seed,
            "split": "the synthesizer's third (sard.data.split_defects)", "masks": masks, "sources": sources,
            "skipped_empty_or_unreadable": skipped})
        replace_folder(tmp, folder / BANK_DIR)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / BANK_DIR


def _png_1bit(m: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(m.astype(bool)).save(buf, format="PNG", optimize=True)   # mode "1": 8 pixels a byte
    return buf.getvalue()


def read_bank(folder: str | Path) -> MaskBank | None:
    """The real-mask bank a checkpoint folder carries (write_bank), or None if it has none."""
    index = Path(folder) / BANK_DIR / BANK_INDEX
    if not index.is_file():
        return None
    meta = read_config(index)
    if meta.get("format") != BANK_FORMAT or not isinstance(meta.get("masks"), dict):
        raise SardInputError(f"{index}: not a mask bank index (expected \"format\": \"{BANK_FORMAT}\" and \"masks\")")
    pairs = [(d, index.parent / name) for d, names in meta["masks"].items() for name in names]
    missing = [str(p) for _, p in pairs if not p.is_file()]
    if missing:
        raise SardInputError(f"{index}: lists {len(missing)} mask files that are missing (e.g. {missing[0]}); "
                             f"write the bank again (write_bank)")
    bank = MaskBank.from_masks(pairs, f"{len(pairs)} real masks of {meta.get('data', '?')} shipped with "
                                      f"{Path(folder).name}")
    if bank.skipped:
        raise SardInputError(f"{index}: {bank.skipped} of its masks are unreadable or empty; write the bank again")
    return bank


def _bank_patch(crop: np.ndarray, flip_h: bool, flip_v: bool, angle: float, scale: float) -> np.ndarray:
    """bool [h, w]: a cropped mask flipped, rotated by `angle` degrees and scaled (nearest
    neighbour, so it stays binary), cropped to its content (possibly empty)."""
    m = crop[:, ::-1] if flip_h else crop
    m = m[::-1] if flip_v else m
    h, w = m.shape
    M = cv2.getRotationMatrix2D((0.0, 0.0), float(angle), float(scale))
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1], [w - 0.5, h - 0.5, 1]]) @ M.T
    lo = corners.min(axis=0)
    size = np.ceil(corners.max(axis=0) - lo).astype(int) + 2
    M[:, 2] = 1 - lo                                         # the rotated box starts at pixel 1
    out = cv2.warpAffine(np.ascontiguousarray(m, dtype=np.uint8), M, (int(size[0]), int(size[1])),
                         flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return _crop_to_content(out > 0)


# -- placing a bank mask ---------------------------------------------------------------------------

def _draw_bank(rng, shape, target_px, bank: MaskBank, defect, cy, cx, rotation=180.0, placement="anywhere") -> dict:
    """A real mask: flipped, rotated by U(-rotation, rotation) degrees, scaled so its area is the
    target (or, with area None, by U(0.8, 1.25), relative to the image at 'source' placement),
    shrunk if it would not fit. placement 'source':
    where it sat in its own image, shifted by up to 5 % of the side, a mask that touched an edge
    stays on that edge (a break stays on the tile's rim, an uneven band keeps its direction);
    'anywhere': centred near (cy, cx)."""
    H, W = shape
    defect = defect if defect is not None else bank.defects[int(rng.integers(len(bank.defects)))]
    sources = bank.sources(defect)
    source = sources[int(rng.integers(len(sources)))]
    crop = bank.crop(source)
    flip_h, flip_v = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    angle = float(rng.uniform(0, 360)) if rotation >= 180 else float(rng.uniform(-rotation, rotation))
    if target_px is not None:
        scale = math.sqrt(target_px / crop.sum())
    else:   # at 'source' placement relative to the image, so a mask across its tile spans this one too
        t, l, b, r = bank.box(source)
        rel = math.sqrt(H * W * (b - t) * (r - l) / crop.size) if placement == "source" else 1.0
        scale = rel * float(rng.uniform(0.8, 1.25))
    for _ in range(4):  # thin masks do not scale with the square of the scale: correct, re-render
        patch = _bank_patch(crop, flip_h, flip_v, angle, scale)
        ph, pw = patch.shape
        if ph > H or pw > W:
            scale *= 0.97 * min(H / ph, W / pw)
        elif target_px is not None and patch.any() and abs(patch.sum() / target_px - 1) > 0.1:
            scale *= math.sqrt(target_px / patch.sum())
        else:
            break
    else:
        patch = _bank_patch(crop, flip_h, flip_v, angle, scale)
    ph, pw = patch.shape
    if placement == "source":
        top, left = _source_place(bank.box(source), flip_h, flip_v, (ph, pw), shape, rng)
    else:
        top = int(np.clip(round(cy) - ph // 2, 0, max(0, H - ph)))
        left = int(np.clip(round(cx) - pw // 2, 0, max(0, W - pw)))
    return {"defect": defect, "source": str(source), "flip_h": flip_h, "flip_v": flip_v,
            "angle": angle, "scale": scale, "top": top, "left": left}


def _source_place(box, flip_h: bool, flip_v: bool, patch_shape, shape, rng) -> tuple[int, int]:
    """Top-left corner that puts a patch where its source box sat (flips mirror the box), moved by
    up to 5 % of each side; a box on an image edge keeps the patch on that edge."""
    t, l, b, r = box
    if flip_h:
        l, r = 1 - r, 1 - l
    if flip_v:
        t, b = 1 - b, 1 - t

    def place(lo: float, hi: float, size: int, n: int) -> int:
        if lo <= 0 and hi < 1:
            return 0
        if hi >= 1 and lo > 0:
            return max(0, n - size)
        centre = (lo + hi) / 2 * n + rng.uniform(-0.05, 0.05) * n
        return int(np.clip(round(centre - size / 2), 0, max(0, n - size)))

    (ph, pw), (H, W) = patch_shape, shape
    return place(t, b, ph, H), place(l, r, pw, W)
