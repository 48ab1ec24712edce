"""Random defect masks, each from a seed and an area range, each regenerable from a JSON dict.

Kinds: Perlin blobs as DRAEM makes them (Zavrtanik et al., ICCV 2021), ellipses, scratches
(curved strokes), polygons, and real annotated masks from a `MaskBank`.

How the area range [lo, hi] (mask pixels / all image pixels) is met, for every kind:
1. By construction: each draw aims at a target area A ~ U(lo, hi) (ellipse axes, polygon
   radius, scratch length, bank scale are computed from A). Perlin masks keep DRAEM's
   threshold 0.5 and so their natural area.
2. By retry: attempt k draws with np.random.default_rng([seed, k]), k < MAX_ATTEMPTS; the
   first whose pixel count (after the foreground intersection) lies in range is kept.
3. Last resort: the attempt closest to the range (in log area ratio) keeps the k best pixels
   of a score, k being its count clamped into range: for Perlin the noise value (a threshold
   set by quantile); for the other kinds the signed distance to the shape's edge (an erosion
   or dilation by whole pixel rings, the last ring taken partly, in raster order). Only
   foreground pixels are eligible.
The params dict records the accepted draw ("drawn") and any such adjustment ("adjust");
`mask_from_params` renders them through the same code, so regeneration is bit-exact.
"""
from __future__ import annotations

import io
import math
import shutil
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.morphology import remove_small_holes

from sard.store.model_folder import BANK_DIR, ModelConfig
from sard.store.tensors import read_config
from sard.data import list_dataset, split_defects
from sard.imaging import match_channels, prepare_image
from sard.io import SardInputError, atomic_write_json, read_mask, replace_folder

MASK_KINDS = ("perlin", "ellipse", "scratch", "polygon", "bank")
MAX_ATTEMPTS = 12
SUBPIXEL = 4  # cv2 drawing with 4 fractional bits, so small shapes keep their drawn size

# Kind-specific parameters and their defaults (the **params of random_mask).
DEFAULTS = {
    "perlin": {"min_scale": 0, "max_scale": 6, "threshold": 0.5, "rotate": True},
    "ellipse": {"aspect": (0.25, 1.0)},                  # minor / major axis
    "scratch": {"width": (1, 4), "strokes": (1, 3), "bend": 0.3},
    "polygon": {"vertices": (3, 10)},
    "bank": {"rotation": 15.0, "placement": "source"},   # rotation: largest |angle| (180: any)
}
BANK_PLACEMENTS = ("source", "anywhere")   # where it sat in its own image (edges kept), or anywhere


# -- Perlin noise (DRAEM) --------------------------------------------------------------------------

def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """DRAEM's rand_perlin_2d_np: float32 [H, W] gradient noise (about [-1, 1]) with res[0] x res[1]
    lattice cells, generated on the next multiple of res and cropped."""
    H, W = int(shape[0]), int(shape[1])
    ry, rx = int(res[0]), int(res[1])
    dy, dx = -(-H // ry), -(-W // rx)                      # pixels per lattice cell
    gy = ((np.arange(H) % dy) / dy)[:, None]                # position inside the cell, [H, 1]
    gx = ((np.arange(W) % dx) / dx)[None, :]                # [1, W]
    angles = 2 * math.pi * rng.random((ry + 1, rx + 1))
    grad = np.stack((np.cos(angles), np.sin(angles)), axis=-1)   # [ry + 1, rx + 1, 2]
    iy, ix = (np.arange(H) // dy)[:, None], (np.arange(W) // dx)[None, :]

    def ramp(oy: int, ox: int) -> np.ndarray:  # dot(gradient of corner (oy, ox), offset to it), [H, W]
        g = grad[iy + oy, ix + ox]
        return (gy - oy) * g[..., 0] + (gx - ox) * g[..., 1]

    def fade(t):
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    ty, tx = fade(gy), fade(gx)
    n00, n10, n01, n11 = ramp(0, 0), ramp(1, 0), ramp(0, 1), ramp(1, 1)
    left = n00 + ty * (n10 - n00)    # interpolated down the cell's left edge, then its right one
    right = n01 + ty * (n11 - n01)
    return (math.sqrt(2) * (left + tx * (right - left))).astype(np.float32)


def rotate(a: np.ndarray, angle: float, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """[H, W] or [H, W, C] rotated by `angle` degrees about the image centre, zeros outside
    (imgaug's iaa.Affine(rotate) and torchvision's RandomAffine fill 0)."""
    H, W = a.shape[:2]
    M = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), float(angle), 1.0)
    out = cv2.warpAffine(np.ascontiguousarray(a), M, (W, H), flags=interpolation,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(a.shape)


def _draw_perlin_field(shape, rng, min_scale, max_scale, rotate) -> dict:
    """The random choices of one DRAEM Perlin mask: lattice scales 2**randint(min, max) per axis,
    a noise seed and the rotation angle in (-90, 90)."""
    if not 0 <= min_scale < max_scale:
        raise SardInputError(f"min_scale/max_scale: expected 0 <= min_scale < max_scale, got {min_scale}, {max_scale}")
    res = [int(2 ** rng.integers(min_scale, max_scale)) for _ in range(2)]
    return {"res": res, "noise_seed": int(rng.integers(2 ** 63)),
            "angle": float(rng.uniform(-90, 90)) if rotate else 0.0}


def _perlin_field(shape, drawn: dict) -> np.ndarray:
    """float32 [H, W]: the (rotated) noise a drawn Perlin mask thresholds."""
    noise = perlin_noise(shape, drawn["res"], np.random.default_rng(drawn["noise_seed"]))
    return rotate(noise, drawn["angle"]) if drawn["angle"] else noise


def perlin_mask(shape, rng, min_scale=0, max_scale=6, threshold=0.5, rotate=True) -> np.ndarray:
    """bool [H, W] as DRAEM makes it: noise at scales 2**randint(min_scale, max_scale) per axis,
    rotated by U(-90, 90) degrees, thresholded at 0.5. May be empty (DRAEM's can be)."""
    return _perlin_field(shape, _draw_perlin_field(shape, rng, min_scale, max_scale, rotate)) > threshold


# -- the mask bank ----------------------------------------------------------------------------------

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
    split_seed = config.split_seed
    known = set(config.defects)
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


# -- foreground -------------------------------------------------------------------------------------

def _otsu_part(image) -> tuple[np.ndarray | None, float]:
    """(bool [H, W] or None for a flat image, separation): the Otsu class that covers less of the
    image border (the background surrounds a part), and the between-class share of the gray
    variance (near 1 for a part on a plain background, lower for shading and texture)."""
    pixels = prepare_image(image)[0]
    gray = match_channels(pixels, 1)[..., 0].astype(np.float64)
    if gray.min() == gray.max():
        return None, 0.0
    above = gray > threshold_otsu(gray)
    w = above.mean()
    separation = w * (1 - w) * (gray[above].mean() - gray[~above].mean()) ** 2 / gray.var()
    border = np.concatenate([above[0], above[-1], above[:, 0], above[:, -1]])
    return (above if border.mean() < 0.5 else ~above), float(separation)


def is_texture(image) -> bool:
    """True unless the image shows a part on a plain background: the Otsu classes well apart
    (separation >= 0.8), the background holding >= 90 % of the image border, the part < 95 %
    of the image. (Magnetic-tile crops, shaded but plain, score 0.5-0.76.)"""
    part, separation = _otsu_part(image)
    if part is None or separation < 0.8:
        return True
    border = np.concatenate([part[0], part[-1], part[:, 0], part[:, -1]])
    return bool(border.mean() > 0.1 or part.mean() >= 0.95)


def object_foreground(image, texture: bool = False) -> np.ndarray:
    """bool [H, W]: the part, for object categories, by Otsu threshold: the class that covers
    less of the border, small holes (< 2 % of the image) filled, components kept that are at
    least a quarter of the largest one. All True for textures and flat images."""
    pixels = prepare_image(image)[0]
    H, W = pixels.shape[:2]
    part = None if texture else _otsu_part(pixels)[0]
    if part is None or not part.any():
        return np.ones((H, W), bool)
    part = remove_small_holes(part, max_size=max(16, H * W // 50))
    labels = label(part, connectivity=2)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.isin(labels, np.flatnonzero(sizes >= sizes.max() / 4))


# -- argument checks --------------------------------------------------------------------------------

def _check_kind(kind) -> str:
    if kind not in MASK_KINDS:
        raise SardInputError(f"kind: '{kind}' is not a mask kind; expected one of {', '.join(MASK_KINDS)}")
    return kind


def _check_shape(shape) -> tuple[int, int]:
    try:
        H, W = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise SardInputError(f"shape: expected (H, W), got {shape!r}") from None
    if H < 2 or W < 2:
        raise SardInputError(f"shape: {H}x{W} is too small; expected at least 2x2 pixels")
    return H, W


def _check_area(area, n: int, kind: str) -> tuple[int, int]:
    """(lo_px, hi_px): the whole pixel counts c with lo <= c / n <= hi, c >= 1."""
    if area is None:
        if kind != "bank":
            raise SardInputError(f"area: None is only for kind 'bank' (natural size); give (lo, hi) for '{kind}'")
        return 1, n
    try:
        lo, hi = (float(v) for v in area)
    except (TypeError, ValueError):
        raise SardInputError(f"area: expected (lo, hi) fractions of the image, got {area!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= 1):
        raise SardInputError(f"area: expected 0 <= lo <= hi <= 1 (fractions of the image), got ({lo}, {hi})")
    if hi <= 0:
        raise SardInputError(f"area: ({lo}, {hi}) allows an empty mask; expected hi > 0 (masks are never empty)")
    lo_px = max(1, math.ceil(lo * n) - 1)
    while lo_px / n < lo:
        lo_px += 1
    hi_px = min(n, math.floor(hi * n) + 1)
    while hi_px / n > hi:
        hi_px -= 1
    if lo_px > hi_px:
        raise SardInputError(f"area: ({lo}, {hi}) of {n} pixels holds no whole non-zero pixel count; "
                             f"widen the range or use a larger shape")
    return lo_px, hi_px


def _check_foreground(foreground, shape) -> np.ndarray | None:
    if foreground is None:
        return None
    fg = np.asarray(foreground)
    if fg.shape != tuple(shape):
        raise SardInputError(f"foreground: {fg.shape} does not match shape {tuple(shape)}; expected bool [H, W]")
    return fg.astype(bool) if fg.dtype != bool else fg


def _foreground_crc(fg: np.ndarray | None) -> int | None:
    return None if fg is None else zlib.crc32(np.packbits(fg).tobytes())


def _check_params(kind: str, params: dict) -> dict:
    unknown = sorted(set(params) - set(DEFAULTS[kind]))
    if unknown:
        known = ", ".join(DEFAULTS[kind]) or "none"
        raise SardInputError(f"{unknown[0]}: not a parameter of mask kind '{kind}'; expected: {known}")
    p = {**DEFAULTS[kind], **params}
    for name, v in p.items():
        if isinstance(DEFAULTS[kind][name], tuple):
            try:
                a, b = v
            except (TypeError, ValueError):
                raise SardInputError(f"{name}: expected a (low, high) pair, got {v!r}") from None
            if not 0 < a <= b:
                raise SardInputError(f"{name}: expected 0 < low <= high, got ({a}, {b})")
            p[name] = [int(a), int(b)] if isinstance(DEFAULTS[kind][name][0], int) else [float(a), float(b)]
    if kind == "polygon" and p["vertices"][0] < 3:
        raise SardInputError(f"vertices: a polygon needs at least 3, got {p['vertices']}")
    if kind == "scratch" and not p["bend"] >= 0:
        raise SardInputError(f"bend: expected >= 0, got {p['bend']}")
    if kind == "bank":
        if p["placement"] not in BANK_PLACEMENTS:
            raise SardInputError(f"placement: expected one of {BANK_PLACEMENTS}, got {p['placement']!r}")
        if not isinstance(p["rotation"], (int, float)) or not 0 <= p["rotation"] <= 180:
            raise SardInputError(f"rotation: expected degrees in [0, 180], got {p['rotation']!r}")
        p["rotation"] = float(p["rotation"])
    return p


# -- drawing (random choices) and rendering (pixels) of each kind ------------------------------------

def _pick_centre(rng, shape, fg_index: np.ndarray | None) -> tuple[float, float]:
    """(y, x) of a random pixel, of the foreground when one is given (so the shape overlaps it)."""
    H, W = shape
    if fg_index is None:
        return float(rng.integers(H)), float(rng.integers(W))
    y, x = divmod(int(fg_index[rng.integers(len(fg_index))]), W)
    return float(y), float(x)


def _fit(c: float, half: float, size: int) -> float:
    """Move a centre coordinate so that [c - half, c + half] lies inside [0, size - 1] if it can."""
    return min(max(c, half), size - 1 - half) if 2 * half <= size - 1 else (size - 1) / 2


def _draw(kind, rng, shape, target_px, p, fg_index, bank, defect) -> dict:
    H, W = shape
    if kind == "perlin":
        return {**_draw_perlin_field(shape, rng, p["min_scale"], p["max_scale"], p["rotate"]),
                "threshold": float(p["threshold"])}
    cy, cx = _pick_centre(rng, shape, fg_index)
    if kind == "ellipse":
        r = rng.uniform(*p["aspect"])
        a = math.sqrt(target_px / (math.pi * r))
        b = r * a
        angle = rng.uniform(0, 180)
        t = math.radians(angle)
        ex, ey = math.hypot(a * math.cos(t), b * math.sin(t)), math.hypot(a * math.sin(t), b * math.cos(t))
        return {"center": [_fit(cx, ex, W), _fit(cy, ey, H)], "axes": [a, b], "angle": angle}
    if kind == "polygon":
        n = int(rng.integers(p["vertices"][0], p["vertices"][1] + 1))
        # Vertices in angular order around the centre (so the polygon is simple), angles evenly
        # spaced with jitter (every gap < pi, so the centre is inside); radii vary (concave).
        theta = rng.uniform(0, 2 * math.pi) + 2 * math.pi * (np.arange(n) + rng.uniform(-0.24, 0.24, n)) / n
        rho = rng.uniform(0.3, 1.0, n)
        unit_area = 0.5 * np.sum(rho * np.roll(rho, -1) * np.sin(np.roll(theta, -1) - theta))
        R = math.sqrt(target_px / unit_area)
        dx, dy = R * rho * np.cos(theta), R * rho * np.sin(theta)
        cx = _fit(cx, float(np.abs(dx).max()), W)
        cy = _fit(cy, float(np.abs(dy).max()), H)
        return {"points": [[cx + float(u), cy + float(v)] for u, v in zip(dx, dy)]}
    if kind == "scratch":
        return _draw_scratch(rng, shape, target_px, p, cy, cx)
    return _draw_bank(rng, shape, target_px, bank, defect, cy, cx, p["rotation"], p["placement"])


def _draw_scratch(rng, shape, target_px, p, cy, cx) -> dict:
    """Curved strokes: cubic Bezier curves whose control points stray `bend` times the length
    off the chord; each stroke's length is its share of the target area over its width."""
    H, W = shape
    n = int(rng.integers(p["strokes"][0], p["strokes"][1] + 1))
    strokes = []
    for i in range(n):
        width = int(rng.integers(p["width"][0], p["width"][1] + 1))
        phi = rng.uniform(0, 2 * math.pi)
        off = rng.uniform(-p["bend"], p["bend"], 2)
        unit = _bezier(off)                                       # [K, 2] along a chord of length 1
        arc = float(np.sum(np.hypot(*np.diff(unit, axis=0).T)))
        length = max(1.0, (target_px / n - width * width) / width) / arc
        rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
        pts = (unit - [0.5, 0]) @ rot.T * length                  # centred on the chord's middle
        if i > 0:  # later strokes start near the first one, as scratches come in bundles
            cy, cx = _pick_near(rng, strokes[0]["points"], shape)
        half = np.abs(pts).max(axis=0)
        x0, y0 = _fit(cx, float(half[0]), W), _fit(cy, float(half[1]), H)
        strokes.append({"points": [[x0 + float(u), y0 + float(v)] for u, v in pts], "width": width})
    return {"strokes": strokes}


def _bezier(off: np.ndarray, k: int = 32) -> np.ndarray:
    t = np.linspace(0, 1, k)[:, None]
    p0, p1, p2, p3 = np.array([0, 0]), np.array([1 / 3, off[0]]), np.array([2 / 3, off[1]]), np.array([1, 0])
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def _pick_near(rng, points, shape) -> tuple[float, float]:
    x, y = points[int(rng.integers(len(points)))]
    return float(np.clip(y + rng.normal(0, 4), 0, shape[0] - 1)), float(np.clip(x + rng.normal(0, 4), 0, shape[1] - 1))


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


def _q(points) -> np.ndarray:
    """Float (x, y) points -> int32 fixed-point for cv2's shift=SUBPIXEL drawing."""
    return np.round(np.asarray(points, dtype=np.float64) * (1 << SUBPIXEL)).astype(np.int32)


def _render(kind, drawn: dict, shape, bank: MaskBank | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(bool [H, W] mask, float32 [H, W] score or None): the pixels of a drawn mask, before the
    foreground; the score ranks pixels for the last-resort area adjustment (None: signed distance)."""
    H, W = shape
    img = np.zeros((H, W), np.uint8)
    if kind == "perlin":
        field = _perlin_field(shape, drawn)
        return field > drawn["threshold"], field
    if kind == "ellipse":
        centre = tuple(int(v) for v in _q(drawn["center"]))
        axes = tuple(int(v) for v in _q(drawn["axes"]))
        cv2.ellipse(img, centre, axes, drawn["angle"], 0, 360, 1, -1, cv2.LINE_8, SUBPIXEL)
    elif kind == "polygon":
        cv2.fillPoly(img, [_q(drawn["points"])], 1, cv2.LINE_8, SUBPIXEL)
    elif kind == "scratch":
        for s in drawn["strokes"]:
            cv2.polylines(img, [_q(s["points"])], False, 1, int(s["width"]), cv2.LINE_8, SUBPIXEL)
    else:
        if bank is None:
            bank = MaskBank({})  # reads the source file itself
        patch = _bank_patch(bank.crop(drawn["source"]), drawn["flip_h"], drawn["flip_v"], drawn["angle"],
                            drawn["scale"])
        t, l = drawn["top"], drawn["left"]
        img[t:t + patch.shape[0], l:l + patch.shape[1]] = patch[:H - t, :W - l]
    return img > 0, None


def _signed_distance(m: np.ndarray) -> np.ndarray:
    """float32 [H, W]: distance to the background inside the mask, minus the distance to the
    mask outside it; ranking by it erodes or dilates the mask ring by ring."""
    inside = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, 5)
    return np.where(m, inside, -outside).astype(np.float32)


def _finish(m: np.ndarray, score: np.ndarray | None, fg: np.ndarray | None, adjust: dict | None) -> np.ndarray:
    """The final bool mask: the rendered one on the foreground, or its `count` best-scored
    foreground pixels (stable sort, so ties go in raster order) when adjusted."""
    if adjust is None:
        return m & fg if fg is not None else m
    s = (_signed_distance(m) if score is None else score).ravel().astype(np.float64)
    if fg is not None:
        s = np.where(fg.ravel(), s, -np.inf)
    keep = np.argsort(-s, kind="stable")[:adjust["count"]]
    out = np.zeros(m.size, bool)
    out[keep] = True
    return out.reshape(m.shape)


# -- editing a mask ---------------------------------------------------------------------------------

def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def grow_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """bool [H, W]: the mask dilated by `px` pixels (a disk), or eroded by -px when px < 0."""
    m = np.asarray(mask) > 0
    if px == 0:
        return m.copy()
    op = cv2.dilate if px > 0 else cv2.erode
    return op(m.astype(np.uint8), _disk(abs(int(px))), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def feather_weights(mask: np.ndarray, px: float) -> np.ndarray:
    """float32 [H, W] in [0, 1]: 0 outside the mask, rising across the `px` pixels inside its edge
    to 1 (smoothstep of the distance to the background); the binary mask itself for px <= 0. The
    feather stays inside the mask, so every pixel outside it keeps the input's value."""
    m = np.asarray(mask) > 0
    if px <= 0:
        return m.astype(np.float32)
    padded = np.pad(m, 1, mode="edge").astype(np.uint8)     # the image border is no edge of the mask
    d = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    t = np.clip(d / float(px), 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def feather(result: np.ndarray, source: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """source + weights * (result - source), rounded, in the source's dtype and channels: a
    synthesized defect fading into its surroundings (weights from feather_weights)."""
    w = weights[..., None] if np.ndim(source) == 3 else weights
    out = source.astype(np.float64) + w * (result.astype(np.float64) - source.astype(np.float64))
    return np.round(out).astype(source.dtype)


# -- public entry points ----------------------------------------------------------------------------

def random_mask(kind: str, shape: tuple[int, int], seed: int, area: tuple[float, float] | None = (0.005, 0.05), *,
                foreground: np.ndarray | None = None, bank: MaskBank | None = None, defect: str | None = None,
                **params) -> tuple[np.ndarray, dict]:
    """(uint8 [H, W] mask of 0/255, never empty, lo <= area <= hi of the whole image; a JSON-
    serialisable dict that regenerates it with mask_from_params). See the module docstring for
    how the area is met. `foreground` (bool [H, W]) confines the mask; `bank` and `defect` are
    for kind 'bank' (defect None: a random type); **params are the kind's DEFAULTS."""
    kind = _check_kind(kind)
    H, W = _check_shape(shape)
    p = _check_params(kind, params)
    lo_px, hi_px = _check_area(area, H * W, kind)
    fg = _check_foreground(foreground, (H, W))
    if kind == "bank":
        if bank is None or len(bank) == 0:
            raise SardInputError("bank: kind 'bank' needs a MaskBank with masks (MaskBank.from_samples)")
        if defect is not None:
            bank.sources(defect)  # raises naming the defect if the bank has none
    fg_index = None
    if fg is not None:
        fg_index = np.flatnonzero(fg)
        if len(fg_index) < lo_px:
            raise SardInputError(f"foreground: {len(fg_index)} pixels, fewer than the {lo_px} the area range "
                                 f"needs; widen the foreground or lower area")

    best = None  # (log distance to the range, drawn, mask, score, count)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([int(seed), attempt])
        target = None if area is None else float(rng.uniform(lo_px, hi_px))
        drawn = _draw(kind, rng, (H, W), target, p, fg_index, bank, defect)
        m, score = _render(kind, drawn, (H, W), bank)
        count = int((m & fg).sum() if fg is not None else m.sum())
        if lo_px <= count <= hi_px:
            adjust = None
            break
        miss = abs(math.log(max(count, 0.5) / min(max(count, lo_px), hi_px)))
        if best is None or miss < best[0]:
            best = (miss, attempt, drawn, m, score, count)
    else:
        _, attempt, drawn, m, score, count = best
        adjust = {"count": min(max(count, lo_px), hi_px)}
    mask = _finish(m, score, fg, adjust)
    params_out = {
        "kind": kind, "shape": [H, W], "seed": int(seed), "area": None if area is None else [float(a) for a in area],
        "foreground": fg is not None, "foreground_crc": _foreground_crc(fg), "params": p,
        "attempt": attempt, "drawn": drawn, "adjust": adjust,
    }
    return mask.astype(np.uint8) * 255, params_out


def mask_from_params(params: dict, *, foreground: np.ndarray | None = None, bank: MaskBank | None = None) -> np.ndarray:
    """uint8 [H, W] 0/255: the mask random_mask returned with these params, bit for bit. Give the
    same foreground it was drawn on; for 'bank' the source file is read if `bank` lacks it."""
    try:
        kind, shape, drawn = _check_kind(params["kind"]), _check_shape(params["shape"]), params["drawn"]
        adjust, had_fg, crc = params["adjust"], params["foreground"], params["foreground_crc"]
    except (KeyError, TypeError):
        raise SardInputError("params: not a random_mask params dict (expected kind, shape, drawn, adjust, "
                             "foreground, foreground_crc)") from None
    fg = _check_foreground(foreground, shape)
    if had_fg and fg is None:
        raise SardInputError("foreground: this mask was drawn on a foreground; pass the same foreground")
    if fg is not None and _foreground_crc(fg) != crc:
        raise SardInputError("foreground: differs from the one this mask was drawn on" if had_fg else
                             "foreground: this mask was drawn without one; pass foreground=None")
    m, score = _render(kind, drawn, shape, bank)
    return _finish(m, score, fg, adjust).astype(np.uint8) * 255
