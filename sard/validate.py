"""Checks where input enters (flags, config fields, studio numbers, output folders): a
SardInputError naming the flag or file and what was expected, never a traceback later."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from sard.io import SardInputError
from sard.nets.bounds import out_of_bounds

SEED_MAX = 2**31 - 1   # numpy and torch take it on every platform, with room for seed * 1000 + rank
MAX_THREADS = 1024     # torch threads a command may ask for


def whole_number(name: str, value, lo: int, hi: int | None = None) -> int:
    """An int (a float only when whole, as the studio's number boxes send) with lo <= value <= hi."""
    problem = out_of_bounds(name, value, lo, hi, whole=True)
    if problem:
        raise SardInputError(problem)
    return int(value)


def number(name: str, value, lo: float | None = None, hi: float | None = None, *, above: bool = False,
           below: bool = False) -> float:
    """A finite number within lo..hi (lo excluded with above, hi with below): NaN and infinities never pass."""
    problem = out_of_bounds(name, value, lo, hi, above=above, below=below)
    if problem:
        raise SardInputError(problem)
    return value


def seed(name: str, value) -> int:
    return whole_number(name, value, 0, SEED_MAX)


def check_defects(wanted: list[str], known: list[str], where: str) -> list[str]:
    """`wanted` (--defects), refused naming those `where` (a data set, a bank, a checkpoint) lacks."""
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise SardInputError(f"--defects {unknown}: not in {where}; it has {list(known)}")
    return wanted


def write_error(e: OSError, path=None) -> str:
    """What went wrong writing, with the path and what to do about it."""
    where = path or e.filename or "the output folder"
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{where}: the disk is full ({e.strerror}); free space"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}: not writable ({e.strerror}); make it writable or choose another folder"
    return f"{where}: {e.strerror or e}"


def writable_folder(name: str, path: str | os.PathLike) -> Path:
    """Create the folder if missing and prove a file can be written there."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SardInputError(f"{name} {path}: is a file; expected a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-", suffix=".tmp") as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise SardInputError(f"{name} {write_error(e, path)}") from None
    return path
