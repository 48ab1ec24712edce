"""Shared test fixtures. Real data comes from ../shared/data (or $SARD_DATA); tests that need it
skip with that reason when it is absent, the rest run on a tiny data set made here (`tiny_data`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("SARD_DATA", REPO.parent / "shared" / "data"))
MAGNETIC_TILE = DATA_ROOT / "magnetic_tile"
BOTTLE = DATA_ROOT / "bottle"
requires_data = pytest.mark.skipif(
    not MAGNETIC_TILE.is_dir(), reason=f"real data not found at {MAGNETIC_TILE} (set SARD_DATA to its parent)")
requires_bottle = pytest.mark.skipif(
    not BOTTLE.is_dir(), reason=f"real data not found at {BOTTLE} (set SARD_DATA to its parent)")


def run_module(module: str, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """python -m <module> <args> in a subprocess, as a user runs it."""
    e = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
         **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=REPO)


KILL_AT = """
import os, runpy, sys
func, k = sys.argv[1], int(sys.argv[2])
real, calls = getattr(os, func), [0]
def dying(*a, **kw):
    calls[0] += 1
    if calls[0] == k and os.environ.get("SARD_FAULT") == "enospc":   # from here on the disk is full
        calls[0] -= 1
        raise OSError(28, "No space left on device", a[0] if a and isinstance(a[0], str) else None)
    if calls[0] == k:
        if func == "write":   # a torn write: half the bytes reach the file, then the kill
            real(a[0], bytes(a[1])[: len(a[1]) // 2])
        os._exit(137)
    return real(*a, **kw)
setattr(os, func, dying)
sys.argv = [sys.argv[3], *sys.argv[4:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run_killed(func: str, k: int, module: str, *args: str, timeout: float = 600,
               fault: str = "kill") -> subprocess.CompletedProcess:
    """python -m <module> <args>, killed (os._exit, no clean-up) at the k-th call of os.<func>:
    a SIGKILL aimed at one write boundary; exit status 137 when the kill came. fault="enospc": that
    call and every later one fail as on a full disk instead."""
    e = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SARD_FAULT": fault}
    return subprocess.run([sys.executable, "-c", KILL_AT, func, str(k), module, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=e, cwd=REPO)


def copy_subset(dst: Path, per_defect: dict[str, int], normals: int = 4) -> Path:
    """A small MVTec-layout copy of magnetic_tile: the first n images (and masks) of each defect type."""
    src = MAGNETIC_TILE
    for defect, n in per_defect.items():
        imgs = sorted((src / "test" / defect).iterdir())[:n]
        (dst / "test" / defect).mkdir(parents=True, exist_ok=True)
        (dst / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
        for p in imgs:
            shutil.copy(p, dst / "test" / defect / p.name)
            m = f"{p.stem}_mask.png"
            shutil.copy(src / "ground_truth" / defect / m, dst / "ground_truth" / defect / m)
    (dst / "train" / "good").mkdir(parents=True, exist_ok=True)
    for p in sorted((src / "train" / "good").iterdir())[:normals]:
        shutil.copy(p, dst / "train" / "good" / p.name)
    return dst


@pytest.fixture
def small_data(tmp_path: Path) -> Path:
    if not MAGNETIC_TILE.is_dir():
        pytest.skip(f"real data not found at {MAGNETIC_TILE} (set SARD_DATA to its parent)")
    return copy_subset(tmp_path / "mt", {"crack": 6, "blowhole": 6})


def tiny_checkpoint(folder: Path, defects=("crack", "blowhole"), channels: int = 1, seed: int = 0) -> Path:
    """A randomly initialised (untrained) small generator saved as a real checkpoint folder: fast, and
    enough to test every contract that does not depend on training."""
    import torch
    from sard.nets.generator import Generator, GeneratorConfig
    from sard.schedule import ScheduleConfig
    from sard.store.model_folder import ModelConfig, save_model
    torch.manual_seed(seed)
    cfg = GeneratorConfig(image_channels=channels, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                          num_classes=len(defects) if len(defects) > 1 else 0)
    g = Generator(cfg)
    for blk in [*g.down, *g.mid, *g.up]:  # non-zero residual branches so the output depends on the input
        torch.nn.init.normal_(blk.conv2.weight, std=0.05)
    save_model(folder, g.state_dict(), ModelConfig(cfg, ScheduleConfig(num_steps=4), list(defects), res=32))
    return folder


def texture(shape, seed: int) -> np.ndarray:
    """A gray tile-like texture: smooth blobs plus grain (uint8)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(128, 30, (shape[0] // 8 + 1, shape[1] // 8 + 1))
    big = np.kron(coarse, np.ones((8, 8)))[: shape[0], : shape[1]]
    return np.clip(big + rng.normal(0, 6, shape), 0, 255).astype(np.uint8)


def make_tiny_data(root: Path, defects=("blowhole", "crack"), per_defect: int = 6, normals: int = 4,
                   size=(64, 64), colour: bool = False) -> Path:
    """An MVTec-layout data set of synthetic gray tiles (greenish RGB ones with colour=True): dark
    defects with their masks, and normals."""
    tint = (lambda a: np.clip(a[..., None] * np.array([0.9, 1.1, 0.5]), 0, 255).astype(np.uint8)) if colour \
        else (lambda a: a)  # noqa: E731
    for d, defect in enumerate(defects):
        (root / "test" / defect).mkdir(parents=True, exist_ok=True)
        (root / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
        for i in range(per_defect):
            img = texture(size, 100 * d + i)
            m = np.zeros(size, np.uint8)
            y, x = 10 + 5 * i % 30, 12 + 7 * i % 30
            if defect == "crack":
                m[y:y + 3, x:x + 20] = 255
            else:
                m[y:y + 8, x:x + 8] = 255
            img[m > 0] //= 3
            Image.fromarray(tint(img)).save(root / "test" / defect / f"{i:03d}.png")
            Image.fromarray(m).save(root / "ground_truth" / defect / f"{i:03d}_mask.png")
    for split, n in (("train", normals), ("test", 2)):
        (root / split / "good").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(tint(texture(size, 1000 + 10 * (split == "test") + i))).save(
                root / split / "good" / f"{i:03d}.png")
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_tiny_data(tmp_path / "mt")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Torch in the test process on one thread: two threads slow several-fold on busy cores."""
    import torch
    torch.set_num_threads(1)


@pytest.fixture
def unwritable(tmp_path: Path):
    """A folder no file can be written in: read-only for a user, a read-only mount for root."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o500)
        yield d
        d.chmod(0o700)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("root without mount rights: no folder is unwritable here")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)
