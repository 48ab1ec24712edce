"""Training-free baselines: the pipeline's call shape and return type, untouched pixels outside the
returned mask (bit for bit), a change inside it, seeded, with and without a given mask."""
import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import MAGNETIC_TILE, requires_data
from sard.baselines import BASELINES, CutPaste, DraemBlend, GlassSynthesis, make_baseline
from sard.baselines.common import nonempty_perlin
from sard.io import SardInputError, read_image
from sard.masks import object_foreground, perlin_mask, random_mask
from sard.results import SynthesisResult

H, W = 60, 84


def textured(channels: int = 1, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus noise, so every patch differs from every other."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 0.3 + 0.3 * (xx / W) + 0.2 * np.sin(yy / 7.0)
    a = np.stack([base + 0.08 * rng.standard_normal((H, W)) for _ in range(channels)], axis=-1)
    a = (np.clip(a, 0, 1) * (65535 if dtype == np.uint16 else 255)).round().astype(dtype)
    return a[..., 0] if channels == 1 else a


IMAGES = {"gray8": textured(1), "rgb8": textured(3), "gray16": textured(1, np.uint16)}
METHODS = {
    "cutpaste": lambda: CutPaste(),
    "cutpaste_scar": lambda: CutPaste(scar=True),
    "draem_noise": lambda: DraemBlend(),
    "draem_sources": lambda: DraemBlend(sources=[textured(3, seed=5), textured(1, seed=6)]),
    "glass_noise": lambda: GlassSynthesis(),
    "glass_sources": lambda: GlassSynthesis(sources=[textured(3, seed=7)], foreground=True),
}
GIVEN = random_mask("ellipse", (H, W), 3, (0.03, 0.08))[0]


def check_result(r, image, mask_given):
    assert isinstance(r, SynthesisResult)
    out = r.image
    assert out.shape == image.shape and out.dtype == image.dtype
    m = r.mask
    assert m.dtype == np.uint8 and m.shape == (H, W) and set(np.unique(m)) == {0, 255}
    outside = m == 0
    assert np.array_equal(out[outside], image[outside])        # bit-exact outside the mask
    assert (out[~outside] != image[~outside]).any()             # something changed inside
    assert r.frames == [] and r.roi == (0, 0, H, W) and r.timings["total_s"] >= 0
    if mask_given is not None:
        assert not m[mask_given == 0].any()                      # never outside the given mask


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", IMAGES)
@pytest.mark.parametrize("given", [False, True])
def test_same_type_untouched_outside_changed_inside(method, kind, given):
    image = IMAGES[kind]
    mask = GIVEN if given else None
    r = METHODS[method]()(image, mask, seed=1, defect="crack")
    check_result(r, image, mask)
    assert r.defect == "crack" and r.seed == 1
    if given and not method.startswith("glass"):
        assert np.array_equal(r.mask, GIVEN)


@pytest.mark.parametrize("method", METHODS)
def test_seeded(method):
    image = IMAGES["rgb8"]
    for mask in (None, GIVEN):
        a, b, c = (METHODS[method]()(image, mask, seed=s) for s in (4, 4, 5))
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("method", ["cutpaste", "draem_noise", "glass_noise"])
def test_pil_in_pil_out_alpha_kept(method):
    rgba = np.dstack([IMAGES["rgb8"], np.full((H, W), 200, np.uint8)])
    r = METHODS[method]()(Image.fromarray(rgba, "RGBA"), GIVEN, seed=0)
    assert isinstance(r.image, Image.Image) and r.image.mode == "RGBA" and r.image.size == (W, H)
    out = np.array(r.image)
    assert (out[..., 3] == 200).all()
    assert np.array_equal(out[GIVEN == 0], rgba[GIVEN == 0])
    r = METHODS[method]()(IMAGES["gray8"][..., None], None, seed=0)  # [H, W, 1] stays [H, W, 1]
    assert r.image.shape == (H, W, 1)
    r = METHODS[method]()(Image.fromarray(IMAGES["gray8"]), None, seed=0)
    assert r.image.mode == "L"


def test_bad_mask_is_refused():
    for method in METHODS.values():
        with pytest.raises(SardInputError, match="mask"):
            method()(IMAGES["gray8"], np.zeros((H, W), np.uint8))
        with pytest.raises(SardInputError, match="mask"):
            method()(IMAGES["gray8"], np.ones((H + 1, W), np.uint8))


# -- CutPaste ---------------------------------------------------------------------------------------------

def test_cutpaste_pastes_a_jittered_rectangle_of_the_image():
    image = IMAGES["gray8"]
    for seed in range(5):
        r = CutPaste()(image, seed=seed)
        ys, xs = np.nonzero(r.mask)
        h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
        assert len(ys) == h * w                                   # a full rectangle
        assert 0.015 <= h * w / image.size <= 0.16 and 0.25 <= w / h <= 4
        patch = r.image[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        # a brightness/contrast-jittered copy of some same-size window of the image: normalized
        # cross-correlation ignores such affine changes
        score = cv2.matchTemplate(image.astype(np.float32), patch.astype(np.float32), cv2.TM_CCOEFF_NORMED)
        score[ys.min(), xs.min()] = -1
        assert score.max() > 0.97


def test_cutpaste_scar_is_a_thin_rotated_patch():
    image = IMAGES["rgb8"]
    angles = []
    for seed in range(6):
        r = CutPaste(scar=True)(image, seed=seed)
        pts = np.argwhere(r.mask > 0)[:, ::-1].astype(np.float32)
        (_, _), (a, b), angle = cv2.minAreaRect(pts)
        short, long_ = sorted((a, b))
        assert short <= 17 and 9 <= long_ <= 27 and len(pts) <= 16 * 25 * 1.1
        angles.append(angle % 90)
    assert len({round(a) for a in angles}) > 2                   # rotated by various angles
    assert (CutPaste()(image, seed=0).mask > 0).sum() > 16 * 25  # the normal patch is larger


def test_cutpaste_with_mask_takes_the_patch_from_elsewhere():
    image = IMAGES["gray8"]
    r = CutPaste(jitter=0.0)(image, GIVEN, seed=2)
    ys, xs = np.nonzero(GIVEN)
    top, left = ys.min(), xs.min()
    h, w = ys.max() - top + 1, xs.max() - left + 1
    inside = r.image[GIVEN > 0]
    wins = np.lib.stride_tricks.sliding_window_view(image, (h, w))
    sel = GIVEN[top:top + h, left:left + w] > 0
    hits = [(y, x) for y in range(wins.shape[0]) for x in range(wins.shape[1])
            if np.array_equal(wins[y, x][sel], inside)]
    assert hits and (top, left) not in hits                     # an exact copy (no jitter) of another place


# -- DRAEM and GLASS ----------------------------------------------------------------------------------------

def test_draem_beta_is_the_texture_opacity():
    image = IMAGES["rgb8"]
    unchanged = DraemBlend(beta=(0.0, 0.0))(image, GIVEN, seed=0)
    assert np.array_equal(unchanged.image, image)
    texture = np.full((H, W, 3), 255, np.uint8)
    # an all-white source under 3 random ops stays flat; fully opaque, it replaces the mask's pixels
    r = DraemBlend(sources=[texture], beta=(1.0, 1.0))(image, GIVEN, seed=0)
    inside = r.image[GIVEN > 0].reshape(-1, 3)
    assert (inside == inside[0]).all() and not np.array_equal(inside[0], image[GIVEN > 0][0])


def test_draem_without_mask_draws_a_perlin_mask():
    masks = [DraemBlend()(IMAGES["gray8"], seed=s).mask for s in range(4)]
    assert all(m.any() for m in masks) and len({m.tobytes() for m in masks}) == 4
    # Perlin blobs, not rectangles: none fills its bounding box
    for m in masks:
        ys, xs = np.nonzero(m)
        assert len(ys) < 0.9 * (np.ptp(ys) + 1) * (np.ptp(xs) + 1)


def test_texture_dir(tmp_path):
    Image.fromarray(textured(3, seed=9)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(textured(1, seed=10)).save(tmp_path / "sub" / "b.jpg")
    for cls in (DraemBlend, GlassSynthesis):
        check_result(cls(texture_dir=tmp_path)(IMAGES["gray16"], GIVEN, seed=0), IMAGES["gray16"], GIVEN)
    with pytest.raises(SardInputError, match="texture_dir"):
        DraemBlend(texture_dir=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SardInputError, match="texture_dir"):
        GlassSynthesis(texture_dir=tmp_path / "empty")


def object_image() -> np.ndarray:
    """A bright part (disc) on a plain dark background."""
    rng = np.random.default_rng(0)
    img = rng.normal(30, 4, (H, W)).clip(0, 255).astype(np.uint8)
    part = np.zeros((H, W), np.uint8)
    cv2.circle(part, (W // 2, H // 2), 22, 1, -1)
    img[part > 0] = (150 + rng.normal(0, 20, (H, W))[part > 0]).clip(0, 255).astype(np.uint8)
    return img


def test_glass_keeps_to_the_part():
    img = object_image()
    fg = object_foreground(img)
    for seed in range(4):
        r = GlassSynthesis()(img, seed=seed)                    # "auto": an object, so the part only
        assert r.mask.any() and not r.mask[~fg].any()
    straddling = np.zeros((H, W), np.uint8)
    straddling[:, W // 2 - 4:W // 2 + 4] = 255
    r = GlassSynthesis()(img, straddling, seed=0)
    assert np.array_equal(r.mask > 0, (straddling > 0) & fg)
    off_part = np.zeros((H, W), np.uint8)
    off_part[:4, :4] = 255                                      # restricting would empty it: kept as given
    assert np.array_equal(GlassSynthesis()(img, off_part, seed=0).mask, off_part)
    whole = [GlassSynthesis(foreground=False)(img, seed=s).mask for s in range(6)]
    assert any(m[~fg].any() for m in whole)
    with pytest.raises(SardInputError, match="foreground"):
        GlassSynthesis(foreground="yes")


def test_glass_joins_two_perlin_masks():
    """Union, intersection or the first alone, each for some seeds: replay the two Perlin masks
    and the choice from a generator in the same state."""
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        m1, m2 = perlin_mask((H, W), rng), perlin_mask((H, W), rng)
        if not (m1 & m2).any():
            continue  # an empty intersection falls back to the union: ambiguous, skip
        got = nonempty_perlin((H, W), np.random.default_rng(seed), seed, combine=True)
        options = {"union": m1 | m2, "intersection": m1 & m2, "first": m1}
        match = [k for k, v in options.items() if np.array_equal(got, v)]
        assert match, seed
        seen.update(match)
    assert seen == {"union", "intersection", "first"}


def test_make_baseline():
    assert set(BASELINES) == {"cutpaste", "draem", "glass"}
    assert isinstance(make_baseline("cutpaste", scar=True), CutPaste) and make_baseline("cutpaste", scar=True).scar
    assert isinstance(make_baseline("glass", foreground=False), GlassSynthesis)
    with pytest.raises(SardInputError, match="baseline") as e:
        make_baseline("patchcore")
    assert all(name in str(e.value) for name in BASELINES)


@requires_data
def test_baselines_on_a_real_tile():
    normals = sorted((MAGNETIC_TILE / "train" / "good").iterdir())[:3]
    image = read_image(normals[0])
    mask, _ = random_mask("polygon", image.shape[:2], 0, (0.01, 0.03))
    for method in (CutPaste(), DraemBlend(sources=normals[1:]), GlassSynthesis(sources=normals[1:])):
        r = method(image, mask, seed=0)
        assert r.image.shape == image.shape and r.image.dtype == image.dtype
        assert np.array_equal(r.image[mask == 0], image[mask == 0])
        assert (r.image[mask > 0] != image[mask > 0]).any()
