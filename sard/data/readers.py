"""List the samples of a data set: pure functions returning `Sample`s, pairs matched by stem.

Layouts (detected by `list_dataset`):
- MVTec-AD: `<root>/train/good/*`, `<root>/test/<defect>/*`, `<root>/ground_truth/<defect>/<stem>_mask.png`
  (also `../shared/data/magnetic_tile`).
- BTAD: `<root>/train/ok/*`, `<root>/test/{ok,ko}/*`, `<root>/ground_truth/ko/<stem>.png`.
- Plain folder: `<root>/images/[<defect>/]*` + `<root>/masks/[<defect>/]<stem>[_mask].*`,
  normal images (optional) in `<root>/good/` or `<root>/normal/`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sard.io import SardInputError, is_image_file

GOOD_NAMES = ("good", "ok")
LAYOUT_HELP = ("expected the MVTec-AD layout (train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png), "
               "the BTAD layout (train/ok, test/ko, ground_truth/ko/<stem>.png) or a plain folder "
               "(images/ + masks/ matched by stem, normals in good/)")


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None    # None for a normal image
    defect: str          # "good" for normal images
    split: str           # "train" or "test", as the layout files it

    @property
    def is_normal(self) -> bool:
        return self.mask is None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def _mask_index(mask_dir: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in _images(mask_dir):
        index.setdefault(p.stem[:-5] if p.stem.endswith("_mask") else p.stem, p)
    return index


def _paired(image_dir: Path, mask_dir: Path, defect: str, split: str) -> list[Sample]:
    index = _mask_index(mask_dir)
    out = []
    for img in _images(image_dir):
        mask = index.get(img.stem)
        if mask is None:
            raise SardInputError(f"{img}: defect image has no mask; expected {mask_dir}/{img.stem}_mask.png "
                                 f"(or {img.stem}.png) beside the other masks of '{defect}'")
        out.append(Sample(img, mask, defect, split))
    return out


def list_anomaly_layout(root: Path) -> list[Sample]:
    """MVTec-AD and BTAD: train/<good|ok>, test/<defect|good|ok>, ground_truth/<defect>."""
    samples = []
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for sub in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if sub.name in GOOD_NAMES:
                samples += [Sample(p, None, "good", split) for p in _images(sub)]
            else:
                samples += _paired(sub, root / "ground_truth" / sub.name, sub.name, split)
    return samples


def list_plain_folder(root: Path) -> list[Sample]:
    """images/ (+ optional defect subfolders) and masks/ matched by stem; normals in good/ or normal/."""
    samples = []
    img_root, mask_root = root / "images", root / "masks"
    subdirs = sorted(p for p in img_root.iterdir() if p.is_dir()) if img_root.is_dir() else []
    if subdirs:
        for sub in subdirs:
            samples += _paired(sub, mask_root / sub.name, sub.name, "test")
    else:
        samples += _paired(img_root, mask_root, "defect", "test")
    for name in ("good", "normal"):
        samples += [Sample(p, None, "good", "train") for p in _images(root / name)]
    return samples


def list_dataset(root: str | Path) -> list[Sample]:
    """All samples under `root`, layout detected; SardInputError if missing or empty."""
    root = Path(root)
    if not root.exists():
        raise SardInputError(f"data folder {root} does not exist; {LAYOUT_HELP}")
    if not root.is_dir():
        raise SardInputError(f"data folder {root} is a file, not a folder; {LAYOUT_HELP}")
    if (root / "images").is_dir():
        samples = list_plain_folder(root)
    else:
        samples = list_anomaly_layout(root)
    if not samples:
        raise SardInputError(f"data folder {root} holds no images; {LAYOUT_HELP}")
    return samples


def defect_types(samples: list[Sample]) -> list[str]:
    return sorted({s.defect for s in samples if not s.is_normal})


def normals(samples: list[Sample], split: str | None = None) -> list[Sample]:
    return [s for s in samples if s.is_normal and (split is None or s.split == split)]


def normal_images(samples: list[Sample], split: str, fallback: bool = True) -> list[Path]:
    """The normal images of `split` ("train": what synthesis starts from; "test": held out); with
    `fallback`, every normal image where that split has none (a plain folder of parts)."""
    chosen = normals(samples, split) or (normals(samples) if fallback else [])
    return [s.image for s in chosen]
