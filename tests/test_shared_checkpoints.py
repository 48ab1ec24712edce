"""One copy of each model file in git: the ablation twin of a shipped model (the `sard` variant of each
category) is a relative symbolic link to it, and every other ablation's mask bank links to its shipped
model's bank."""
import os

import pytest

from conftest import REPO
from sard.store.model_folder import WEIGHTS_NAME, resolve_checkpoint
from sard.store.tensors import file_hash
from sard.io import replace_folder
from sard.masks import read_bank

CHECKPOINTS = REPO / "checkpoints"
LINKS = {"ablations/magnetic_tile/sard": "../../sard-magnetic-tile", "ablations/bottle/sard": "../../sard-bottle",
         **{f"ablations/magnetic_tile/{v}/bank": "../../../sard-magnetic-tile/bank" for v in ("ddgan", "w_rcd", "w_dmg")},
         **{f"ablations/bottle/{v}/bank": "../../../sard-bottle/bank" for v in ("ddgan", "w_rcd", "w_dmg")}}


@pytest.mark.parametrize("link", LINKS)
def test_a_shared_folder_is_a_relative_link_inside_checkpoints(link):
    path = CHECKPOINTS / link
    assert path.is_symlink() and os.readlink(path) == LINKS[link]
    assert path.resolve().is_relative_to(CHECKPOINTS.resolve()) and path.resolve().is_dir()


@pytest.mark.parametrize("folder", sorted(p.relative_to(CHECKPOINTS).as_posix()
                                          for p in (CHECKPOINTS / "ablations").glob("*/*")))
def test_every_ablation_reads_through_its_links(folder):
    ck = resolve_checkpoint(CHECKPOINTS / folder)          # a path, not a shipped name: kept as given
    assert ck == CHECKPOINTS / folder and (ck / WEIGHTS_NAME).is_file()
    shipped = CHECKPOINTS / ("sard-magnetic-tile" if "magnetic_tile" in folder else "sard-bottle")
    assert read_bank(ck).defects == read_bank(shipped).defects


@pytest.mark.parametrize("category,shipped", [("magnetic_tile", "sard-magnetic-tile"), ("bottle", "sard-bottle")])
def test_each_shipped_model_and_its_ablation_twin_are_one_model(category, shipped):
    twin, shipped = CHECKPOINTS / f"ablations/{category}/sard", CHECKPOINTS / shipped
    assert file_hash(twin / WEIGHTS_NAME) == file_hash(shipped / WEIGHTS_NAME)
    assert twin.resolve() == shipped.resolve()


def test_replacing_a_linked_folder_unlinks_it_and_keeps_the_shared_one(tmp_path):
    shared, model = tmp_path / "shipped" / "bank", tmp_path / "ablation"
    shared.mkdir(parents=True)
    (shared / "bank.json").write_text("shared")
    model.mkdir()
    (model / "bank").symlink_to("../shipped/bank")
    staged = model / ".bank.tmp"
    staged.mkdir()
    (staged / "bank.json").write_text("own")
    replace_folder(staged, model / "bank")
    assert not (model / "bank").is_symlink() and (model / "bank" / "bank.json").read_text() == "own"
    assert (shared / "bank.json").read_text() == "shared"
