"""Files in and out: checked image and mask reading, atomic writes.

Every reader raises `SardInputError` with the file's name and what was expected; the commands
turn that error into exit status 2. Every writer goes through a temporary name and a rename,
so a crash never leaves a partial file under the final name.
"""
from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import shutil
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 50_000_000  # larger images (and decompression bombs) are refused


class SardInputError(ValueError):
    """Bad input from the user: a message naming the file or parameter and what was expected."""


def utf8_path(path: str | os.PathLike, what: str = "file") -> str:
    """str(path), refused when its name is not valid UTF-8: a manifest line (strict JSON) could not name it."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")      # the bytes as \xNN
        raise SardInputError(f"{shown}: the {what}'s name is not valid UTF-8, so a manifest could not record "
                             f"it; rename the file") from None
    return text


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _png_size(path: Path) -> tuple[int, int] | None:
    """A PNG's (width, height) from its first 24 bytes (signature, IHDR); None for another format."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def _check_size(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise SardInputError(f"{path}: {w}x{h} = {w * h / 1e6:.1f} megapixels; expected at most "
                             f"{max_pixels / 1e6:.0f} megapixels (crop or downscale it)")


def _open_checked(path: Path, max_pixels: int, decode: bool = True) -> Image.Image:
    """The image opened: its size read from the header (a PNG's from its first bytes, before Pillow)
    and checked before any pixel is decoded; then decoded unless decode=False."""
    if not path.is_file():
        raise SardInputError(f"{path}: no such image file")
    try:
        size = _png_size(path)
        if size is not None:
            _check_size(path, size, max_pixels)
        with warnings.catch_warnings():     # Pillow's own limit warns above 89 megapixels: max_pixels rules
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        _check_size(path, img.size, max_pixels)
        if decode:
            img.load()
        return img
    except Image.DecompressionBombError as e:    # Pillow refuses to open beyond twice its limit
        raise SardInputError(f"{path}: refused as a decompression bomb (limit {max_pixels / 1e6:.0f} "
                             f"megapixels): {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, SardInputError):
            raise
        raise SardInputError(f"{path}: unreadable or truncated image ({e}); expected a complete "
                             f"{'/'.join(x[1:] for x in IMAGE_EXTENSIONS)} file") from None


def has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info)


def to_array(img: Image.Image, alpha: bool = False) -> np.ndarray:
    """PIL image -> uint8 or uint16 array, [H, W] for gray, [H, W, 3] for colour; an alpha channel is
    dropped, or with alpha=True kept as the last channel ([H, W, 2] gray, [H, W, 4] colour)."""
    if alpha and has_alpha(img):
        return np.array(img.convert("LA" if img.mode in ("LA", "La") else "RGBA"))
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.array(img)
        return np.clip(a, 0, 65535).astype(np.uint16)
    if img.mode in ("L", "RGB"):
        return np.array(img)
    if img.mode in ("1", "LA", "F"):
        return np.array(img.convert("L"))
    return np.array(img.convert("RGB"))  # P, RGBA, CMYK, YCbCr: colour, alpha dropped


def image_size(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the file's header, no pixel decoded; SardInputError, as read_image says it,
    when the file is no image or larger than max_pixels (a server checks an upload before anything
    decodes it)."""
    img = _open_checked(Path(path), max_pixels, decode=False)
    size = img.size
    img.close()
    return size


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, alpha: bool = False) -> np.ndarray:
    """Read an image as uint8/uint16 [H, W] or [H, W, 3] (alpha=True: with its alpha channel, if any, as
    the last one); SardInputError if unreadable or too big."""
    path = Path(path)
    return to_array(_open_checked(path, max_pixels), alpha)


_warned_nonbinary: set[str] = set()


def binarize_mask(a: np.ndarray, name: str = "mask") -> np.ndarray:
    """Any mask array -> bool [H, W]: alpha or max over channels, thresholded at 127.

    Says once per source when the mask held values other than 0 and the maximum."""
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., 3] if a.shape[2] == 4 else a.max(axis=2)
    if a.dtype == bool:
        return a.copy()
    if a.dtype == np.uint16 or a.max(initial=0) > 255:
        a = (a.astype(np.float64) / 257.0)
    vals = np.unique(a)
    if len(vals) > 2 or (len(vals) == 2 and (vals[0] != 0 or vals[1] not in (1, 255))):
        if name not in _warned_nonbinary:
            _warned_nonbinary.add(name)
            warnings.warn(f"{name}: mask is not binary ({len(vals)} distinct values); thresholding at 127",
                          stacklevel=2)
    if len(vals) <= 2 and vals.max(initial=0) == 1:
        return a > 0
    return a > 127


def read_mask(path: str | os.PathLike, size: tuple[int, int] | None = None,
              max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a mask as bool [H, W]. size = (H, W) it must have (its image's)."""
    path = Path(path)
    img = _open_checked(path, max_pixels)
    m = binarize_mask(np.array(img), str(path))
    if size is not None and m.shape != tuple(size):
        raise SardInputError(f"{path}: mask is {m.shape[1]}x{m.shape[0]} but its image is "
                             f"{size[1]}x{size[0]}; expected the same size")
    return m


def strict_mask(a: np.ndarray, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """bool [H, W] of a mask file used as it is (the studio's upload, `--masks DIR`): one channel (or
    equal ones), black background and one other value, the image's `shape` when given. SardInputError
    saying what is wrong."""
    if a.ndim == 3:
        if not (a == a[..., :1]).all():
            raise SardInputError(f"{name}: not a mask (its colour channels differ); expected a single-channel "
                                 f"PNG, 0 = background and 255 (or 1) = defect")
        a = a[..., 0]
    values = np.unique(a)
    if values[0] != 0 or len(values) > 2:
        raise SardInputError(f"{name}: not a mask ({len(values)} gray levels from {values[0]} to {values[-1]}); "
                             f"expected 0 = background and one other value (255 or 1) = defect")
    if len(values) == 1:
        raise SardInputError(f"{name}: the mask is empty (all 0); expected a defect region")
    if shape is not None and a.shape != tuple(shape):
        raise SardInputError(f"{name}: {a.shape[1]}x{a.shape[0]} does not match the image's {shape[1]}x{shape[0]}; "
                             f"expected a mask of the image's size")
    return a > 0


def read_mask_file(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A mask file read strictly (strict_mask), naming the file."""
    return strict_mask(read_image(path), str(path), shape)


_UMASK = os.umask(0)
os.umask(_UMASK)


def leftover_temps(folder: Path) -> list[Path]:
    """The temporary files writers here leave in `folder` when killed mid-write (.<name>.<id>.tmp)."""
    return sorted(Path(folder).glob(".*.tmp"))


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; final files get the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one system call (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)


def replace_folder(staged: Path, dest: Path) -> Path:
    """Put a fully written folder `staged` (beside `dest`, same file system) in place of `dest` in one
    step: the two swap names, so a kill at any point leaves the old or the new folder there, never
    none; then the old one goes. A `dest` that is a symbolic link (an ablation's bank shared with its
    shipped model) is replaced as a link, never followed: the folder it names stays."""
    if not (dest.exists() or dest.is_symlink()):
        staged.rename(dest)
    elif _exchange(staged, dest):
        _remove(staged)          # the old folder (or link), now under the staged name
    else:                        # no atomic swap here: the old one aside first, so it is never lost
        aside = dest.with_name(f".{dest.name}.{os.getpid()}.old")
        dest.rename(aside)
        staged.rename(dest)
        _remove(aside)
    return dest


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(Path(path), lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def png_bytes(a: np.ndarray) -> bytes:
    """uint8/uint16 [H, W] or uint8 [H, W, 3|4] -> lossless PNG bytes."""
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype == np.uint16 and a.ndim == 2:
        img = Image.fromarray(a.astype(np.uint16), mode=None)
    else:
        img = Image.fromarray(a)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def atomic_save_png(path: str | os.PathLike, a: np.ndarray) -> Path:
    return atomic_write_bytes(path, png_bytes(a))
