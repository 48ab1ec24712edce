"""A training run's resumable state: train_state.json names the train_state-<step>.safetensors
holding G, EMA G, D and the optimizer states. The JSON is written last, so it always names a complete file."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from sard.io import SardInputError, atomic_write_json
from sard.store.tensors import load_tensors, read_config, save_tensors

TRAIN_STATE_NAME = "train_state.json"


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


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{idx}.{k}": v for idx, st in opt.state_dict()["state"].items() for k, v in st.items()}


def load_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
