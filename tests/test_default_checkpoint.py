"""The shipped checkpoint: each defect type on a held-out normal tile with a bank mask."""
import json

import numpy as np
import pytest

from conftest import MAGNETIC_TILE, REPO, requires_data
from sard.data import list_dataset, split_defects
from sard.pipeline import DEFAULT_CHECKPOINT
from sard.io import read_image
from sard.masks import MaskBank, random_mask
from sard.pipeline import SardPipeline


def test_shipped_checkpoint_is_small_safetensors_with_its_config():
    assert DEFAULT_CHECKPOINT == REPO / "checkpoints" / "sard-magnetic-tile"
    files = sorted(p.name for p in DEFAULT_CHECKPOINT.iterdir() if p.is_file())
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".pt", ".pth", ".ckpt", ".pkl"))]
    size = sum(p.stat().st_size for p in DEFAULT_CHECKPOINT.rglob("*") if p.is_file())
    assert size < 30e6
    cfg = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    assert cfg["defects"] == ["blowhole", "break", "crack", "fray", "uneven"] and cfg["rcd"] and cfg["dmg"]


@requires_data
@pytest.mark.parametrize("defect", ["blowhole", "break", "crack", "fray", "uneven"])
def test_each_defect_type_keeps_the_contract(defect):
    pipe = SardPipeline.from_pretrained(DEFAULT_CHECKPOINT, device="cpu")
    samples = list_dataset(MAGNETIC_TILE)
    bank = MaskBank.from_samples(split_defects(samples, pipe.config["split_seed"]).synth)
    held_out_normal = [s.image for s in samples if s.is_normal and s.split == "test"][11]
    image = read_image(held_out_normal)
    m, _ = random_mask("bank", image.shape[:2], 3, None, bank=bank, defect=defect)
    m = m > 0
    a = pipe(image, m, seed=5, defect=defect)
    b = pipe(image, m, seed=5, defect=defect)
    out = np.asarray(a.image)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.array_equal(out[~m], image[~m])                       # exact background
    diff = np.abs(out[m].astype(int) - image[m].astype(int))
    assert (diff > 0).mean() > 0.5 and diff.mean() > 2               # a real change inside the mask
    assert np.array_equal(out, np.asarray(b.image))                  # same seed, same output
