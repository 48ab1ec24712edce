"""The shipped checkpoints: each defect type on a held-out normal image with a mask of its own bank."""
import json

import numpy as np
import pytest

from conftest import BOTTLE, MAGNETIC_TILE, REPO, requires_bottle, requires_data
from sard.data import list_dataset
from sard.io import read_image
from sard.masks import random_mask, read_bank
from sard.pipeline import SardPipeline
from sard.store.model_folder import DEFAULT_CHECKPOINT, resolve_checkpoint

SHIPPED = {"sard-magnetic-tile": (["blowhole", "break", "crack", "fray", "uneven"], 1),
           "sard-bottle": (["broken_large", "broken_small", "contamination"], 3)}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_is_small_safetensors_with_its_config_and_bank(name):
    folder = resolve_checkpoint(name)
    assert folder == REPO / "checkpoints" / name
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert "model.safetensors" in files and "config.json" in files and "README.md" in files
    assert not [f for f in files if f.endswith((".pt", ".pth", ".ckpt", ".pkl"))]
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 30e6
    cfg = json.loads((folder / "config.json").read_text())
    defects, channels = SHIPPED[name]
    assert cfg["defects"] == defects and cfg["rcd"] and cfg["dmg"]
    assert cfg["generator"]["image_channels"] == channels
    assert read_bank(folder).defects == defects                      # works without the data set
    assert DEFAULT_CHECKPOINT.name == "sard-magnetic-tile"


def _contract(name, data, defect, normal_index):
    folder = resolve_checkpoint(name)
    pipe = SardPipeline.from_pretrained(folder, device="cpu")
    held_out_normal = [s.image for s in list_dataset(data) if s.is_normal and s.split == "test"][normal_index]
    image = read_image(held_out_normal)
    m, _ = random_mask("bank", image.shape[:2], 3, None, bank=read_bank(folder), defect=defect)
    m = m > 0
    a = pipe(image, m, seed=5, defect=defect)
    b = pipe(image, m, seed=5, defect=defect)
    out = np.asarray(a.image)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.array_equal(out[~m], image[~m])                       # exact background
    diff = np.abs(out[m].astype(int) - image[m].astype(int))
    assert (diff > 0).mean() > 0.5 and diff.mean() > 2               # a real change inside the mask
    assert np.array_equal(out, np.asarray(b.image))                  # same seed, same output
    return pipe, image, out, m


@requires_data
@pytest.mark.parametrize("defect", SHIPPED["sard-magnetic-tile"][0])
def test_each_tile_defect_type_keeps_the_contract(defect):
    _contract("sard-magnetic-tile", MAGNETIC_TILE, defect, 11)


@requires_bottle
@pytest.mark.parametrize("defect", SHIPPED["sard-bottle"][0])
def test_each_bottle_defect_type_keeps_the_contract_in_colour(defect):
    pipe, image, out, m = _contract("sard-bottle", BOTTLE, defect, 4)
    assert pipe.colour_mode(image) == "rgb" and image.ndim == 3
    # an RGB model paints colour: the channels inside the mask do not move together
    d = out[m].astype(float) - image[m].astype(float)
    assert np.abs(d[:, 0] - d[:, 1]).mean() > 1 or np.abs(d[:, 1] - d[:, 2]).mean() > 1
