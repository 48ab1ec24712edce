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

import math
import zlib

import cv2
import numpy as np

from sard.io import SardInputError
from sard.masks.bank import BANK_PLACEMENTS, MaskBank, _bank_patch, _draw_bank
from sard.masks.noise import _draw_perlin_field, _perlin_field

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
