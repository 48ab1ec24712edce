"""Weights as safetensors, written atomically; nothing is ever unpickled."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from sard.io import SardInputError, atomic_write_bytes


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


def file_hash(path: str | Path, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
