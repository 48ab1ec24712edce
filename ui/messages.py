"""What the studio says: errors the engineer can fix (never a server temp path) and counted nouns."""
from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from sard.io import SardInputError

# Where Gradio keeps uploads (its own rule) and the system temp folder: never shown to the engineer.
TEMP_PATH = re.compile("|".join(re.escape(d) + r"/\S*/" for d in {
    os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio"), tempfile.gettempdir()}))


def clean(message: str, upload: str | os.PathLike | None = None, name: str | None = None) -> str:
    """The message with an upload named by its own name and no temp folder left in it."""
    if upload:
        message = message.replace(str(upload), name or Path(upload).name)
    return TEMP_PATH.sub("", message)


def user_error(message: str, upload: str | os.PathLike | None = None, name: str | None = None) -> gr.Error:
    """An error the engineer can fix: a message in the browser (and for API clients) that names an
    upload by its own name, never by the server's temp path, and one line in the server's log."""
    message = clean(message, upload, name)
    print(f"studio: refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


@contextmanager
def user_errors(upload: str | os.PathLike | None = None, name: str | None = None):
    """Library input errors become user errors (about `upload`, shown as `name`)."""
    try:
        yield
    except SardInputError as e:
        raise user_error(str(e), upload, name) from None


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 pair', '2 pairs', '0 pairs'."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
