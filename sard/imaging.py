"""Conversions between image arrays (uint8/uint16, [H, W] or [H, W, 3]) and model tensors in [-1, 1]."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sard.io import SardInputError, binarize_mask, to_array


def max_value(dtype: np.dtype) -> float:
    return 65535.0 if np.dtype(dtype) == np.uint16 else 255.0


def match_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """[H, W] or [H, W, 3] -> [H, W, channels]; colour to gray by ITU-R 601 luma, as PIL does."""
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] == channels:
        return a
    if channels == 3:
        return np.repeat(a, 3, axis=2)
    return np.round(luma(a)).astype(a.dtype)[..., None]


def to_unit(a: np.ndarray, channels: int) -> torch.Tensor:
    """uint image [H, W(, 3)] -> float tensor [channels, H, W] in [-1, 1]."""
    a = match_channels(a, channels)
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)).astype(np.float32))
    return x / (max_value(a.dtype) / 2) - 1


def from_unit(x: torch.Tensor, dtype=np.uint8) -> np.ndarray:
    """float tensor [C, H, W] in [-1, 1] -> uint array [H, W, C], rounded and clipped."""
    m = max_value(dtype)
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * (m / 2)).round().numpy().transpose(1, 2, 0)
    return a.astype(dtype)


LUMA_WEIGHTS = (0.299, 0.587, 0.114)   # ITU-R 601 Y of R, G, B


def luma(a: np.ndarray) -> np.ndarray:
    """float64 [H, W] ITU-R 601 luma of [H, W, 3] (the Y that match_channels rounds)."""
    return sum(a[..., c] * w for c, w in enumerate(LUMA_WEIGHTS))


def restore_layout(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    """[H, W, C] synthesized -> the channel layout of `like`, the source pixels of the same region
    ([H, W] gray or [H, W, 3] colour). A gray synthesis on a colour source changes luminance only:
    out = like + (Y_new - Y_like) keeps the source's chroma (Cb and Cr ignore a shift of all three
    channels), so a gray checkpoint does not paint a colour part gray."""
    if like.ndim == 2:
        return a[..., 0] if a.shape[2] == 1 else match_channels(a, 1)[..., 0]
    if a.shape[2] == 1 and like.shape[2] == 3:
        shifted = like.astype(np.float64) + (a[..., 0].astype(np.float64) - luma(like.astype(np.float64)))[..., None]
        return np.clip(np.round(shifted), 0, max_value(like.dtype)).astype(like.dtype)
    return match_channels(a, like.shape[2])


def colour_mode(image_channels: int, image: np.ndarray) -> str:
    """What a checkpoint of image_channels does to this image: 'rgb' (colour synthesized), 'luminance'
    (a gray checkpoint on a colour image: luminance changed, the image's own chroma kept) or 'gray'."""
    if image_channels == 3:
        return "rgb" if image.ndim == 3 else "gray"
    return "luminance" if image.ndim == 3 else "gray"


def prepare_image(image) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels uint8/uint16 [H, W] or [H, W, 3], alpha [H, W] or None) from a PIL image or an array
    (an array's alpha is its last channel of 2 or 4)."""
    if isinstance(image, Image.Image):
        alpha = np.array(image.getchannel("A")) if image.mode in ("RGBA", "LA") else None
        return to_array(image), alpha
    a = np.asarray(image)
    if a.dtype not in (np.uint8, np.uint16) or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise SardInputError(f"image: expected uint8 or uint16 [H, W], [H, W, 3], [H, W, 4] (RGBA) or [H, W, 2] "
                             f"(gray and alpha), got {a.dtype} {a.shape}")
    if a.ndim == 3 and a.shape[2] in (2, 4):    # the last channel is alpha
        return (a[..., 0] if a.shape[2] == 2 else a[..., :3]), a[..., -1]
    return (a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a), None


def prepare_mask(mask, shape: tuple[int, ...]) -> np.ndarray:
    """bool [H, W] from a PIL image or an array of any binary-ish values; must match `shape` and be non-empty."""
    if mask is None:
        raise SardInputError("mask: none given; expected a binary mask of the image's size (PIL image or array)")
    m = binarize_mask(np.array(mask) if isinstance(mask, Image.Image) else mask, "mask")
    if m.shape != tuple(shape[:2]):
        raise SardInputError(f"mask: {m.shape[1]}x{m.shape[0]} does not match the image's "
                             f"{shape[1]}x{shape[0]}; expected the same size")
    if not m.any():
        raise SardInputError("mask: empty (no pixel set); paint or draw a defect region first")
    return m


def prepare_inputs(image, mask) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(pixels, alpha or None, mask bool [H, W]) from PIL or numpy inputs."""
    pixels, alpha = prepare_image(image)
    return pixels, alpha, prepare_mask(mask, pixels.shape)


def as_input_type(image, out: np.ndarray, alpha: np.ndarray | None):
    """Back to what the caller passed: numpy stays numpy, PIL keeps its mode, alpha re-attached.
    (Palette and 1-bit PIL images come back as RGB / L: re-quantizing would touch the background.)"""
    if isinstance(image, Image.Image):
        pil = Image.fromarray(out)
        if alpha is not None:
            return Image.merge(image.mode, [*pil.split(), Image.fromarray(alpha)])
        if image.mode in ("I", "F"):
            return pil.convert(image.mode)
        return pil
    if alpha is not None:
        return np.dstack([out, alpha])
    return out[..., None] if np.ndim(image) == 3 and np.shape(image)[2] == 1 else out


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), bottom/right exclusive, of the True pixels."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1


def mask_width(mask: np.ndarray) -> float:
    """Mean stroke width of a {0, 1} mask, 2 x area / perimeter: w for a stroke of width w, the radius
    for a disk."""
    m = np.ascontiguousarray(mask > 0, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return 2.0 * float(m.sum()) / max(1.0, sum(cv2.arcLength(c, True) for c in contours))


def fit_scale(mask: np.ndarray, res: int, min_width: float = 0.0) -> float:
    """The scale (<= 1) at which the mask's bounding box fits a res x res crop with res / 8 of context
    on each side: the scale of a training crop that holds the whole defect (TrainConfig.fit_crops), and
    of synthesis in that mask. Never below min_width / mask_width: a 4 px crack halved and scaled back
    is a blur, so a thin mask keeps its strokes min_width px wide (or native, when thinner)."""
    top, left, bottom, right = mask_bbox(mask)
    fit = (res - 2 * (res // 8)) / max(1, bottom - top, right - left)
    floor = min_width / max(mask_width(mask), 1e-6) if min_width > 0 else 0.0
    return min(1.0, max(fit, floor))


def rescale(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[..., C, H, W] float resized to `size`: area-averaged down, bilinear up."""
    lead = x.shape[:-3]
    y = x.reshape(-1, *x.shape[-3:])
    down = size[0] <= y.shape[-2] and size[1] <= y.shape[-1]
    y = F.interpolate(y, size=size, mode="area") if down else \
        F.interpolate(y, size=size, mode="bilinear", align_corners=False)
    return y.reshape(*lead, *y.shape[-3:])


def rescale_mask(m: torch.Tensor, size: tuple[int, int], cover: bool = False) -> torch.Tensor:
    """A {0, 1} mask [..., 1, H, W] resized: a pixel is in where at least half of it was (cover=True:
    where any of it was, so the resized mask covers every pixel of the original once scaled back);
    a mask that would vanish at half keeps the cover."""
    a = rescale(m.float(), size)
    half = (a >= 0.5).float()
    return (a > 0).float() if cover or not half.any() else half


def overlay(gray: np.ndarray, mask: np.ndarray, color=(255, 64, 64), alpha: float = 0.45) -> np.ndarray:
    """uint8 [h, w] or [h, w, 3] with the mask tinted in: [h, w, 3]. mask: bool, or float weights in
    [0, 1] (a feathered mask fades its tint)."""
    rgb = np.repeat(gray[..., None], 3, 2) if gray.ndim == 2 else gray
    w = alpha * np.asarray(mask, np.float32)[..., None]
    return np.round(rgb * (1 - w) + np.array(color, np.float32) * w).astype(np.uint8)
