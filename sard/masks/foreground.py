"""Where a mask may go: the part on a plain background by Otsu threshold, or the whole image for
textures; whether the part was found at all."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.morphology import remove_small_holes

from sard.imaging import match_channels, prepare_image
from sard.io import SardInputError, read_image, read_mask


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
    return _textured(*_otsu_part(image))


def _textured(part: np.ndarray | None, separation: float) -> bool:
    if part is None or separation < 0.8:
        return True
    border = np.concatenate([part[0], part[-1], part[:, 0], part[:, -1]])
    return bool(border.mean() > 0.1 or part.mean() >= 0.95)


def object_foreground(image, texture: bool = False) -> np.ndarray:
    """bool [H, W]: the part, for object categories, by Otsu threshold: the class that covers
    less of the border, small holes (< 2 % of the image) filled, components kept that are at
    least a quarter of the largest one. All True for textures and flat images."""
    pixels = prepare_image(image)[0]
    return _whole_part(None if texture else _otsu_part(pixels)[0], pixels.shape[:2])


def _whole_part(part: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """The Otsu class as a part: small holes filled, small components dropped (object_foreground)."""
    H, W = shape
    if part is None or not part.any():
        return np.ones((H, W), bool)
    part = remove_small_holes(part, max_size=max(16, H * W // 50))
    labels = label(part, connectivity=2)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.isin(labels, np.flatnonzero(sizes >= sizes.max() / 4))



ON_PART_MODES = ("auto", "on", "off")
PART_SHARE = (0.05, 0.95)   # a part Otsu finds outside this share of the image is a highlight or no part


@dataclass(frozen=True)
class Part:
    """Where masks may go on one image: `mask` (bool [H, W]) or None for anywhere, and why, in words."""
    mask: np.ndarray | None
    why: str


def part_for_masks(image, mode: str = "auto") -> Part:
    """mode 'on': the Otsu part whatever it is (as object_foreground); 'off': anywhere; 'auto': the part
    of an object image when Otsu finds a plausible one (5-95 % of the image), else anywhere: Otsu on
    a dark part can keep only its bright highlight, and masks clipped to that would keep a few pixels."""
    if mode not in ON_PART_MODES:
        raise SardInputError(f"on-part mode {mode!r}: expected one of {', '.join(ON_PART_MODES)}")
    if mode == "off":
        return Part(None, "anywhere (asked)")
    pixels = prepare_image(image)[0]
    otsu = _otsu_part(pixels)          # once: both the texture test and the part read it
    if mode == "auto" and _textured(*otsu):
        return Part(None, "anywhere (a texture)")
    fg = _whole_part(otsu[0], pixels.shape[:2])
    share = float(fg.mean())
    if mode == "auto" and not PART_SHARE[0] <= share <= PART_SHARE[1]:
        return Part(None, f"anywhere (the part could not be found: Otsu kept {100 * share:.0f} % of the image)")
    return Part(fg, "on the part")


def real_mask_share(samples: list, n: int = 20) -> float | None:
    """Median share of real defect masks that lies on the part found in their own images (up to n
    defects): below ~0.8 the part finder clips real defects and cannot be trusted for this category.
    None without readable defects."""
    shares = []
    for s in [s for s in samples if s.mask is not None][:n]:
        try:
            image = read_image(s.image)
            m = read_mask(s.mask, size=image.shape[:2]) > 0
        except SardInputError:
            continue
        if m.any() and not is_texture(image):      # a texture has no part to be on
            shares.append(float(object_foreground(image)[m].mean()))
    return float(np.median(shares)) if shares else None
