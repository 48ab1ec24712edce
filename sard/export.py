"""python -m sard.export: write synthetic defect image/mask pairs in the MVTec-AD (or folder) layout.

Every pair k of defect type d is a pure function of (seed, d, k) (sard.pair_recipe); its manifest
line records all of it, so `sard.pair_recipe.regenerate` rebuilds the pair bit for bit. Nothing is lost: files go through temporary names, the manifest line is written
before the final renames, existing pairs are never overwritten, and a rerun (resume is the
default) completes exactly the pairs that are missing.

`python -m sard.export --write-bank CHECKPOINT --data DATASET_ROOT` gives a model folder its real-mask
bank instead (sard.masks.write_bank), so the studio and `--masks bank` work without the data set.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from sard.data import list_dataset, split_defects
from sard.io import SardInputError
from sard.masks import BANK_PLACEMENTS, ON_PART_MODES, MaskBank, read_bank, real_mask_share, write_bank
from sard.pair_recipe import MAX_BATCH, ExportFailed, ExportPlan, MaskSource, check_room, find_normals, run_export
from sard.pairs import PairWriter, safe_name
from sard.devices import pick_device
from sard.store.model_folder import DEFAULT_CHECKPOINT, ModelConfig, resolve_checkpoint
from sard.synthesizers import METHODS, TEXTURED, Synthesizer, build
from sard.validate import check_defects, number, seed as check_seed, whole_number, writable_folder

MAX_PER_TYPE = 10**18      # a bound on the count alone; what the disk holds is check_room's
LAYOUTS = ("mvtec", "folder")


# -- command line ---------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sard.export", description=__doc__.split("\n")[0])
    p.add_argument("--method", default="sard", help=f"one of {', '.join(METHODS)} (default sard)")
    p.add_argument("--checkpoint", help=f"model folder or shipped name for --method sard (default {DEFAULT_CHECKPOINT.name})")
    p.add_argument("--normals", required=True, help="folder of normal images, or a data set root (its train normals)")
    p.add_argument("--masks", default="bank", help="perlin, ellipse, scratch, polygon, bank (real masks) or a folder of masks")
    p.add_argument("--bank", help="data set root whose synthesizer third gives the mask bank (default: --normals if a data set)")
    p.add_argument("--area", help="mask area range as fractions of the image (default 0.005,0.05; "
                                  "bank masks keep their natural size unless given)")
    p.add_argument("--bank-placement", choices=BANK_PLACEMENTS, default="source",
                   help="bank masks where they sat in their own image, edges kept (default), or anywhere")
    p.add_argument("--bank-rotation", type=float, default=15.0,
                   help="bank masks rotated by at most this many degrees (default 15; 180: any orientation)")
    p.add_argument("--on-part", nargs="?", const="on", default="auto", choices=ON_PART_MODES,
                   help="masks on the part (Otsu foreground): auto (default) for object images where the part is "
                        "found, on (the bare flag) always, off never")
    p.add_argument("--defects", help="comma-separated defect types (default: the checkpoint's or the bank's)")
    p.add_argument("--per-type", type=int, default=500, help="pairs per defect type (default 500, as the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="export root; pairs go to <out>/<category>/")
    p.add_argument("--layout", default="mvtec", help="mvtec (test/<defect>, ground_truth/<defect>) or folder")
    p.add_argument("--category", help="category folder name (default: the data set folder's name)")
    p.add_argument("--copy-normals", action="store_true", help="copy the normal images to train/good")
    p.add_argument("--link-normals", action="store_true", help="symlink the normal images into train/good")
    p.add_argument("--resize-masks", action="store_true", help="resize mask files to each normal image (nearest)")
    p.add_argument("--shard", help="i/n: this process writes every n-th pair starting at i (default: torchrun's rank)")
    p.add_argument("--steps", type=int, help="reverse steps for sard (default the checkpoint's T)")
    p.add_argument("--no-roi", action="store_true", help="run the network on the whole image, not the mask's region")
    p.add_argument("--no-rcd", action="store_true", help="plain DDGAN sampling (changes the background)")
    p.add_argument("--batch", type=int, default=1,
                   help=f"sard: up to N pairs whose regions have one size share each network call (1..{MAX_BATCH}, "
                        f"default 1: one at a time); baselines stay one at a time")
    p.add_argument("--texture-dir", help="texture images for draem/glass (default: other normal images)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--no-resume", action="store_true", help="refuse to add to a folder that already has pairs")
    return p.parse_args(argv)


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        return 0, 1
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise SardInputError(f"--shard '{text}': expected i/n with 0 <= i < n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def parse_area(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise SardInputError(f"--area '{text}': expected two fractions lo,hi such as 0.005,0.05") from None
    if not 0 < lo <= hi <= 1:
        raise SardInputError(f"--area '{text}': expected 0 < lo <= hi <= 1")
    return lo, hi


def write_bank_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sard.export --write-bank",
                                description="Give a model folder the real-mask bank of its training third.")
    p.add_argument("--write-bank", required=True, metavar="CHECKPOINT", help="model folder or shipped name")
    p.add_argument("--data", required=True, help="the data set root the checkpoint was trained on")
    a = p.parse_args(argv)
    try:
        bank = write_bank(resolve_checkpoint(a.write_bank, "--write-bank"), a.data)
    except SardInputError as e:
        print(f"sard.export: error: {e}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in bank.rglob("*.png"))
    print(f"sard.export: {len(list(bank.rglob('*.png')))} masks ({size / 1000:.0f} kB) in {bank}", file=sys.stderr)
    return 0


def check_flags(a: argparse.Namespace) -> None:
    """Flags are checked before any work, so a bad one is named, never blamed on an image later (how
    many pairs the disk holds is check_room's, once a normal image's size is known)."""
    whole_number("--per-type", a.per_type, 1, MAX_PER_TYPE)
    whole_number("--batch", a.batch, 1, MAX_BATCH)
    if a.method not in METHODS:
        raise SardInputError(f"--method: expected one of {', '.join(METHODS)}, got '{a.method}'")
    check_seed("--seed", a.seed)
    number("--bank-rotation", a.bank_rotation, 0, 180)
    parse_area(a.area)
    if a.layout not in LAYOUTS:
        raise SardInputError(f"--layout: expected {' or '.join(LAYOUTS)}, got '{a.layout}'")
    if a.category is not None:
        safe_name(a.category, "--category")
    if a.device is not None:
        pick_device(a.device)
    if a.steps is not None:      # at most sard's T, from the checkpoint's config (other methods take no steps)
        folder = resolve_checkpoint(a.checkpoint or DEFAULT_CHECKPOINT) if a.method == "sard" else None
        whole_number("--steps", a.steps, 1, ModelConfig.read(folder).schedule.num_steps if folder else None)


def load_bank(a: argparse.Namespace, normals_root: Path, samples: list) -> tuple[MaskBank | None, Path | None]:
    """The real masks: a data set's synthesizer third (--bank, else --normals if a data set), else the
    checkpoint's own bank."""
    bank_root = Path(a.bank) if a.bank else (normals_root if samples else None)
    if bank_root is not None:
        bank_samples = samples if bank_root == normals_root and samples else list_dataset(bank_root)
        return MaskBank.from_samples(split_defects(bank_samples).synth), bank_root
    if a.masks == "bank" and a.method == "sard":
        return read_bank(resolve_checkpoint(a.checkpoint or DEFAULT_CHECKPOINT)), None
    return None, None


def choose_defects(a: argparse.Namespace, synth: Synthesizer, bank: MaskBank | None, bank_root: Path | None) -> list[str]:
    """--defects, else the checkpoint's types, else the bank's, checked against both."""
    if a.defects:
        defects = [d.strip() for d in a.defects.split(",") if d.strip()]
    else:
        defects = synth.defects or (list(bank.defects) if bank is not None and bank.defects else ["synthetic"])
    for d in defects:
        safe_name(d, "defect")
    if a.masks == "bank" and bank is not None and a.defects:
        check_defects(defects, bank.defects, f"the mask bank of {bank_root}")
    if len(synth.defects) > 1:
        check_defects(defects, synth.defects, f"checkpoint {synth.params['checkpoint']}")
    return defects


def export(a: argparse.Namespace) -> tuple[PairWriter, dict]:
    check_flags(a)
    shard = parse_shard(a.shard)
    out = writable_folder("--out", a.out)
    normals_root = Path(a.normals)
    normals, samples = find_normals(normals_root)
    bank, bank_root = load_bank(a, normals_root, samples)
    synth = build(a.method, a.checkpoint, steps=a.steps, roi=not a.no_roi, rcd=not a.no_rcd,
                  texture_dir=Path(a.texture_dir) if a.texture_dir else None,
                  sources=normals if a.method in TEXTURED else None, device=a.device)
    plan = ExportPlan(normals, choose_defects(a, synth, bank, bank_root), a.per_type, a.seed, shard)
    check_room(plan, out)
    writer = PairWriter(out, a.category or normals_root.resolve().name, a.layout)
    if a.no_resume and writer.lines:
        raise SardInputError(f"--out {writer.base}: already holds {len(writer.lines)} pairs and --no-resume was given")
    masks = MaskSource(a.masks, parse_area(a.area), bank, trusted_part(a.on_part, samples), a.resize_masks,
                       {"placement": a.bank_placement, "rotation": a.bank_rotation})
    if a.copy_normals or a.link_normals:
        writer.link_normals(normals, copy=not a.link_normals)
    summary = run_export(plan, writer, synth, masks, batch=a.batch)
    return writer, {**summary, "masks_placed": dict(masks.placed)}


def trusted_part(mode: str, samples: list) -> str:
    """--on-part, turned off in auto mode where the part finder clips the data set's own real defects."""
    share = real_mask_share(samples) if mode != "off" else None
    if share is None:
        return mode
    trusted = share >= 0.8
    print(f"sard.export: real defect masks keep a median {100 * share:.0f} % of their pixels on the part found in "
          f"their images" + ("" if trusted else "; the part cannot be found reliably here" +
                             (", so masks go anywhere (--on-part on forces it)" if mode == "auto" else "")),
          file=sys.stderr)
    return mode if trusted or mode == "on" else "off"


def report(writer: PairWriter, summary: dict) -> None:
    print(f"sard.export: {summary['written']} pairs written, {summary['skipped_existing']} already there, "
          f"{summary['pairs_per_second']:.2f} pairs/s, in {writer.base}", file=sys.stderr)
    if summary["masks_placed"]:
        print("sard.export: masks " + "; ".join(f"{why}: {n}" for why, n in summary["masks_placed"].items()),
              file=sys.stderr)
    for why, n in summary["made_differently"].items():
        print(f"sard.export: {n} of the pairs already there were made otherwise: {why}; they are kept as they are "
              f"(a category holds one recipe: choose another --category or --out for this one)", file=sys.stderr)
    if summary["unreadable"]:
        print(f"sard.export: {len(summary['unreadable'])} unreadable normal images skipped:", file=sys.stderr)
        for p, why in summary["unreadable"].items():
            print(f"  {why}", file=sys.stderr)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--write-bank" in argv:
        return write_bank_main(argv)
    try:
        writer, summary = export(parse_args(argv))
    except SardInputError as e:
        print(f"sard.export: error: {e}", file=sys.stderr)
        return 2
    except ExportFailed as e:
        print(f"sard.export: failed: {e}", file=sys.stderr)
        return 1
    report(writer, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
