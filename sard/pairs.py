"""Image/mask pairs on disk: the writer `python -m sard.export` and the studio share, and the
per-pair random streams that make every pair a pure function of (seed, defect type, k).

A pair goes through temporary names; the manifest line (with both files' SHA-256) is appended
before the final renames, so any kill leaves the whole pair or something a rerun checks and
completes; names never change meaning and the manifest lists exactly the pairs on disk.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from sard.io import SardInputError, atomic_write_bytes, leftover_temps, png_bytes

MANIFEST = "manifest.jsonl"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def safe_name(name: str, what: str) -> str:
    """Category and defect names become folder names: letters, digits, '_', '-', '.' only, no '..'."""
    if not SAFE_NAME.match(name) or ".." in name:
        raise SardInputError(f"{what} '{name}': expected letters, digits, '_', '-' or '.' (at most 64, "
                             f"no '/', no '..'); it names a folder of the export")
    return name


def pair_rng(seed: int, defect: str, k: int, stream: int = 0) -> np.random.Generator:
    """Independent random streams of pair k: 0 picks the normal image and the seed, 1 the mask file."""
    return np.random.default_rng([seed, zlib.crc32(defect.encode()), k, stream])


def pair_seed(seed: int, defect: str, k: int) -> int:
    """The synthesis seed of pair k of a defect type (also the mask's seed)."""
    return int(pair_rng(seed, defect, k, stream=2).integers(0, 2**31 - 1))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_pair(image: np.ndarray, mask: np.ndarray, what: str) -> dict[str, bytes]:
    """The PNG bytes of a pair: the image as given, the mask as single-channel 0/255."""
    mask_u8 = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
    if mask_u8.ndim != 2:
        raise SardInputError(f"{what}: expected a single-channel mask, got {mask_u8.shape}")
    return {"image": png_bytes(image), "mask": png_bytes(mask_u8)}


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return int(pid) != os.getpid()


def manifest_lines(folder: str | os.PathLike) -> Iterator[tuple[Path, dict]]:
    """Every pair line of the manifests under folder (sorted), with the folder its paths are relative to; read only."""
    for manifest in sorted(Path(folder).rglob(MANIFEST)):
        for line in manifest.read_text().splitlines():
            if line.strip():
                yield manifest.parent, json.loads(line)


# -- the writer (shared with the studio) ----------------------------------------------------------
@dataclass
class PairWriter:
    """Writes pairs under <root>/<category>/ in the MVTec layout (test/<d>/NNN.png +
    ground_truth/<d>/NNN_mask.png) or the folder layout (images/<d>/NNN.png + masks/<d>/NNN.png),
    with one manifest.jsonl line per pair. Never overwrites a complete pair; survives SIGKILL at any point."""
    root: Path
    category: str
    layout: str = "mvtec"
    digits: int = 3     # the least width of NNN; k = 1000 is named 1000, never renaming 000..999
    lines: dict[tuple[str, int], dict] = field(default_factory=dict)

    def __post_init__(self):
        if self.layout not in ("mvtec", "folder"):
            raise SardInputError(f"--layout: expected mvtec or folder, got '{self.layout}'")
        self.root = Path(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise SardInputError(f"--out {self.root}: is a file; expected a folder (it is created if missing)")
        safe_name(self.category, "category")
        self.base = self.root / self.category
        self.base.mkdir(parents=True, exist_ok=True)
        self._load_manifest()
        for folder in [self.base, *(p for p in self.base.rglob("*") if p.is_dir())]:
            for tmp in leftover_temps(folder):  # of a killed run (not of a live shard beside us)
                if not _alive(tmp.name.rsplit(".", 2)[-2]):
                    tmp.unlink(missing_ok=True)

    @property
    def manifest(self) -> Path:
        return self.base / MANIFEST

    @contextmanager
    def _manifest_locked(self):
        """The manifest's file descriptor under an exclusive lock: shards append, and a rewrite
        (compaction) replaces the file, so a writer that opened the old one opens it again."""
        while True:
            fd = os.open(self.manifest, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(self.manifest).st_ino:
                break
            os.close(fd)
        try:
            yield fd
        finally:
            os.close(fd)

    def _load_manifest(self) -> None:
        """Read the lines; a line cut by a kill mid-write is dropped (its pair is redone) and of a pair
        made again the last line wins; the file is rewritten to the lines kept."""
        if not self.manifest.is_file():
            return
        self.lines.clear()
        with self._manifest_locked():
            raw = self.manifest.read_bytes()
            kept: dict[tuple[str, int], bytes] = {}
            for ln in raw.split(b"\n"):
                if not ln.strip():
                    continue
                try:
                    rec = json.loads(ln)
                    key = (rec["defect"], rec["index"])
                except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError):
                    continue
                kept.pop(key, None)
                kept[key] = ln
                self.lines[key] = rec
            keep = b"".join(ln + b"\n" for ln in kept.values())
            if keep != raw:
                atomic_write_bytes(self.manifest, keep)

    def _inside(self, rel: str) -> Path:
        """A manifest path, kept inside the category folder whatever the file says."""
        path = (self.base / rel).resolve()
        if not path.is_relative_to(self.base.resolve()):
            raise SardInputError(f"{self.manifest}: names {rel}, outside {self.base}; expected paths inside it")
        return self.base / rel

    def paths(self, defect: str, k: int) -> tuple[Path, Path]:
        """Where pair k goes: the names its manifest line gives, else NNN.png with at least `digits`
        digits (1000 follows 999), so a name never changes meaning when a folder grows."""
        safe_name(defect, "defect")
        rec = self.lines.get((defect, k))
        if rec is not None:
            return self._inside(rec["image"]), self._inside(rec["mask"])
        stem = f"{k:0{self.digits}d}"
        if self.layout == "mvtec":
            return (self.base / "test" / defect / f"{stem}.png",
                    self.base / "ground_truth" / defect / f"{stem}_mask.png")
        return self.base / "images" / defect / f"{stem}.png", self.base / "masks" / defect / f"{stem}.png"

    def done(self, defect: str, k: int) -> bool:
        if (defect, k) not in self.lines:
            return False
        img, msk = self.paths(defect, k)
        return img.is_file() and msk.is_file()

    def count(self) -> int:
        return sum(self.done(d, k) for d, k in self.lines)

    def next_index(self, defect: str) -> int:
        """The first index of `defect` with no line and no file: where an append-only export goes next."""
        k = 0
        while (defect, k) in self.lines or any(p.exists() for p in self.paths(defect, k)):
            k += 1
        return k

    def write(self, defect: str, k: int, image: np.ndarray, mask: np.ndarray, record: dict) -> dict:
        """Temporary files, then the manifest line, then the renames. A kill at any point leaves no
        trace, or a recorded pair with zero or one final file: the rerun keeps a half that holds the
        bytes it makes and completes the pair, or replaces that half (it never was a pair)."""
        return self._write(defect, k, encode_pair(image, mask, f"mask for {defect} #{k}"), record)

    def add(self, defect: str, image: np.ndarray, mask: np.ndarray, record: dict) -> tuple[dict, bool]:
        """Append-only (the studio): (record, True) for a new pair; (the existing record, False) when the
        folder already holds this very pair, byte for byte."""
        data = encode_pair(image, mask, f"mask for {defect}")
        sums = {key: sha256(v) for key, v in data.items()}
        for (d, k), rec in self.lines.items():
            if d == defect and all(rec.get(f"{key}_sha256") == s for key, s in sums.items()) and self.done(d, k):
                return rec, False
        return self._write(defect, self.next_index(defect), data, record), True

    def _write(self, defect: str, k: int, data: dict[str, bytes], record: dict) -> dict:
        finals = dict(zip(("image", "mask"), self.paths(defect, k)))
        old = self.lines.get((defect, k))
        for key, path in finals.items():
            if old is None and path.exists():
                raise SardInputError(f"{path}: exists but {self.manifest} has no line for it; exports never "
                                     f"overwrite: move it away, or choose another --out or --category")
        if old is not None and all(p.is_file() for p in finals.values()):
            raise SardInputError(f"{finals['image']}: pair {defect} #{k} is complete; exports never overwrite")
        rec = {**record, "defect": defect, "index": k,
               **{key: str(path.relative_to(self.base)) for key, path in finals.items()},
               **{f"{key}_sha256": sha256(v) for key, v in data.items()}}
        pending = {key: path for key, path in finals.items()
                   if not (path.is_file() and path.read_bytes() == data[key])}   # a half a kill left, checked
        replaced = [key for key in pending if finals[key].exists()]
        keep_line = old is not None and not replaced and \
            all(old.get(f"{key}_sha256", rec[f"{key}_sha256"]) == rec[f"{key}_sha256"] for key in finals)
        tmps = []
        try:
            for key, path in pending.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
                tmps.append((tmp, path))
                with open(tmp, "wb") as f:
                    f.write(data[key])
                    f.flush()
                    os.fsync(f.fileno())
            if keep_line:
                rec = old
            else:   # a new pair, or one made again differently: its line (the last one wins on reading)
                self._append(rec)
            for tmp, path in tmps:
                os.replace(tmp, path)
        except BaseException:
            for tmp, _ in tmps:
                tmp.unlink(missing_ok=True)
            raise
        if old is not None and not keep_line:
            self._load_manifest()   # drop the superseded line: one line per pair on disk
        self.lines[(defect, k)] = rec
        return rec

    def _append(self, rec: dict) -> None:
        text = json.dumps(rec, sort_keys=True, ensure_ascii=False)
        try:         # a lone surrogate (a file name that is not UTF-8) would make a line strict readers reject
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise SardInputError(f"{self.manifest}: a record holds text that is not valid UTF-8 (a file name?): "
                                 f"{text.encode('utf-8', 'backslashreplace').decode()[:300]}") from None
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        with self._manifest_locked() as fd:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(errno.ENOSPC, "short write to the manifest", str(self.manifest))
                os.fsync(fd)
            except OSError:   # no line for a pair that will not be on disk
                os.ftruncate(fd, size)
                raise

    def link_normals(self, normals: list[Path], copy: bool = True) -> int:
        """train/good (mvtec) or good/ (folder) with the normal images, so anomalib's readers take the export."""
        dst = self.base / ("train/good" if self.layout == "mvtec" else "good")
        dst.mkdir(parents=True, exist_ok=True)
        n = 0
        for p in normals:
            target = dst / p.name
            if target.exists() or target.is_symlink():
                continue
            if copy:
                atomic_write_bytes(target, p.read_bytes())
            else:
                target.symlink_to(p.resolve())
            n += 1
        return n


# -- sources: normals, masks, methods -------------------------------------------------------------
