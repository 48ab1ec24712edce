"""Writers that never leave a half: replace_folder swaps a new folder in, whatever interrupts it."""
from pathlib import Path

import pytest

from sard import io as sio


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    dest, staged = tmp_path / "bank", tmp_path / ".bank.tmp"
    dest.mkdir()
    (dest / "old.png").write_bytes(b"old")
    staged.mkdir()
    (staged / "new.png").write_bytes(b"new")
    return dest, staged


def test_replace_folder_puts_the_new_folder_in_place_and_drops_the_old(tmp_path):
    dest, staged = _folders(tmp_path)
    sio.replace_folder(staged, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["new.png"] and not staged.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank"]


@pytest.mark.parametrize("killed_in", ["rename", "rmtree"])
def test_a_kill_inside_replace_folder_leaves_a_complete_folder_there(tmp_path, monkeypatch, killed_in):
    dest, staged = _folders(tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")
    if killed_in == "rename":      # between taking the old folder away and putting the new one there
        monkeypatch.setattr(Path, "rename", killed)
    else:
        monkeypatch.setattr(sio.shutil, "rmtree", killed)
    try:
        sio.replace_folder(staged, dest)
    except KeyboardInterrupt:
        pass
    assert dest.is_dir()
    assert sorted(p.name for p in dest.iterdir()) in (["old.png"], ["new.png"])
