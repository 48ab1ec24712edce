"""What the `python -m sard.evaluate` subcommands share: reading a --methods list, and the machine
line a report records."""
from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from sard.baselines import BASELINES
from sard.devices import device_label
from sard.io import SardInputError
from sard.store.model_folder import CONFIG_NAME, WEIGHTS_NAME, ModelConfig, resolve_checkpoint, synthesis_hash

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass
class Method:
    name: str                      # real, a baseline, or any label of a SARD checkpoint
    checkpoint: Path | None
    fingerprint: str               # what its pairs depend on besides the jobs
    config: ModelConfig | None = None     # a SARD checkpoint's

    @property
    def synthetic(self) -> bool:
        return self.name != "real"


def parse_methods(text: str, bare: tuple[str, ...] = ("real", *BASELINES), default: str | None = None) -> list[Method]:
    """'real,cutpaste,sard=DIR' -> checked Methods; SardInputError naming a bad one. Names in `bare`
    take no checkpoint, any other name needs NAME=CHECKPOINT_DIR; `default` may come either way (for
    realism, 'sard' alone is the shipped checkpoint)."""
    out: list[Method] = []
    known = ", ".join(bare + ((default,) if default else ()))
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, eq, path = (s.strip() for s in item.partition("="))
        if not NAME.match(name):
            raise SardInputError(f"--methods: '{name}' is not a method name; expected lower-case letters, digits, "
                                 f"'_' or '-' ({known}, or NAME=CHECKPOINT_DIR)")
        if any(m.name == name for m in out):
            raise SardInputError(f"--methods: '{name}' is given twice")
        if name in bare or (name == default and not eq):
            if eq:
                raise SardInputError(f"--methods: '{name}' takes no checkpoint (got '{item}'); only SARD variants "
                                     f"are given as NAME=CHECKPOINT_DIR")
            out.append(Method(name, None, name))
            continue
        if not eq or not path:
            raise SardInputError(f"--methods: unknown method '{name}'; expected {known}, or a "
                                 f"SARD checkpoint as {name}=CHECKPOINT_DIR")
        out.append(_checkpoint_method(name, Path(path)))
    if not out:
        raise SardInputError(f"--methods: empty; expected e.g. {','.join(bare)},sard=checkpoints/sard-magnetic-tile")
    return out


def _checkpoint_method(name: str, folder: Path) -> Method:
    try:
        folder = resolve_checkpoint(folder)            # a folder, or a shipped model by name
    except SardInputError:
        raise SardInputError(f"--methods: checkpoint folder '{folder}' of method '{name}' does not exist; expected "
                             f"a folder with {CONFIG_NAME} and {WEIGHTS_NAME} (python -m sard.train --out DIR)") from None
    config = ModelConfig.read(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        raise SardInputError(f"--methods: checkpoint folder '{folder}' of method '{name}' has no {WEIGHTS_NAME}")
    return Method(name, folder, f"{name}-{synthesis_hash(folder, config)}", config)


def machine(threads: int | None = None, device: str | torch.device | None = None) -> str:
    """The processor, torch threads and version a report was measured with, and the GPU when `device`
    is one; given `threads` (the segmentation benchmark) also the core count, or that no GPU was used."""
    cpu = platform.processor() or platform.machine()
    gpu = device_label(device) if device is not None and torch.device(device).type == "cuda" else None
    if threads is None:
        return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}" + (f", {gpu}" if gpu else "")
    return f"{cpu}, {os.cpu_count()} cores, {threads} torch threads, torch {torch.__version__}, {gpu or 'no GPU used'}"
