"""Native grain (card figure g) of exported pairs and of real defects, per type: the median over images
of the finest detail inside the mask over that of the part around it (sard.evaluation.grain).
    python -m tools.grain_probe DATA [PAIRS_DIR ...]
PAIRS_DIR: any folder under which manifest.jsonl files lie (sard.export's, or the segmentation
benchmark's --work/pairs/<method>); DATA: the data set whose real test defects are the reference.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from sard.data import list_dataset
from sard.evaluation.grain import grain_ratio
from sard.io import read_image, read_mask
from sard.pairs import manifest_lines


def medians(rows: list[tuple[str, float | None]]) -> dict:
    types = sorted({t for t, v in rows if v is not None})
    return {t: round(float(np.median([v for tt, v in rows if tt == t and v is not None])), 2) for t in types}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tools.grain_probe", description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("pairs", nargs="*", type=Path)
    a = p.parse_args()
    real = []
    for s in list_dataset(a.data):
        if not s.is_normal and s.mask is not None:
            image = read_image(s.image)
            real.append((s.defect, grain_ratio(image, read_mask(s.mask, size=image.shape[:2]) > 0)))
    print(json.dumps({"real": str(a.data), "grain": medians(real), "n": len(real)}))
    for folder in a.pairs:
        rows = []
        for root, rec in manifest_lines(folder):
            image = read_image(root / rec["image"])
            rows.append((rec["defect"], grain_ratio(image, read_mask(root / rec["mask"]) > 0)))
        print(json.dumps({"pairs": str(folder), "grain": medians(rows), "n": len(rows)}))


if __name__ == "__main__":
    main()
