"""Which torch device runs the work: the one named, else CUDA where there is one."""
from __future__ import annotations

import torch

from sard.io import SardInputError


def pick_device(device: str | torch.device | None = None, flag: str = "--device") -> torch.device:
    """The device named (a SardInputError naming `flag` when it is no device, or one this machine
    lacks), else CUDA where there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise SardInputError(f"{flag} {device!r}: expected cpu or cuda (cuda:N for one of several GPUs)")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SardInputError(f"{flag} {device}: this machine has no CUDA device that torch "
                                 f"{torch.__version__} can use; expected cpu")
        if dev.index is not None and dev.index >= count:
            raise SardInputError(f"{flag} {device}: this machine has {count} CUDA device(s), cuda:0 to "
                                 f"cuda:{count - 1}")
    return dev


def device_label(device: str | torch.device) -> str:
    """What ran the work, in words: 'CPU', or 'CUDA: <the GPU's name>' (reports, the studio's title)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(dev)}"
    return "CPU"
