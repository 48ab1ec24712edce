"""The type-separability figure: a painter that paints each type as its real defects look scores
well above chance; a painter blind to the type scores chance exactly, and its type swap changes
nothing while a new seed does."""
import numpy as np
from PIL import Image

from conftest import make_tiny_data
from sard.data import list_dataset, normal_images, split_defects
from sard.evaluation.defect_types import type_separability
from sard.evaluation.realism import Normals
from sard.results import SynthesisResult

TYPES = ["blowhole", "crack"]
FILL = {"blowhole": 20, "crack": 240}      # dark pits and bright cracks, on the real defects too


def data(tmp_path):
    root = make_tiny_data(tmp_path / "mt", per_defect=10)
    for img in (root / "test" / "crack").glob("*.png"):
        a = np.array(Image.open(img))
        m = np.array(Image.open(root / "ground_truth" / "crack" / f"{img.stem}_mask.png")) > 0
        a[m] = FILL["crack"]
        Image.fromarray(a).save(img)
    samples = list_dataset(root)
    split = split_defects(samples)
    return split, Normals(normal_images(samples, "train", fallback=False), channels=1, context=48)


def painter(by_type: bool):
    def paint(image, mask, seed=0, defect=None):
        out = np.array(image)
        noise = np.random.default_rng(seed).integers(0, 30, out.shape)
        out[mask] = np.clip((FILL[defect] if by_type else 20) + noise[mask], 0, 255)
        return SynthesisResult(image=out, mask=mask.astype(np.uint8) * 255, frames=[], roi=(0, 0, 0, 0))
    return paint


def test_types_painted_apart_are_told_apart_and_a_type_blind_painter_scores_chance(tmp_path):
    split, normals = data(tmp_path)
    apart = type_separability(painter(True), split.synth, split.held_out, normals, TYPES, res=32)
    blind = type_separability(painter(False), split.synth, split.held_out, normals, TYPES, res=32)
    assert apart["chance"] == blind["chance"] == 0.5 and apart["masks"] == len(split.held_out)
    assert apart["real_accuracy"] >= 0.75 and apart["synthetic_accuracy"] >= 0.75
    assert blind["synthetic_accuracy"] == 0.5          # the same picture for both types: one answer for both
    assert blind["type_swap_change"] == 0 < blind["seed_change"]
    assert apart["type_swap_change"] > 5 * apart["seed_change"]
    assert set(apart["synthetic_by_type"]) == set(TYPES)


def test_a_single_type_synthesizer_has_no_separability(tmp_path):
    split, normals = data(tmp_path)
    assert type_separability(painter(True), split.synth, split.held_out, normals, ["crack"], res=32) is None
