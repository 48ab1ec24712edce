"""Random masks: area in range, never empty, 0/255, seeded, regenerable bit for bit, confined to a
foreground; the bank picks real masks of the requested defect; bad arguments are named."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import BOTTLE, MAGNETIC_TILE, REPO, requires_data, run_module, tiny_checkpoint
from sard.data import Sample, list_dataset, split_defects
from sard.io import SardInputError, read_image, read_mask
from sard.masks import (BANK_DIR, BANK_MAX_BYTES, MASK_KINDS, MaskBank, feather, feather_weights, grow_mask,
                        is_texture, mask_from_params, object_foreground, perlin_mask, perlin_noise, random_mask,
                        read_bank, write_bank)

SHAPES = [(97, 131), (64, 64), (40, 150)]
AREAS = [(0.005, 0.05), (0.1, 0.3)]
DRAWN_KINDS = ["perlin", "ellipse", "scratch", "polygon"]


def disc(shape, centre, radius) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, centre, radius, 1, -1)
    return m.astype(bool)


def assert_valid(mask, shape, area):
    assert mask.dtype == np.uint8 and mask.shape == shape
    assert set(np.unique(mask)) == {0, 255}
    frac = (mask > 0).sum() / mask.size
    assert area[0] <= frac <= area[1], frac


@pytest.fixture(scope="module")
def synthetic_bank(tmp_path_factory) -> MaskBank:
    """A bank from masks written here: two 'hole' discs, one 'line' stroke, plus an unreadable
    file and an empty mask that must be skipped."""
    d = tmp_path_factory.mktemp("bank")
    masks = {"hole_a": disc((60, 80), (30, 25), 12), "hole_b": disc((50, 50), (20, 30), 8)}
    line = np.zeros((70, 90), np.uint8)
    cv2.line(line, (5, 60), (85, 8), 1, 3)
    masks["line_a"] = line.astype(bool)
    samples = []
    for name, m in masks.items():
        Image.fromarray(m.astype(np.uint8) * 255).save(d / f"{name}_mask.png")
        samples.append(Sample(d / f"{name}.png", d / f"{name}_mask.png", name.split("_")[0], "test"))
    (d / "bad_mask.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(d / "empty_mask.png")
    samples += [Sample(d / "bad.png", d / "bad_mask.png", "hole", "test"),
                Sample(d / "empty.png", d / "empty_mask.png", "line", "test"),
                Sample(d / "good.png", None, "good", "train")]
    return MaskBank.from_samples(samples)


# -- every drawn kind --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", DRAWN_KINDS)
@pytest.mark.parametrize("area", AREAS)
def test_area_in_range_never_empty_binary(kind, area):
    for shape in SHAPES:
        for seed in range(4):
            mask, params = random_mask(kind, shape, seed, area)
            assert_valid(mask, shape, area)
            assert params["kind"] == kind and params["shape"] == list(shape) and params["seed"] == seed


@pytest.mark.parametrize("kind", DRAWN_KINDS)
def test_default_range_is_met_by_drawing_not_by_adjusting(kind):
    """Most masks come straight from the generator (Perlin: DRAEM's threshold 0.5 kept)."""
    adjusted = sum(random_mask(kind, (96, 128), seed)[1]["adjust"] is not None for seed in range(10))
    assert adjusted <= 2


@pytest.mark.parametrize("kind", DRAWN_KINDS)
def test_seeded(kind):
    a, _ = random_mask(kind, (97, 131), 7)
    b, _ = random_mask(kind, (97, 131), 7)
    c, _ = random_mask(kind, (97, 131), 8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", DRAWN_KINDS)
@pytest.mark.parametrize("area", [(0.005, 0.05), (0.3, 0.32)])  # the narrow large range forces adjustments
def test_regenerates_bit_exactly_from_json(kind, area):
    adjusted = False
    for seed in range(3):
        mask, params = random_mask(kind, (97, 131), seed, area)
        back = json.loads(json.dumps(params))
        assert np.array_equal(mask_from_params(back), mask)
        adjusted |= params["adjust"] is not None
        assert_valid(mask, (97, 131), area)
    if area[0] == 0.3 and kind in ("perlin", "scratch"):  # DRAEM's threshold and 1-4 px strokes cannot
        assert adjusted                                     # cover 30 %: the last resort must step in


@pytest.mark.parametrize("kind", DRAWN_KINDS)
def test_foreground_respected_area_of_whole_image(kind):
    fg = disc((97, 131), (70, 50), 30)
    for area in AREAS:
        for seed in range(3):
            mask, params = random_mask(kind, (97, 131), seed, area, foreground=fg)
            assert_valid(mask, (97, 131), area)
            assert not mask[~fg].any()
            assert params["foreground"] is True
            assert np.array_equal(mask_from_params(json.loads(json.dumps(params)), foreground=fg), mask)


def test_regeneration_checks_the_foreground():
    fg = disc((64, 64), (32, 32), 20)
    _, params = random_mask("ellipse", (64, 64), 0, foreground=fg)
    with pytest.raises(SardInputError, match="foreground"):
        mask_from_params(params)
    with pytest.raises(SardInputError, match="foreground"):
        mask_from_params(params, foreground=disc((64, 64), (30, 30), 20))
    _, params = random_mask("ellipse", (64, 64), 0)
    with pytest.raises(SardInputError, match="foreground"):
        mask_from_params(params, foreground=fg)


def test_shape_params_shape_the_mask():
    thin, _ = random_mask("scratch", (128, 128), 0, (0.005, 0.02), width=(1, 1), strokes=(1, 1))
    thick, _ = random_mask("scratch", (128, 128), 0, (0.005, 0.02), width=(6, 6), strokes=(1, 1))
    # the same area, so the 1-px stroke runs about 6x as long: compare the skeleton-ish extent
    extent = [np.ptp(np.nonzero(m > 0)[1]) + np.ptp(np.nonzero(m > 0)[0]) for m in (thin, thick)]
    assert extent[0] > 2 * extent[1]
    round_, _ = random_mask("ellipse", (128, 128), 3, (0.02, 0.05), aspect=(1.0, 1.0))
    (cx, cy), (w, h), _ = cv2.minAreaRect(np.argwhere(round_ > 0)[:, ::-1].astype(np.float32))
    assert max(w, h) / min(w, h) < 1.15
    _, params = random_mask("polygon", (128, 128), 1, vertices=(7, 7))
    assert len(params["drawn"]["points"]) == 7


# -- bad arguments -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"area": (0, 0)}, "area"), ({"area": (0.2, 0.1)}, "area"), ({"area": (0.5, 1.5)}, "area"),
    ({"area": (-0.1, 0.2)}, "area"), ({"area": "big"}, "area"), ({"area": None}, "area"),
    ({"shape": (1, 50)}, "shape"), ({"shape": (10,)}, "shape"), ({"shape": (4, 4), "area": (0.01, 0.02)}, "area"),
    ({"kind": "blob"}, "kind"), ({"kind": "bank"}, "bank"), ({"foo": 1}, "foo"), ({"width": (0, 2)}, "width"),
    ({"kind": "polygon", "vertices": (2, 5)}, "vertices"),
    ({"kind": "perlin", "min_scale": 3, "max_scale": 3}, "min_scale"),
    ({"foreground": np.zeros((64, 64), bool)}, "foreground"), ({"foreground": np.ones((10, 10), bool)}, "foreground"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    args = {"kind": "scratch", "shape": (64, 64), "seed": 0, **kwargs}
    with pytest.raises(SardInputError, match=name) as e:
        random_mask(args.pop("kind"), args.pop("shape"), args.pop("seed"), **args)
    if name == "kind":
        assert all(k in str(e.value) for k in MASK_KINDS)


# -- Perlin noise as DRAEM -------------------------------------------------------------------------------

def test_perlin_noise_smooth_bounded_any_shape():
    n = perlin_noise((97, 131), (4, 8), np.random.default_rng(0))
    assert n.shape == (97, 131) and n.dtype == np.float32
    assert np.abs(n).max() <= 1.5 and n.std() > 0.1
    # gradient noise is smooth: neighbours differ little at this lattice size
    assert np.abs(np.diff(n, axis=0)).max() < 0.15 and np.abs(np.diff(n, axis=1)).max() < 0.3
    assert np.array_equal(n, perlin_noise((97, 131), (4, 8), np.random.default_rng(0)))


def test_perlin_mask_is_draem_threshold_of_the_noise():
    m = perlin_mask((64, 96), np.random.default_rng(3), min_scale=2, max_scale=3, rotate=False)
    assert m.dtype == bool and m.shape == (64, 96)
    # 4x4 lattice cells: blobs, no pixel-level speckle; about 0-30 % above 0.5
    assert m.mean() < 0.3
    assert np.abs(np.diff(m.astype(int), axis=1)).sum() < 0.2 * m.size


# -- foreground -----------------------------------------------------------------------------------------

def test_object_foreground_finds_the_part():
    rng = np.random.default_rng(0)
    img = rng.normal(40, 6, (120, 160)).clip(0, 255).astype(np.uint8)
    part = disc((120, 160), (80, 60), 30)
    img[part] = 200
    img[58:61, 78:81] = 40              # a small hole in the part: filled
    img[5:7, 5:7] = 200                 # a speck on the background: dropped
    fg = object_foreground(img)
    assert fg.dtype == bool and fg[59, 79] and not fg[5, 5]
    assert (fg & part).sum() / (fg | part).sum() > 0.97
    assert not is_texture(img)
    assert object_foreground(img, texture=True).all()
    rgb = np.dstack([img, img, img])
    assert np.array_equal(object_foreground(Image.fromarray(rgb)), fg)


def test_texture_images_keep_the_whole_image():
    noise = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    assert is_texture(noise)
    assert object_foreground(np.full((32, 32), 7, np.uint8)).all()   # flat: nothing to separate


@requires_data
def test_magnetic_tiles_are_textures():
    paths = sorted((MAGNETIC_TILE / "train" / "good").iterdir())[:200:40]
    assert all(is_texture(read_image(p)) for p in paths)


# -- the bank --------------------------------------------------------------------------------------------

def test_bank_from_samples_skips_bad_and_empty(synthetic_bank):
    assert synthetic_bank.defects == ["hole", "line"]
    assert len(synthetic_bank) == 3 and synthetic_bank.skipped == 2
    assert [p.name for p in synthetic_bank.sources("hole")] == ["hole_a_mask.png", "hole_b_mask.png"]
    with pytest.raises(SardInputError, match="defect"):
        synthetic_bank.sources("crack")


def test_bank_masks_in_range_of_the_requested_defect(synthetic_bank):
    line_src = {str(p) for p in synthetic_bank.sources("line")}
    for shape in [(97, 131), (64, 64)]:
        for area in AREAS:
            for seed in range(4):
                mask, params = random_mask("bank", shape, seed, area, bank=synthetic_bank, defect="line")
                assert_valid(mask, shape, area)
                assert params["drawn"]["source"] in line_src and params["drawn"]["defect"] == "line"
                assert np.array_equal(mask_from_params(json.loads(json.dumps(params)), bank=synthetic_bank), mask)
                # without the bank, the source file is read from its recorded path
                assert np.array_equal(mask_from_params(params), mask)


def test_bank_transform_keeps_the_shape(synthetic_bank):
    """A disc stays a disc and a line stays a line, whatever flip, rotation and scale."""
    for seed in range(4):
        hole, _ = random_mask("bank", (128, 128), seed, (0.02, 0.05), bank=synthetic_bank, defect="hole")
        (_, _), (w, h), _ = cv2.minAreaRect(np.argwhere(hole > 0).astype(np.float32))
        assert max(w, h) / min(w, h) < 1.3
        line, _ = random_mask("bank", (128, 128), seed, (0.005, 0.02), bank=synthetic_bank, defect="line")
        (_, _), (w, h), _ = cv2.minAreaRect(np.argwhere(line > 0).astype(np.float32))
        assert max(w, h) / min(w, h) > 8


def test_bank_natural_size_and_random_defect(synthetic_bank):
    """area None: the mask keeps its size relative to its own image (x U(0.8, 1.25))."""
    crop_px = {str(p): read_mask(p).sum() for d in synthetic_bank.defects for p in synthetic_bank.sources(d)}
    image_px = {str(p): read_mask(p).size for d in synthetic_bank.defects for p in synthetic_bank.sources(d)}
    defects = set()
    for seed in range(8):
        mask, params = random_mask("bank", (160, 200), seed, None, bank=synthetic_bank)
        drawn = params["drawn"]
        defects.add(drawn["defect"])
        rel = (160 * 200 / image_px[drawn["source"]]) ** 0.5
        assert 0.8 <= drawn["scale"] / rel <= 1.25
        ratio = (mask > 0).sum() / (crop_px[drawn["source"]] * drawn["scale"] ** 2)
        assert 0.7 < ratio < 1.4, ratio
    assert defects == {"hole", "line"}


def test_bank_with_foreground(synthetic_bank):
    fg = disc((97, 131), (40, 50), 35)
    for seed in range(4):
        mask, params = random_mask("bank", (97, 131), seed, (0.02, 0.08), foreground=fg, bank=synthetic_bank)
        assert_valid(mask, (97, 131), (0.02, 0.08))
        assert not mask[~fg].any()
        assert np.array_equal(mask_from_params(params, foreground=fg, bank=synthetic_bank), mask)


@requires_data
def test_bank_of_real_magnetic_tile_masks():
    samples = split_defects(list_dataset(MAGNETIC_TILE)).synth
    bank = MaskBank.from_samples(samples)
    assert bank.defects == ["blowhole", "break", "crack", "fray", "uneven"]
    assert len(bank) + bank.skipped == len(samples)
    for defect in ("crack", "blowhole"):
        sources = {str(p) for p in bank.sources(defect)}
        assert sources <= {str(s.mask) for s in samples if s.defect == defect}
        for seed in range(3):
            mask, params = random_mask("bank", (97, 131), seed, bank=bank, defect=defect)
            assert_valid(mask, (97, 131), (0.005, 0.05))
            assert params["drawn"]["source"] in sources
            assert np.array_equal(mask_from_params(json.loads(json.dumps(params))), mask)


@pytest.fixture(scope="module")
def edge_bank(tmp_path_factory) -> MaskBank:
    """A 'break' chipped off the left edge, and an 'uneven' band across the whole width at the top."""
    d = tmp_path_factory.mktemp("edge_bank")
    brk = np.zeros((100, 120), np.uint8)
    brk[40:60, :15] = 1
    band = np.zeros((100, 120), np.uint8)
    band[:25, :] = 1
    samples = []
    for name, m in {"break_a": brk, "uneven_a": band}.items():
        Image.fromarray(m * 255).save(d / f"{name}_mask.png")
        samples.append(Sample(d / f"{name}.png", d / f"{name}_mask.png", name.split("_")[0], "test"))
    return MaskBank.from_samples(samples)


def test_bank_masks_stay_where_they_sat_and_on_their_edge(edge_bank):
    """Default placement: an edge-attached mask stays on that edge (mirrored by a flip), a band keeps
    its direction, the angle stays small; the mask is regenerated bit for bit."""
    for seed in range(12):
        m, params = random_mask("bank", (200, 160), seed, None, bank=edge_bank, defect="break")
        drawn = params["drawn"]
        assert abs(drawn["angle"]) <= 15
        cols = np.flatnonzero((m > 0).any(axis=0))
        rows = np.flatnonzero((m > 0).any(axis=1))
        assert cols[0] == 0 or cols[-1] == 159, (seed, cols[0], cols[-1])   # on the left edge, or flipped right
        assert 40 < rows.mean() < 160                                         # about where it sat (40-60 %)
        assert np.array_equal(mask_from_params(json.loads(json.dumps(params)), bank=edge_bank), m)
        band, _ = random_mask("bank", (200, 160), seed, None, bank=edge_bank, defect="uneven")
        (_, _), (w, h), angle = cv2.minAreaRect(np.argwhere(band > 0).astype(np.float32))
        rows = np.flatnonzero((band > 0).any(axis=1))
        assert rows[0] == 0 or rows[-1] == 199                                # top edge, or bottom if flipped
        assert (band > 0).any(axis=0).mean() > 0.75                           # still across the part


def test_bank_free_placement_and_any_rotation_stay_an_option(edge_bank):
    angles, lefts = [], []
    for seed in range(12):
        _, params = random_mask("bank", (200, 160), seed, None, bank=edge_bank, defect="break",
                                placement="anywhere", rotation=180)
        angles.append(params["drawn"]["angle"])
        lefts.append(params["drawn"]["left"])
    assert max(angles) > 90 and len(set(lefts)) > 6
    with pytest.raises(SardInputError, match="placement"):
        random_mask("bank", (64, 64), 0, None, bank=edge_bank, placement="middle")
    with pytest.raises(SardInputError, match="rotation"):
        random_mask("bank", (64, 64), 0, None, bank=edge_bank, rotation=400)


# -- editing a mask -----------------------------------------------------------------------------------

def test_grow_dilates_and_erodes_by_a_disk():
    dot = np.zeros((41, 41), bool)
    dot[20, 20] = True
    assert np.array_equal(grow_mask(dot, 5), disc((41, 41), (20, 20), 5) | grow_mask(dot, 5))
    assert grow_mask(dot, 5).sum() == (cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11)) > 0).sum()
    square = np.zeros((40, 40), bool)
    square[10:30, 10:30] = True
    assert np.array_equal(grow_mask(square, -2), np.pad(np.ones((16, 16), bool), 12))   # a disk erodes a square evenly
    assert not grow_mask(square, -10).any() and np.array_equal(grow_mask(square, 0), square)
    assert (grow_mask(grow_mask(square, 3), -3) >= square).all()


def test_feather_fades_inside_the_mask_only():
    m = disc((64, 64), (32, 32), 20)
    w = feather_weights(m, 6)
    dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
    assert (w[~m] == 0).all() and (w[dist >= 6] == 1).all()
    ring = m & (dist < 6)
    assert ((w[ring] > 0) & (w[ring] < 1)).all()
    order = np.argsort(dist[ring])                       # rises with the distance from the edge
    assert (np.diff(w[ring][order]) >= -1e-6).all()
    assert np.array_equal(feather_weights(m, 0), m.astype(np.float32))
    edge = np.zeros((30, 30), bool)
    edge[:, :10] = True                                  # on the image's border: no fade there
    assert (feather_weights(edge, 4)[:, :6] == 1).all()
    source = np.full((64, 64), 30000, np.uint16)
    result = np.full((64, 64), 10000, np.uint16)
    out = feather(result, source, w)
    assert out.dtype == np.uint16 and np.array_equal(out[~m], source[~m])
    assert np.array_equal(out[dist >= 6], result[dist >= 6]) and (out[ring] > 10000).all()
    rgb = feather(np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 200, np.uint8), w)
    assert rgb.shape == (64, 64, 3) and (rgb[m & (dist >= 6)] == 0).all() and (rgb[~m] == 200).all()


# -- a checkpoint's own bank ------------------------------------------------------------------------

def same_bank(a: MaskBank, b: MaskBank) -> bool:
    return a.defects == b.defects and all(
        len(a.sources(d)) == len(b.sources(d)) and all(
            np.array_equal(a.crop(p), b.crop(q)) and a.box(p) == b.box(q) for p, q in zip(a.sources(d), b.sources(d)))
        for d in a.defects)


def test_bank_round_trip_through_a_checkpoint_folder(tmp_path, tiny_data):
    ck = tiny_checkpoint(tmp_path / "ck")
    assert read_bank(ck) is None
    folder = write_bank(ck, tiny_data)
    from_data = MaskBank.from_samples(split_defects(list_dataset(tiny_data)).synth)
    shipped = read_bank(ck)
    assert folder == ck / BANK_DIR and len(shipped) == len(from_data) == 4 and same_bank(shipped, from_data)
    assert all(Image.open(p).mode == "1" for p in folder.rglob("*.png"))
    for d in shipped.defects:   # the same masks drawn from either bank
        a = random_mask("bank", (80, 90), 5, None, bank=shipped, defect=d)[0]
        b = random_mask("bank", (80, 90), 5, None, bank=from_data, defect=d)[0]
        assert np.array_equal(a, b) and a.any()
    meta = json.loads((folder / "bank.json").read_text())
    assert meta["data"] == tiny_data.name and meta["split_seed"] == 0
    assert set(meta["sources"].values()) == {str(s.mask.relative_to(tiny_data)) for s in split_defects(
        list_dataset(tiny_data)).synth}
    write_bank(ck, tiny_data)          # written again: replaced whole, no temporary folder left
    assert sorted(p.name for p in ck.iterdir()) == ["bank", "config.json", "model.safetensors"]


def test_bank_over_the_size_limit_is_refused_before_writing(tmp_path, tiny_data):
    ck = tiny_checkpoint(tmp_path / "ck")
    with pytest.raises(SardInputError, match=r"4 bank masks take \d+ bytes; expected at most 100"):
        write_bank(ck, tiny_data, max_bytes=100)
    assert sorted(p.name for p in ck.iterdir()) == ["config.json", "model.safetensors"]
    write_bank(ck, tiny_data)
    (ck / BANK_DIR / "crack").rename(ck / BANK_DIR / "gone")
    with pytest.raises(SardInputError, match="missing"):
        read_bank(ck)


def test_write_bank_command(tmp_path, tiny_data):
    ck = tiny_checkpoint(tmp_path / "ck")
    r = run_module("sard.export", "--write-bank", ck, "--data", tiny_data, timeout=120)
    assert r.returncode == 0 and "4 masks" in r.stderr, r.stderr
    r = run_module("sard.export", "--write-bank", ck, "--data", tmp_path / "nothing", timeout=120)
    assert r.returncode == 2 and "nothing" in r.stderr and "Traceback" not in r.stderr


def test_the_shipped_checkpoint_carries_its_bank():
    ck = REPO / "checkpoints" / "sard-magnetic-tile"
    bank = read_bank(ck)
    assert bank.defects == json.loads((ck / "config.json").read_text())["defects"] and len(bank) == 131
    assert sum(p.stat().st_size for p in (ck / BANK_DIR).rglob("*")) <= BANK_MAX_BYTES
    if MAGNETIC_TILE.is_dir():   # the masks of its training third, nothing held out
        assert same_bank(bank, MaskBank.from_samples(split_defects(list_dataset(MAGNETIC_TILE)).synth))


@requires_data
def test_real_defects_lie_on_the_part_found_for_bottle_and_a_texture_has_no_part():
    from sard.data import list_dataset
    from sard.masks import real_mask_share
    assert real_mask_share(list_dataset(BOTTLE), n=10) >= 0.9
    assert real_mask_share(list_dataset(MAGNETIC_TILE), n=5) is None


def test_part_for_masks_modes():
    from sard.masks import part_for_masks
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 32) ** 2 + (xx - 32) ** 2 < 20 ** 2
    image = np.where(disk, 180, 20).astype(np.uint8)
    assert np.array_equal(part_for_masks(image, "auto").mask, disk)
    assert part_for_masks(image, "off").mask is None and part_for_masks(image, "on").why == "on the part"
    texture = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    assert part_for_masks(texture, "auto").mask is None and part_for_masks(texture, "on").mask is not None
    with pytest.raises(SardInputError, match="on-part mode 'maybe'"):
        part_for_masks(image, "maybe")
