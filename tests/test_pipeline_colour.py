"""A gray checkpoint on a colour image changes luminance only and keeps the image's own chroma, inside
and outside the mask; an RGB checkpoint paints colour. SardPipeline says which applies."""
import numpy as np

from conftest import tiny_checkpoint
from sard.imaging import luma
from sard.pipeline import SardPipeline


def chroma(a: np.ndarray) -> np.ndarray:
    """Cb, Cr (ITU-R 601) of [..., 3]."""
    a = a.astype(np.float64)
    return np.stack([-0.168736 * a[..., 0] - 0.331264 * a[..., 1] + 0.5 * a[..., 2],
                     0.5 * a[..., 0] - 0.418688 * a[..., 1] - 0.081312 * a[..., 2]], -1)


def colour_part(H=48, W=64) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.array([128, 137, 69], np.float64)          # a greenish part, as in the issue
    img = base + rng.normal(0, 8, (H, W, 3)) + np.linspace(-20, 20, W)[None, :, None]
    return np.clip(img, 30, 220).astype(np.uint8)


def test_gray_checkpoint_on_colour_keeps_chroma_and_background(tmp_path):
    pipe = SardPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck", channels=1))
    img = colour_part()
    m = np.zeros(img.shape[:2], bool)
    m[12:36, 20:44] = True
    assert pipe.channels == 1 and pipe.colour_mode(img) == "luminance" and pipe.colour_mode(img[..., 0]) == "gray"
    res = pipe(img, m, seed=0, defect="crack")
    out = np.asarray(res.image)
    assert res.colour == "luminance"
    assert np.array_equal(out[~m], img[~m])                               # background exact
    assert np.abs(luma(out[m].astype(float)) - luma(img[m].astype(float))).mean() > 2   # luminance changed
    # inside: the source's own chroma up to rounding, where no channel hit 0 or 255 (this untrained
    # model paints extremes; clipping there is the only way chroma can move), not gray
    unclipped = (out[m] > 0).all(-1) & (out[m] < 255).all(-1)
    assert unclipped.mean() > 0.5
    assert np.abs(chroma(out[m]) - chroma(img[m]))[unclipped].max() < 1.0
    assert np.abs(chroma(out[m])).mean() > 10                             # a gray patch would have ~0


def test_rgb_checkpoint_paints_colour(tmp_path):
    pipe = SardPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck", channels=3))
    img = colour_part()
    m = np.zeros(img.shape[:2], bool)
    m[10:30, 10:30] = True
    res = pipe(img, m, seed=1, defect="crack")
    out = np.asarray(res.image)
    assert pipe.colour_mode(img) == "rgb" and res.colour == "rgb"
    assert np.array_equal(out[~m], img[~m])
    assert np.abs(chroma(out[m]) - chroma(img[m])).mean() > 2             # its own colours, not the source's
