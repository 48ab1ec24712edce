"""Shared test fixtures. Real data comes from ../shared/data (or $SARD_DATA); tests that need it
skip with that reason when it is absent, the rest still run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("SARD_DATA", REPO.parent / "shared" / "data"))
MAGNETIC_TILE = DATA_ROOT / "magnetic_tile"
requires_data = pytest.mark.skipif(
    not MAGNETIC_TILE.is_dir(), reason=f"real data not found at {MAGNETIC_TILE} (set SARD_DATA to its parent)")


def run_module(module: str, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """python -m <module> <args> in a subprocess, as a user runs it."""
    e = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
         **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=REPO)


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
    from sard.checkpoint import save_model
    from sard.nets.generator import Generator, GeneratorConfig
    from sard.pipeline import MODEL_FORMAT
    torch.manual_seed(seed)
    cfg = GeneratorConfig(image_channels=channels, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                          num_classes=len(defects) if len(defects) > 1 else 0)
    g = Generator(cfg)
    for blk in [*g.down, *g.mid, *g.up]:  # non-zero residual branches so the output depends on the input
        torch.nn.init.normal_(blk.conv2.weight, std=0.05)
    save_model(folder, g.state_dict(), {"format": MODEL_FORMAT, "generator": cfg.to_dict(),
                                        "schedule": {"num_steps": 4}, "defects": list(defects), "res": 32})
    return folder
