"""Weights as safetensors plus a JSON config, written atomically; nothing is ever unpickled.

A model folder holds `config.json` + `model.safetensors` (what synthesis needs). The trainer adds
`train_state.json`, which names the `train_state-<step>.safetensors` holding G, EMA G, D and the
optimizer states: the JSON is written last, so it always names a complete file.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from sard.io import SardInputError, atomic_write_bytes, atomic_write_json, replace_folder

CONFIG_NAME = "config.json"
BANK_DIR = "bank"                 # a model folder's real-mask bank (sard.masks.write_bank)
WEIGHTS_NAME = "model.safetensors"
TRAIN_STATE_NAME = "train_state.json"


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> Path:
    data = safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    return atomic_write_bytes(path, data)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise SardInputError(f"{path}: no such weights file; expected a .safetensors file")
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as e:  # SafetensorError is not importable by name in every version
        raise SardInputError(f"{path}: not a safetensors file ({e}); weights must be safetensors, "
                             f"pickled .pt/.ckpt files are never loaded") from None


def read_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SardInputError(f"{path}: no such config file; expected a JSON config beside the weights")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SardInputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise SardInputError(f"{path}: expected a JSON object at the top level")
    return cfg


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """load_state_dict that names the file and every mismatching key when the config does not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:3])})")
        raise SardInputError(f"{source}: weights do not match the config: {', '.join(parts)}; "
                             f"expected weights written with this config.json")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def save_model(folder: str | Path, state: dict[str, torch.Tensor], config: dict,
               dtype: torch.dtype | None = None) -> None:
    """config.json + model.safetensors (optionally cast, e.g. fp16 for a shipped checkpoint)."""
    folder = Path(folder)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_tensors(folder / WEIGHTS_NAME, state)
    atomic_write_json(folder / CONFIG_NAME, config)


def file_hash(path: str | Path, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def save_train_state(folder: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write train_state-<step>.safetensors, then train_state.json naming it, then drop older states."""
    folder = Path(folder)
    name = f"train_state-{meta['step']:08d}.safetensors"
    save_tensors(folder / name, tensors)
    atomic_write_json(folder / TRAIN_STATE_NAME, {**meta, "file": name})
    for old in folder.glob("train_state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / name


def read_train_meta(folder: str | Path) -> dict | None:
    """train_state.json of `folder` (None if there is none), checked: the fields resume needs, and a
    state file named as the trainer names it, inside `folder`."""
    meta_path = Path(folder) / TRAIN_STATE_NAME
    if not meta_path.is_file():
        return None
    fix = "; it is corrupt: restore it from a backup, or start a new run in another --out"
    try:
        meta = read_config(meta_path)
    except SardInputError as e:
        raise SardInputError(f"{e}{fix}") from None
    missing = [k for k in ("step", "file", "config", "rng") if k not in meta]
    if missing:
        raise SardInputError(f"{meta_path}: lacks {missing}{fix}")
    if not isinstance(meta["file"], str) or not re.fullmatch(r"train_state-\d{8}\.safetensors", meta["file"]):
        raise SardInputError(f"{meta_path}: 'file' is {meta['file']!r}; expected train_state-<8 digits>.safetensors "
                             f"beside it{fix}")
    if not isinstance(meta["step"], int) or meta["step"] < 0 or not isinstance(meta["config"], dict):
        raise SardInputError(f"{meta_path}: 'step' or 'config' is not what the trainer writes{fix}")
    return meta


def load_train_state(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(tensors, meta) of the last complete training checkpoint in `folder`, or None if there is none."""
    meta = read_train_meta(folder)
    if meta is None:
        return None
    return load_tensors(Path(folder) / meta["file"]), meta


def ship(run: str | Path, dest: str | Path, fp16: bool = True) -> Path:
    """Copy what synthesis needs from a training folder: config.json + the EMA generator (fp16 halves it)."""
    run, dest = Path(run), Path(dest)
    config = read_config(run / CONFIG_NAME)
    if config.get("init"):      # the run's absolute path names this machine; the shipped model names its parent
        config["init"] = Path(config["init"]).name
    state = load_tensors(run / WEIGHTS_NAME)
    save_model(dest, state, config, dtype=torch.float16 if fp16 else None)
    bank = run / BANK_DIR                  # the real-mask bank (sard.masks.write_bank) travels with the model
    if bank.is_dir():
        tmp = dest / ".bank.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        replace_folder(Path(shutil.copytree(bank, tmp)), dest / BANK_DIR)
    return dest


def main(argv=None) -> int:
    """python -m sard.checkpoint RUN_DIR DEST [--fp32]: ship a training folder (ship above)."""
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if len(args) < 2:
        print("usage: python -m sard.checkpoint RUN_DIR DEST [--fp32]", file=sys.stderr)
        return 2
    try:
        print(ship(args[0], args[1], fp16="--fp32" not in args[2:]))
    except SardInputError as e:
        print(f"sard.checkpoint: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
