"""The studio's curation callbacks: real defects of the data set to judge results by, the curated set
(keep, keep all, remove) and its export in the MVTec layout with a zip to download."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import zipfile
from pathlib import Path

import gradio as gr

from sard.io import SardInputError, atomic_write_bytes, read_image, read_mask
from sard.pairs import PairWriter, safe_name
from ui.files import Published
from ui.messages import count, user_error, user_errors
from ui.pictures import example_crop
from ui.session import Session

EXAMPLES = 8           # real defects shown beside the results
CURATED_SIDE = 160     # a curated thumbnail's side (px), the curated gallery's cell (ui.layout CSS)


class Curation:
    """Part of ui.actions.Studio: the data set's real defects and the session's curated set."""
    data: Path | None
    defect_samples: dict[str, list]
    export_root: Path
    files: Published
    _examples: dict[str, list]

    # -- real examples ------------------------------------------------------------------------------
    def examples(self, defect: str | None):
        """Real defects of this type from the data set, cropped around their masks (the gallery's value)."""
        if defect not in self._examples:
            items = []
            samples = self.defect_samples.get(defect, [])
            for s in samples[:: max(1, len(samples) // EXAMPLES)][:EXAMPLES]:
                try:
                    items.append((example_crop(read_image(s.image), read_mask(s.mask)), Path(s.image).name))
                except SardInputError:
                    continue
            self._examples[defect] = items
        return self._examples[defect]

    def examples_view(self, defect: str | None):
        items = self.examples(defect)
        label = (f"Real {defect} defects from {self.data.name} (compare)" if items else
                 f"No real {defect} defects in {self.data.name if self.data else 'the data set'}")
        return gr.update(value=items, label=label)

    # -- the curated set ----------------------------------------------------------------------------
    # In the browser each button first runs its check with no outputs: a refusal comes as a message
    # only, never as an "Error" badge over the curated gallery, which would swallow the clicks needed
    # to select one. API clients call keep / keep_all / remove, which check the same.
    def check_keep(self, index, session: Session) -> None:
        self._keep_index(index, session)

    def check_keep_all(self, session: Session) -> None:
        if not session.variations:
            raise user_error("Nothing to keep yet: synthesize first.")

    def check_remove(self, session: Session) -> None:
        self._remove_index(session)

    def _keep_index(self, index, session: Session) -> int:
        if not session.variations:
            raise user_error("Nothing to keep yet: synthesize first.")
        index = int(index if index is not None else session.selected)
        if not 0 <= index < len(session.variations):
            raise user_error(f"index {index}: expected 0..{len(session.variations) - 1}")
        return index

    def _remove_index(self, session: Session) -> int:
        if session.curated_selected is None or not 0 <= session.curated_selected < len(session.curated):
            raise user_error("Select a curated result to remove (click it in the curated set), then press Remove.")
        return session.curated_selected

    def keep(self, index, session: Session):
        """/keep: add a result to this session's curated set (once: keeping it again changes nothing)."""
        index = self._keep_index(index, session)
        v = session.variations[index]
        if any(v is c for c in session.curated):
            gr.Info(f"#{index} (seed {v.settings['seed']}) is already in the curated set; it is kept once.")
        else:
            session.curated.append(v)
        return self._curated(session), self._count(session), session

    def keep_all(self, session: Session):
        """/keep_all: add every result of the last run not kept yet."""
        self.check_keep_all(session)
        session.curated += [v for v in session.variations if not any(v is c for c in session.curated)]
        return self._curated(session), self._count(session), session

    def pick_curated(self, evt: gr.SelectData, session: Session):
        session.curated_selected = int(evt.index)
        return session

    def remove(self, session: Session):
        """/remove: the curated result selected in the browser leaves the curated set."""
        session.curated.pop(self._remove_index(session))
        session.curated_selected = None
        return self._curated(session), self._count(session), session

    @staticmethod
    def _curated(session: Session):
        """The curated gallery: each result around its mask (tinted in), so the defect is in view."""
        return [(example_crop(v.image, v.mask, CURATED_SIDE, tinted=0.3), f"{v.settings['defect']} seed "
                 f"{v.settings['seed']}") for v in session.curated]

    @staticmethod
    def _count(session: Session) -> str:
        return f"**Curated: {len(session.curated)}**"

    # -- export -------------------------------------------------------------------------------------
    def session_folder(self, session: Session) -> Path:
        """This session's export folder, <export root>/session-<date>-<time>-<token>, named at its first
        export: two sessions never write, zip or read each other's pairs."""
        if not session.export_dir:
            token = f"session-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
            session.export_dir = str((self.export_root / token).resolve())
        return Path(session.export_dir)

    def kept_source(self, folder: Path, source: str) -> str:
        """The manifest's source: a data set file as it is; an upload (in Gradio's upload folder, gone
        with the server) copied to <session folder>/sources/<its name> (another file of that name
        gets its SHA-256's first 8 digits appended)."""
        path = Path(source)
        if not self.files.holds(path):
            return source
        if not path.is_file():
            raise SardInputError(f"{path.name}: the upload is no longer on the server; load the image again")
        data = path.read_bytes()
        kept = folder / "sources" / path.name
        if kept.is_file() and kept.read_bytes() != data:
            kept = kept.with_name(f"{path.stem}-{hashlib.sha256(data).hexdigest()[:8]}{path.suffix}")
        if not kept.is_file():
            atomic_write_bytes(kept, data)
        return str(kept)

    def export(self, category: str, session: Session):
        """/export: the curated set into <session folder>/<category>/ (MVTec layout + manifest.jsonl),
        and a zip of exactly these pairs and their manifest lines."""
        if not session.curated:
            raise user_error("Nothing curated yet: keep some results first.")
        with user_errors():
            category = safe_name((category or "").strip(), "category")
            folder = self.session_folder(session)
            writer = PairWriter(folder, category, "mvtec")
            pairs, new = {}, 0
            for v in session.curated:
                defect = safe_name(v.settings["defect"], "defect")
                record = {**v.settings, "source": self.kept_source(folder, v.settings["source"]), "studio": True}
                rec, written = writer.add(defect, v.image, v.mask, record)
                pairs[rec["image"]] = rec
                new += written
        zip_path = self.files.new_file(f"{category}-{time.strftime('%Y%m%d-%H%M%S')}.zip")
        write_zip(zip_path, writer, list(pairs.values()), category)
        names = sorted(pairs)
        old = len(session.curated) - new
        status = (f"Exported {count(new, 'pair')} to `{writer.base}` ({', '.join(names[:3])}"
                  f"{' ...' if len(names) > 3 else ''})"
                  + (f"; {old} of the curated set {'was' if old == 1 else 'were'} already there, not written again."
                     if old else "."))
        return status, str(zip_path)

    @staticmethod
    def zip_ready(path: str | None):
        """The zip button comes alive with the first export (until then it says to export first)."""
        if not path:
            return gr.update(interactive=False, label="Download zip (export first)")
        return gr.update(interactive=True, label=f"Download zip ({Path(path).name})")


def write_zip(path: Path, writer: PairWriter, pairs: list[dict], category: str) -> None:
    """<category>/ with these pairs' files and a manifest.jsonl of exactly their lines (as the
    category's manifest holds them), written under a temporary name and renamed into place."""
    images = {rec["image"] for rec in pairs}
    lines = [ln for ln in writer.manifest.read_text().splitlines() if ln.strip() and json.loads(ln)["image"] in images]
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for rec in pairs:
            for key in ("image", "mask"):
                z.write(writer.base / rec[key], f"{category}/{rec[key]}")
        z.writestr(f"{category}/manifest.jsonl", "".join(ln + "\n" for ln in lines))
    os.replace(tmp, path)
