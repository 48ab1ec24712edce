"""tools.pair_sheet: two methods' pairs side by side, row by row on the same normal and mask."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from sard.io import atomic_save_png

ROOT = Path(__file__).resolve().parents[1]


def pair_folder(root: Path, normal: Path, fill: int, n: int = 3) -> Path:
    """A pair folder as sard.export writes it: test/<type>/k.png, ground_truth/<type>/k_mask.png, manifest.jsonl."""
    lines = []
    for k in range(n):
        img = np.asarray(Image.open(normal)).copy()
        m = np.zeros(img.shape, bool)
        m[10 + 5 * k:40, 20:70] = True
        img[m] = fill
        atomic_save_png(root / f"test/fray/{k:04d}.png", img)
        atomic_save_png(root / f"ground_truth/fray/{k:04d}_mask.png", m.astype(np.uint8) * 255)
        lines.append({"defect": "fray", "index": k, "image": f"test/fray/{k:04d}.png", "mask": f"ground_truth/fray/{k:04d}_mask.png",
                      "mask_sha256": str(k), "normal": str(normal)})
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def run(*args):
    return subprocess.run([sys.executable, "-m", "tools.pair_sheet", *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def test_the_sheet_holds_a_row_per_pair_and_refuses_pairs_on_other_normals(tmp_path):
    normal = tmp_path / "good.png"
    atomic_save_png(normal, np.random.default_rng(0).integers(0, 256, (60, 90), dtype=np.uint8))
    a, b = pair_folder(tmp_path / "a", normal, 0), pair_folder(tmp_path / "b", normal, 255)
    r = run(a, "dark", b, "light", tmp_path / "sheet.png", "--rows", 2)
    assert r.returncode == 0, r.stderr
    sheet = np.asarray(Image.open(tmp_path / "sheet.png").convert("L"))
    assert sheet.shape[0] == 16 + 2 * (180 + 4) + 16          # two rows under the labels, a caption below
    cols = [sheet[16:196, 186 * c:186 * c + 180] for c in range(4)]   # normal, mask, a, b: the row's pictures
    assert cols[2].min() == 0 and cols[3].max() == 255 and (cols[2] != cols[3]).any()
    other = tmp_path / "other.png"
    atomic_save_png(other, np.zeros((60, 90), np.uint8))
    c = pair_folder(tmp_path / "c", other, 255)
    r = run(a, "dark", c, "light", tmp_path / "bad.png")
    assert r.returncode != 0 and "differs in its normal or mask" in r.stderr and not (tmp_path / "bad.png").exists()
