"""Files the studio hands the browser: each written once, atomically, under a name nobody else can
guess, straight into Gradio's cache folder, so Gradio serves it as it is and never copies or
rewrites it.

Why: a numpy picture returned to an image output is written by Gradio to <cache>/<hash of its
bytes>/image.png, again (truncated, then written) each time the same picture is returned, while a
browser may be reading it: h11 "Too little data for declared Content-Length" and ClientDisconnect
in the server log. The callbacks (ui.actions) return numpy pictures; the layout wraps them with
`Published.wrap`, which turns every picture into the path of its PNG here.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import os
import secrets
from pathlib import Path

import numpy as np
from gradio.utils import get_upload_folder

from sard.io import atomic_write_bytes, png_bytes


class Published:
    """PNGs and other files under <Gradio's cache>/sard-<HMAC of the bytes or a random token>/<name>."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder or get_upload_folder())
        self._key = secrets.token_bytes(32)      # names are unguessable without the bytes and this key

    def bytes(self, data: bytes, name: str) -> str:
        """The path of a file holding `data`: the same bytes and name always give the same file,
        written once (temporary name, then a rename) and never again."""
        digest = hmac.new(self._key, data, hashlib.sha256).hexdigest()[:40]
        path = self.folder / f"sard-{digest}" / name
        if not path.is_file():
            atomic_write_bytes(path, data)
        return str(path)

    def holds(self, path: str | os.PathLike) -> bool:
        """Whether `path` lies in this folder: Gradio's cache, where its uploads go too."""
        return Path(path).resolve().is_relative_to(self.folder.resolve())

    def png(self, a: np.ndarray, name: str = "image.png") -> str:
        return self.bytes(png_bytes(a), name)

    def new_file(self, name: str) -> Path:
        """A fresh path for a writer that streams (the export's zip): a folder of its own; the writer
        writes a temporary name beside it and renames it into place."""
        folder = self.folder / f"sard-{secrets.token_hex(20)}"
        folder.mkdir(parents=True)
        return folder / name

    def served(self, value):
        """`value` with every picture (a numpy array of 2 or 3 dimensions) replaced by its PNG's path,
        through tuples, lists and dicts (gr.update, the editor's value)."""
        if isinstance(value, np.ndarray) and value.ndim in (2, 3):
            return self.png(value)
        if isinstance(value, tuple):
            return tuple(self.served(v) for v in value)
        if isinstance(value, list):
            return [self.served(v) for v in value]
        if isinstance(value, dict):
            return {k: self.served(v) for k, v in value.items()}
        return value

    def wrap(self, fn):
        """`fn` with its outputs served (each update of a generator). functools.wraps keeps the
        signature and annotations Gradio reads (gr.SelectData, gr.Progress)."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def updates(*args, **kwargs):
                for out in fn(*args, **kwargs):
                    yield self.served(out)
            return updates

        @functools.wraps(fn)
        def call(*args, **kwargs):
            return self.served(fn(*args, **kwargs))
        return call


class Served:
    """What the layout wires: the studio with each of its methods' pictures served (Published.wrap);
    its other attributes as they are."""

    def __init__(self, studio, files: Published):
        self._studio, self._files = studio, files

    def __getattr__(self, name: str):
        value = getattr(self._studio, name)
        return self._files.wrap(value) if inspect.ismethod(value) else value
