"""The realism test (C2ST) separates what differs and not what does not; the commands run end to end."""
import json

import numpy as np

from conftest import MAGNETIC_TILE, requires_data, run_module, tiny_checkpoint
from sard.data import list_dataset, split_defects
from sard.evaluation.realism import CropSet, c2st_accuracy, real_crops


def _crops(n, rng, noise):
    imgs = rng.normal(128, 20, (n, 32, 32))
    masks = np.zeros((n, 32, 32), bool)
    masks[:, 10:20, 10:20] = True
    imgs[masks] += noise * rng.normal(0, 60, int(masks.sum()))
    return CropSet(np.clip(imgs, 0, 255).astype(np.uint8), masks, ["d"] * n)


def test_c2st_tells_different_sets_apart_and_not_identical_ones():
    rng = np.random.default_rng(0)
    a, b, noisy = _crops(80, rng, 0.0), _crops(80, rng, 0.0), _crops(80, rng, 1.0)
    assert c2st_accuracy(a, noisy, seed=0, epochs=15) > 0.85
    assert abs(c2st_accuracy(a, b, seed=0, epochs=15) - 0.5) < 0.15


@requires_data
def test_real_crops_come_from_held_out_defects_only():
    split = split_defects(list_dataset(MAGNETIC_TILE))
    crops, pairs = real_crops(split.held_out[:20], 48)
    assert crops.images.shape == (len(pairs), 48, 48) and crops.masks[:, :, :].any(axis=(1, 2)).all()
    assert not {s.image for s in split.synth} & {s.image for s in split.held_out}


@requires_data
def test_realism_and_card_commands(tmp_path, small_data):
    ck = tiny_checkpoint(tmp_path / "ck")
    out = tmp_path / "realism.json"
    r = run_module("sard.evaluate", "realism", "--data", small_data, "--methods", f"cutpaste,tiny={ck}",
                   "--res", "32", "--context", "64", "--seeds", "1", "--epochs", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert set(rep["methods"]) == {"cutpaste", "tiny"}
    assert all(0 <= m["mean"] <= 1 for m in rep["methods"].values()) and rep["real_crops"] == 8
    md = out.with_suffix(".md").read_text()
    assert "| cutpaste |" in md and "| *Nothing painted* (reference) |" in md
    floor = rep["floor"]["mean"]        # every report carries the floor and each method's distance below it
    assert 0 <= floor <= 1 and rep["device"] == "cpu" and rep["channels"] == 1
    assert all(abs(m["below_floor"] - (floor - m["mean"])) < 1e-12 for m in rep["methods"].values())
    from PIL import Image
    sheet = Image.open(out.with_suffix(".png"))       # real, its mask, Nothing painted and the two methods
    assert f"![crops]({out.with_suffix('.png').name})" in md and sheet.width >= 5 * 96 and sheet.height > 96
    r = run_module("sard.evaluate", "card", "--checkpoint", ck, "--data", small_data, "--n", "4",
                   "--quality-per-type", "2", "--realism", out, "--out", tmp_path / "card")
    assert r.returncode == 0, r.stderr
    fig = json.loads((tmp_path / "card" / "figures.json").read_text())
    assert fig["background"]["max_abs_diff_outside_mask"] == 0 and fig["background"]["syntheses"] == 4
    assert (tmp_path / "card" / "grid_crack.png").is_file()
    # real held-out defects beside their repaints: one row of 160 px (+ 6 px gap) per defect, at most 4
    from PIL import Image
    repaint = Image.open(tmp_path / "card" / "repaint_crack.png")
    rows, rest = divmod(repaint.height - 32, 166)
    assert rest == 0 and 1 <= rows <= 4 and "crack" in fig["repaint_grids"]
    # the step-through: the real defect and one frame per reverse step, 140 px rows, at most 2
    steps = Image.open(tmp_path / "card" / "steps_crack.png")
    rows, rest = divmod(steps.height - 32, 146)
    assert rest == 0 and 1 <= rows <= 2 and steps.width > 5 * 96 and "crack" in fig["step_grids"]
    # card.md: the same tables for any checkpoint, its C2ST taken from the realism report
    card = (tmp_path / "card" / "card.md").read_text()
    assert f"{100 * rep['methods']['tiny']['mean']:.1f} %" in card and "![crack](grid_crack.png)" in card
    assert f"*Nothing painted* scores {100 * floor:.1f} %" in card
    types = fig["types"]         # the tiny checkpoint paints two types: their separability is in the card
    assert sorted(types["types"]) == ["blowhole", "crack"] and 0 <= types["synthetic_accuracy"] <= 1
    assert f"synthesized **{100 * types['synthetic_accuracy']:.0f} %**" in card
    assert "![crack repainted](repaint_crack.png)" in card and "![crack step-through](steps_crack.png)" in card
    assert all(f"| {d} |" in card for d in fig["quality"]) and "**0** (bit-exact)" in card
    assert all(len(v["colour_real"]) == len(v["colour_synth"]) == 1 for v in fig["quality"].values())
    assert "(g) native grain synth / real" in card and all("grain_synth" in v for v in fig["quality"].values())
    r = run_module("sard.evaluate", "realism", "--data", tmp_path / "missing", "--out", out)
    assert r.returncode == 2 and "missing" in r.stderr
    # a C2ST name that is not in the report is refused before the card's work starts, not after it
    r = run_module("sard.evaluate", "card", "--checkpoint", ck, "--data", small_data, "--realism", out,
                   "--realism-method", "nosuch", "--out", tmp_path / "card2")
    assert r.returncode == 2 and "nosuch" in r.stderr and "--realism-method" in r.stderr
    assert not (tmp_path / "card2").exists()


def test_relative_real_spread_ignores_a_brighter_part_but_not_a_different_defect():
    """Two identical defects on parts 40 grey levels apart: 40 apart raw, 0 relative to their own
    surroundings; a defect of another depth stays different either way."""
    from sard.evaluation.card import _aligned_difference
    m = np.zeros((40, 40), bool)
    m[15:25, 12:28] = True
    a = np.full((40, 40), 100.0)
    a[m] = 60.0                                   # a dark defect on a mid-grey part
    b = a + 40.0                                  # the same defect on a brighter part
    c = a.copy()
    c[m] = 20.0                                   # a deeper defect on the first part
    assert _aligned_difference(a, m, b, m) == 40.0
    assert _aligned_difference(a, m, b, m, relative=True) == 0.0
    assert _aligned_difference(a, m, c, m, relative=True) == 40.0


def test_channel_means_are_taken_over_the_mask_only_per_channel():
    """The card's mean colour: R, G, B (or one gray level) over the mask's pixels, the rest ignored."""
    from sard.evaluation.card import _channel_means
    m = np.zeros((8, 8), bool)
    m[2:4, 2:6] = True
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[m] = (90, 60, 30)
    rgb[~m] = 255
    assert _channel_means(rgb, m).tolist() == [90.0, 60.0, 30.0]
    gray = np.where(m, 40, 200).astype(np.uint16)
    assert _channel_means(gray, m).tolist() == [40.0]


def _disc_normals(folder, n, rng):
    """Gray 96 px images of a bright disc (the part) on a dark background, each with its own noise."""
    from PIL import Image
    folder.mkdir()
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 48) ** 2 + (xx - 48) ** 2 < 34 ** 2
    paths = []
    for k in range(n):
        a = np.where(disc, 190.0, 25.0) + rng.normal(0, 8, (96, 96)) + 0.4 * yy
        paths.append(folder / f"{k:03d}.png")
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(paths[-1])
    return paths


def test_fakes_sit_where_the_real_crops_sit_so_nothing_painted_is_not_caught_by_place(tmp_path):
    """Real crops cut from normals at places on the part, fakes painted with nothing at the same
    places: the classifier cannot tell them apart; the same fakes drawn elsewhere are caught, which
    is what the old random windows let the classifier do. The mask's share on the part is measured."""
    from sard.evaluation.realism import Normals, Place, fake_crops, nothing_painted, place_on
    rng = np.random.default_rng(0)
    paths = _disc_normals(tmp_path / "n", 24, rng)
    normals = Normals(paths, channels=1, context=48)
    assert not normals.texture
    mask = np.zeros((32, 32), bool)
    mask[12:20, 10:22] = True
    places = [Place(mask, "d", (float(y), float(x))) for y, x in rng.uniform(0.3, 0.7, (80, 2))]
    real_imgs = []
    for k, p in enumerate(places):      # real crops: other normals at the same places
        img = normals.image(int(rng.integers(len(paths))))
        (t, l), _ = place_on(img, p, 32, 48)
        real_imgs.append(img[t:t + 32, l:l + 32])
    real = CropSet(np.stack(real_imgs), np.stack([mask] * len(places)), ["d"] * len(places))
    fake, on_part = fake_crops(nothing_painted, places, normals, 32, 48, seed=1)
    assert min(on_part) == 1.0
    assert abs(c2st_accuracy(real, fake, seed=0, epochs=10) - 0.5) < 0.15
    elsewhere = [Place(mask, "d", (0.12, float(x))) for _, x in rng.uniform(0.1, 0.9, (80, 2))]
    moved, moved_on_part = fake_crops(nothing_painted, elsewhere, normals, 32, 48, seed=1)
    assert np.mean(moved_on_part) < 0.5
    assert c2st_accuracy(real, moved, seed=0, epochs=10) > 0.85


def test_nothing_painted_returns_the_window_as_it_is():
    from sard.evaluation.realism import nothing_painted
    window = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = nothing_painted(window, np.ones((20, 30), bool), seed=3, defect="crack")
    assert np.array_equal(np.asarray(out.image), window) and out.mask.max() == 255


def test_the_card_says_which_device_made_it(tmp_path):
    from conftest import make_tiny_data
    ck, data = tiny_checkpoint(tmp_path / "ck"), make_tiny_data(tmp_path / "mt")
    r = run_module("sard.evaluate", "card", "--checkpoint", ck, "--data", data, "--n", "2", "--quality-per-type", "1",
                   "--device", "cpu", "--out", tmp_path / "card")
    assert r.returncode == 0, r.stderr
    fig = json.loads((tmp_path / "card" / "figures.json").read_text())
    assert fig["device"] == "cpu" and "GPU" not in fig["machine"]
    assert fig["background"]["max_abs_diff_outside_mask"] == 0
