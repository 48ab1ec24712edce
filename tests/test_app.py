"""The studio through gradio_client against a real launched server: API names, streaming, curation,
export on disk, two sessions kept apart, path traversal refused, the queue limit, full-resolution
results, the README's client script against `bash scripts/start.sh` without a data set; and the
studio's logic without a server: strokes on a mask at full resolution, uploaded masks, the
step-through, messages."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gradio as gr

from conftest import REPO, make_tiny_data, run_module, texture, tiny_checkpoint
from sard.io import SardInputError

DEFAULT_CK = REPO / "checkpoints" / "sard-magnetic-tile"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp_path, checkpoint, queue_size=8, data=True):
    """The studio in this process; data: True (a tiny data set), False (none) or a data set root."""
    import app
    port = free_port()
    args = ["--checkpoint", str(checkpoint), "--port", str(port), "--export-root", str(tmp_path / "exports"),
            "--queue-size", str(queue_size)]
    if data:
        args += ["--data", str(make_tiny_data(tmp_path / "data") if data is True else data)]
    demo = app.launch(app.parse_args(args), block=False)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio")
    demo, url = start(tmp, DEFAULT_CK if DEFAULT_CK.is_dir() else tiny_checkpoint(tmp / "ck"))
    yield url, tmp / "exports"
    demo.close()


def client(url):
    from gradio_client import Client
    return Client(url, download_files=False, verbose=False)


def tile(tmp_path, name="tile.png", size=(256, 256)) -> str:
    a = texture(size, 3)
    p = tmp_path / name
    Image.fromarray(a).save(p)
    return str(p)


def path_of(x) -> str:
    return x["path"] if isinstance(x, dict) else x


def exported_base(status: str) -> Path:
    """The category folder an export's status names ("Exported N pairs to `<folder>` ...")."""
    return Path(re.search(r"to `([^`]+)`", status).group(1))


def browser_event(url: str, elem_id: str, event: str, event_data: dict) -> list:
    """Fire a UI-only event (no API name: gradio_client cannot call it) as the browser does, over
    the queue's HTTP protocol; returns the outputs."""
    import uuid

    import httpx
    cfg = httpx.get(f"{url}config").json()
    target = next(c["id"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == elem_id)
    fn = next(d["id"] for d in cfg["dependencies"] if [target, event] in d["targets"])
    session = uuid.uuid4().hex
    with httpx.Client(timeout=120) as h:
        joined = h.post(f"{url}gradio_api/queue/join", json={
            "data": [], "event_data": event_data, "fn_index": fn, "trigger_id": target, "session_hash": session})
        joined.raise_for_status()
        with h.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as r:
            for line in r.iter_lines():
                msg = json.loads(line[5:]) if line.startswith("data:") else {}
                if msg.get("msg") == "process_completed" and msg.get("event_id") == joined.json()["event_id"]:
                    assert msg["success"], msg
                    return msg["output"]["data"]
    raise AssertionError(f"{elem_id}.{event}: no result")


def curate_and_export(c, img: str, root: Path, category: str, with_zip: bool = False):
    """Random mask, one SARD result, keep it, export into root: the pair's manifest line (and the zip)."""
    from gradio_client import handle_file
    m = c.predict(handle_file(img), "Ellipse", 2.0, 4.0, 1, "crack", api_name="/random_mask")
    list(c.submit(handle_file(img), handle_file(path_of(m)), "SARD", "crack", 0, 1, True, api_name="/synthesize"))
    c.predict(0, api_name="/keep")
    status, zip_file = c.predict(category, api_name="/export")
    base = exported_base(status)
    assert "Exported 1 pair " in status and base.is_relative_to(root.resolve()) and base.name == category
    rec = json.loads((base / "manifest.jsonl").read_text().splitlines()[-1])     # the line this export added
    return (rec, base, path_of(zip_file)) if with_zip else rec


def test_api_names_are_stable(server):
    names = set(client(server[0]).view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/random_mask", "/synthesize", "/keep", "/export"} <= names


def test_random_mask_synthesize_keep_export(server, tmp_path):
    from gradio_client import handle_file
    url, root = server
    c = client(url)
    img = tile(tmp_path)
    m = c.predict(handle_file(img), "Ellipse", 1.0, 3.0, 7, "crack", api_name="/random_mask")
    mask = np.array(Image.open(path_of(m)))
    source = np.array(Image.open(img))
    assert mask.shape == source.shape and set(np.unique(mask)) == {0, 255}
    assert 0.01 <= (mask > 0).mean() <= 0.03
    job = c.submit(handle_file(img), handle_file(path_of(m)), "SARD", "crack", 3, 2, True, api_name="/synthesize")
    updates = list(job)
    assert len(updates) == 2   # streamed: one update per finished variation
    gallery, status, full = updates[-1]
    assert len(gallery) == 2 and "2/2 done" in status
    result = np.array(Image.open(path_of(gallery[0]["image"])))
    assert np.array_equal(result[..., 0][mask == 0], source[mask == 0])   # PNG, exact background
    _, count = c.predict(1, api_name="/keep")
    assert "Curated: 1" in count
    status, zip_file = c.predict("api_test", api_name="/export")
    assert "Exported 1 pair " in status
    base = exported_base(status)
    assert base.parent.parent == root.resolve() and base.parent.name.startswith("session-")
    rec = json.loads((base / "manifest.jsonl").read_text().splitlines()[0])
    assert rec["method"] == "sard" and rec["defect"] == "crack" and rec["seed"] == 4
    assert rec["mask_params"]["kind"] == "ellipse" and rec["mask_params"]["seed"] == 7
    saved = np.array(Image.open(base / rec["image"]))
    assert np.array_equal(saved[mask == 0], source[mask == 0])
    assert np.array_equal(np.array(Image.open(base / rec["mask"])), mask)
    with zipfile.ZipFile(path_of(zip_file)) as z:
        assert sorted(z.namelist()) == sorted(f"api_test/{x}" for x in (rec["image"], rec["mask"], "manifest.jsonl"))
    files = sorted(base.rglob("*"))
    status, _ = c.predict("api_test", api_name="/export")   # the same curated set again: nothing new
    assert "Exported 0 pairs" in status and "already there" in status
    assert sorted(base.rglob("*")) == files and len((base / "manifest.jsonl").read_text().splitlines()) == 1


def test_random_masks_stay_on_an_objects_part(server, tmp_path):
    """A bright disk (the part) on a dark background: every random mask lies on the disk."""
    from gradio_client import handle_file
    yy, xx = np.mgrid[:128, :128]
    disk = (yy - 64) ** 2 + (xx - 64) ** 2 < 40 ** 2
    rng = np.random.default_rng(0)
    img = tmp_path / "part.png"
    Image.fromarray(np.where(disk, 170 + rng.integers(0, 20, disk.shape), 15).astype(np.uint8)).save(img)
    c = client(server[0])
    for seed in range(4):
        m = np.array(Image.open(path_of(c.predict(handle_file(str(img)), "Ellipse", 2.0, 6.0, seed, "crack",
                                                  api_name="/random_mask")))) > 0
        assert m.any() and not (m & ~disk).any()


def test_two_sessions_never_see_each_others_curated_sets(server, tmp_path):
    from gradio_client import handle_file
    url, root = server
    a, b = client(url), client(url)
    img = tile(tmp_path)
    m = a.predict(handle_file(img), "Polygon", 1.0, 2.0, 1, "blowhole", api_name="/random_mask")
    list(a.submit(handle_file(img), handle_file(path_of(m)), "CutPaste", "blowhole", 0, 1, True,
                  api_name="/synthesize"))
    assert "Curated: 1" in a.predict(0, api_name="/keep")[1]
    with pytest.raises(Exception, match="Nothing"):
        b.predict(0, api_name="/keep")          # b has no results of its own
    with pytest.raises(Exception, match="Nothing curated"):
        b.predict("b_set", api_name="/export")
    assert not list(root.glob("*/b_set"))
    assert "Exported 1 pair " in a.predict("a_set", api_name="/export")[0]


def test_sessions_export_apart_and_the_file_route_serves_no_export(server, tmp_path):
    """Issue 32 item 9: two sessions exporting into one category write to folders of their own
    (<export root>/session-.../<category>/); each zip holds exactly its own pair and manifest line; the
    file route serves nothing under the export root by path (another session's manifest was 200),
    only the zip each session was handed."""
    import httpx
    url, root = server
    a, b = client(url), client(url)
    rec_a, base_a, zip_a = curate_and_export(a, tile(tmp_path, "a.png"), root, "shared", with_zip=True)
    rec_b, base_b, zip_b = curate_and_export(b, tile(tmp_path, "b.png", (200, 240)), root, "shared", with_zip=True)
    assert rec_a["image_sha256"] != rec_b["image_sha256"]
    for base, rec, zip_path in ((base_a, rec_a, zip_a), (base_b, rec_b, zip_b)):
        with zipfile.ZipFile(zip_path) as z:
            assert [json.loads(x) for x in z.read("shared/manifest.jsonl").decode().splitlines()] == [rec]
            assert sorted(z.namelist()) == sorted(f"shared/{x}" for x in (rec["image"], rec["mask"], "manifest.jsonl"))
            assert z.read(f"shared/{rec['image']}") == (base / rec["image"]).read_bytes()
    for path in (base_a / "manifest.jsonl", base_b / "manifest.jsonl", base_b / rec_b["image"], Path(rec_a["source"])):
        assert path.is_file()
        assert httpx.get(f"{url}gradio_api/file={path}").status_code == 403, path
    assert base_a != base_b
    for base, rec in ((base_a, rec_a), (base_b, rec_b)):
        assert [json.loads(x) for x in (base / "manifest.jsonl").read_text().splitlines()] == [rec]
    for zip_path in (zip_a, zip_b):
        assert httpx.get(f"{url}gradio_api/file={zip_path}").content == Path(zip_path).read_bytes()


@pytest.mark.parametrize("category", ["../evil", "a/b", "..", "x" * 80, "bad name"])
def test_export_names_cannot_leave_the_export_root(server, tmp_path, category):
    from gradio_client import handle_file
    url, root = server
    c = client(url)
    img = tile(tmp_path)
    m = c.predict(handle_file(img), "Ellipse", 1.0, 2.0, 2, "crack", api_name="/random_mask")
    list(c.submit(handle_file(img), handle_file(path_of(m)), "DRAEM", "crack", 0, 1, True, api_name="/synthesize"))
    c.predict(0, api_name="/keep")
    before = {p for p in root.parent.rglob("*")}
    with pytest.raises(Exception, match="category"):
        c.predict(category, api_name="/export")
    assert {p for p in root.parent.rglob("*")} == before   # nothing written anywhere
    with pytest.raises(Exception, match=r"\.\./\.\./etc"):   # defect names come from the checkpoint's list
        c.predict(handle_file(img), handle_file(path_of(m)), "CutPaste", "../../etc", 0, 1, True,
                  api_name="/synthesize")


def test_files_outside_cache_and_export_root_are_not_served(server):
    import urllib.error
    import urllib.request
    url, _ = server
    for target in ("/etc/passwd", str(REPO / "app.py"), str(REPO / "checkpoints")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}gradio_api/file={target}")
        assert e.value.code in (403, 404)


def test_full_queue_answers_with_a_clear_message(tmp_path):
    from gradio_client import Client, handle_file
    demo, url = start(tmp_path, tiny_checkpoint(tmp_path / "ck"), queue_size=1, data=False)
    try:
        big = tmp_path / "big.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512), dtype=np.uint8)).save(big)
        mask = np.zeros((512, 512), np.uint8)
        mask[100:300, 100:300] = 255
        Image.fromarray(mask).save(tmp_path / "m.png")
        errors, done = [], []

        def run():
            try:
                c = Client(url, download_files=False, verbose=False)
                c.submit(handle_file(str(big)), handle_file(str(tmp_path / "m.png")), "SARD", "crack", 0, 4,
                         False, api_name="/synthesize").result()
                done.append(1)
            except Exception as e:  # noqa: BLE001 - the client reports the server's refusal as an exception
                errors.append(str(e))
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert any("Queue is full" in e for e in errors), errors
        assert done, "the jobs inside the queue still finish"
    finally:
        demo.close()


@pytest.mark.parametrize("case", ["unwritable", "file", "port", "checkpoint"])
def test_start_up_errors_exit_2_with_one_line(tmp_path, unwritable, case):
    root, port, ck = tmp_path / "exports", free_port(), tiny_checkpoint(tmp_path / "ck")
    if case == "unwritable":
        root = unwritable
    elif case == "file":
        root.write_text("x")
    elif case == "checkpoint":
        (ck / "model.safetensors").write_bytes(b"not weights")
    with socket.socket() as busy:
        if case == "port":
            busy.bind(("127.0.0.1", port))
            busy.listen()
        r = run_module("app", "--checkpoint", ck, "--export-root", root, "--port", port, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    flag = {"unwritable": "--export-root", "file": "--export-root", "port": "--port", "checkpoint": "model.safetensors"}
    assert flag[case] in r.stderr


@pytest.mark.parametrize("seed", [-1, 1e30])
def test_a_bad_seed_is_refused_with_one_line_in_the_server_log(server, tmp_path, capfd, seed):
    from gradio_client import handle_file
    c = client(server[0])
    img = handle_file(tile(tmp_path))
    with pytest.raises(Exception, match="seed: expected a whole number"):
        c.predict(img, "Ellipse", 1.0, 2.0, seed, "crack", api_name="/random_mask")
    err = capfd.readouterr().err
    assert "studio: refused: seed" in err and "Traceback" not in err


def test_manifest_source_is_a_copy_of_the_upload_kept_with_the_export(tmp_path):
    """Issue 32 item 8: an upload's manifest `source` names a copy kept in the session's export folder
    (sources/, named as uploaded), not Gradio's upload cache: the file outlives the server, bytes as
    uploaded (a JPEG stays that JPEG)."""
    from gradio.utils import get_upload_folder
    demo, url = start(tmp_path, tiny_checkpoint(tmp_path / "ck"), data=False)
    root = tmp_path / "exports"
    try:
        img = tmp_path / "my tile.jpg"
        Image.fromarray(texture((96, 128), 6)).save(img, quality=90)
        rec, base, _ = curate_and_export(client(url), str(img), root, "upload_source", with_zip=True)
    finally:
        demo.close()
    source = Path(rec["source"])
    assert source.is_absolute() and source == source.resolve() and source.name == "my tile.jpg"
    assert not source.is_relative_to(Path(get_upload_folder()).resolve()), source
    assert source.parent == base.parent / "sources" and base.parent.parent == root.resolve()
    assert source.read_bytes() == img.read_bytes()       # after the server stopped


def test_a_gallery_pick_records_the_data_set_file_with_its_own_name(tmp_path):
    data = make_tiny_data(tmp_path / "data")
    for p in sorted((data / "train" / "good").iterdir()):   # normals as JPEG: the pick is served as PNG
        Image.open(p).save(p.with_suffix(".jpg"), quality=95)
        p.unlink()
    demo, url = start(tmp_path, tiny_checkpoint(tmp_path / "ck"), data=data)
    try:
        picked = browser_event(url, "normals-gallery", "select", {"index": 2, "value": None, "selected": True})[0]
        rec = curate_and_export(client(url), path_of(picked), tmp_path / "exports", "picked")
    finally:
        demo.close()
    expected = (data / "train" / "good" / "002.jpg").resolve()
    assert rec["source"] == str(expected)
    assert np.array_equal(np.array(Image.open(path_of(picked))), np.array(Image.open(expected)))


def test_unreadable_and_oversized_uploads_are_named_by_their_own_name(tmp_path, monkeypatch, capfd):
    """A text file and a 63-megapixel image, through both API endpoints that take an image, with Gradio's
    uploads in a folder whose name has a space: the refusal names the file and what is expected."""
    from gradio_client import handle_file
    uploads = tmp_path / "gradio uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    demo, url = start(tmp_path, tiny_checkpoint(tmp_path / "ck"), data=False)
    try:
        c = client(url)
        notes = tmp_path / "notes.txt"
        notes.write_text("not an image")
        huge = tmp_path / "huge_tile.png"
        Image.new("1", (9000, 7000)).save(huge)   # 1-bit: a small file, 63 megapixels
        good = tile(tmp_path)
        cases = [(notes, "notes.txt: unreadable .* expected a complete png/jpg"),
                 (huge, r"huge_tile.png: 9000x7000 = 63.0 megapixels; expected at most 50 megapixels")]
        for f, message in cases:
            calls = [lambda: c.predict(handle_file(str(f)), "Ellipse", 1.0, 2.0, 0, "crack", api_name="/random_mask"),
                     lambda: c.predict(handle_file(str(f)), handle_file(good), "SARD", "crack", 0, 1, True,
                                       api_name="/synthesize")]
            if f == notes:   # the mask input too
                calls.append(lambda: c.predict(handle_file(good), handle_file(str(f)), "SARD", "crack", 0, 1, True,
                                               api_name="/synthesize"))
            for call in calls:
                with pytest.raises(Exception) as e:
                    call()
                assert re.match(message, str(e.value)), str(e.value)
                assert "Could not preprocess" not in str(e.value) and "uploads" not in str(e.value)
    finally:
        demo.close()
    assert any(os.scandir(uploads)), "the uploads went to GRADIO_TEMP_DIR"
    err = capfd.readouterr().err
    assert "studio: refused: notes.txt: unreadable" in err and "Traceback" not in err


def memory_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-memory reset")
def test_a_100_megapixel_mask_is_refused_from_its_header_before_it_is_decoded(server, tmp_path):
    """Issue 32 item 10: a 100-megapixel mask (a 1-bit PNG: a small file) through /synthesize is
    refused naming it and the limit, and the server (this process) never holds its pixels: the peak
    memory during the call stays under 40 MB above where it started (decoded, 100 MB and more)."""
    from gradio_client import handle_file
    c = client(server[0])
    huge = tmp_path / "huge mask.png"
    Image.new("1", (10000, 10000)).save(huge)
    good = handle_file(tile(tmp_path))
    c.view_api(print_info=False)
    Path("/proc/self/clear_refs").write_text("5")         # the peak (VmHWM) starts again from here
    before = memory_kb("VmRSS")
    with pytest.raises(Exception) as e:
        c.predict(good, handle_file(str(huge)), "SARD", "crack", 0, 1, True, api_name="/synthesize")
    grew_mb = (memory_kb("VmHWM") - before) / 1024
    assert grew_mb < 40, f"the server's memory peaked {grew_mb:.0f} MB above where it was: {e.value}"
    assert str(e.value).startswith("huge mask.png: 10000x10000 = 100.0 megapixels; expected at most 50 megapixels")


def test_synthesize_returns_the_inputs_size_and_a_display_copy(server, tmp_path):
    """A 1200 x 900 16-bit input: full-resolution results of its size and type (feathered exactly as
    feather() says), display copies at most 1024 pixels a side."""
    from gradio_client import handle_file

    from sard.masks import feather, feather_weights
    c = client(server[0])
    source = (texture((900, 1200), 4).astype(np.uint16) * 257)
    Image.fromarray(source).save(tmp_path / "big16.png")
    img = handle_file(str(tmp_path / "big16.png"))
    m = c.predict(img, "Ellipse", 1.0, 2.0, 3, "crack", api_name="/random_mask")
    mask = np.array(Image.open(path_of(m))) > 0
    outs = {}
    for fpx in (0, 5):
        shown, status, full = list(c.submit(img, handle_file(path_of(m)), "SARD", "crack", 2, 1, True, fpx,
                                            api_name="/synthesize"))[-1]
        outs[fpx] = np.array(Image.open(path_of(full[0]["image"])))
        assert outs[fpx].shape == source.shape and outs[fpx].dtype == np.uint16 and "1/1 done" in status
        assert np.array_equal(outs[fpx][~mask], source[~mask])
        assert np.array(Image.open(path_of(shown[0]["image"]))).shape == (768, 1024, 3)
    assert np.array_equal(outs[5], feather(outs[0], source, feather_weights(mask, 5)))
    assert not np.array_equal(outs[5], outs[0])


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_an_upload_with_alpha_keeps_it_in_the_results_and_the_export(server, tmp_path, mode):
    """Issue 32 item 1: an RGBA (or gray + alpha) upload comes back with its alpha channel, unchanged,
    in /synthesize's full-resolution results (what Download result gives), for SARD and a baseline,
    and in the exported pair."""
    from gradio_client import handle_file
    c = client(server[0])
    gray = texture((120, 160), 8)
    alpha = np.tile(np.linspace(40, 255, 160).astype(np.uint8), (120, 1))
    source = np.dstack([*([gray] * (3 if mode == "RGBA" else 1)), alpha])
    Image.fromarray(source).save(tmp_path / "part.png")
    assert Image.open(tmp_path / "part.png").mode == mode
    img = handle_file(str(tmp_path / "part.png"))
    m = c.predict(img, "Ellipse", 2.0, 4.0, 1, "crack", api_name="/random_mask")
    mask = np.array(Image.open(path_of(m))) > 0
    for method in ("SARD", "CutPaste"):
        full = list(c.submit(img, handle_file(path_of(m)), method, "crack", 0, 1, True,
                             api_name="/synthesize"))[-1][2]
        out = Image.open(path_of(full[0]["image"]))
        assert out.mode == mode, method
        out = np.array(out)
        assert np.array_equal(out[..., -1], alpha), method
        assert np.array_equal(out[~mask], source[~mask]) and not np.array_equal(out[mask], source[mask]), method
    c.predict(0, api_name="/keep")
    base = exported_base(c.predict(f"alpha_{mode}", api_name="/export")[0])
    rec = json.loads((base / "manifest.jsonl").read_text().splitlines()[-1])
    exported = Image.open(base / rec["image"])
    assert exported.mode == mode and np.array_equal(np.array(exported), out)


def test_no_file_is_served_while_it_is_written_again(server, tmp_path, capfd):
    """Issue 32 item 7: pictures the studio returns again (the same random mask, the same run twice,
    the curated set returned whole at each keep) come back as files written once: none is ever
    rewritten while a reader keeps fetching them all, every fetch is complete, and the server log
    holds no h11 "Too little data for declared Content-Length" or ClientDisconnect."""
    import httpx
    from gradio_client import handle_file
    url = server[0]
    c = client(url)
    img = handle_file(tile(tmp_path, size=(600, 800)))
    seen: dict[str, tuple[int, bytes]] = {}     # path -> (mtime_ns, bytes) when first returned
    errors, stop = [], threading.Event()

    def note(x):
        if isinstance(x, dict) and "path" in x:
            p = Path(x["path"])
            seen.setdefault(str(p), (p.stat().st_mtime_ns, p.read_bytes()))
        for v in (x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()):
            note(v)

    def reader():
        with httpx.Client(timeout=30) as h:
            while not stop.is_set():
                for path, (_, data) in list(seen.items()):
                    try:
                        got = h.get(f"{url}gradio_api/file={path}").content
                        if got != data:
                            errors.append(f"{Path(path).name}: {len(got)} of {len(data)} bytes")
                    except httpx.HTTPError as e:
                        errors.append(f"{Path(path).name}: {e!r}")
    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(3):
            m = c.predict(img, "Ellipse", 1.0, 3.0, 5, "crack", api_name="/random_mask")
            note(m)
        for _ in range(2):
            for update in c.submit(img, handle_file(path_of(m)), "CutPaste", "crack", 0, 2, True,
                                   api_name="/synthesize"):
                note(update)
        for k in (0, 1):
            note(c.predict(k, api_name="/keep"))
        time.sleep(1)
    finally:
        stop.set()
        t.join(timeout=60)
    assert len(seen) >= 5
    rewritten = [Path(p).name for p, (mtime, data) in seen.items()
                 if Path(p).stat().st_mtime_ns != mtime or Path(p).read_bytes() != data]
    assert not rewritten, f"written again after they were served: {rewritten}"
    assert not errors, errors[:5]
    err = capfd.readouterr().err
    assert "Too little data" not in err and "ClientDisconnect" not in err


def readme_client_script() -> str:
    text = (REPO / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text[text.index("## The studio"):], re.S).group(1)


def test_readme_client_script_passes_against_start_sh_without_data(tmp_path):
    """bash scripts/start.sh as the README's first command (no --data): the real-mask bank is the
    checkpoint's, and the README's client script runs as printed."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "server.log").open("w")
    command = ["bash", "scripts/start.sh", "--port", str(port), "--export-root", str(tmp_path / "exports")]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.time()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                assert server.poll() is None and time.time() - t0 < 300, (tmp_path / "server.log").read_text()
                time.sleep(0.3)
        part = texture((300, 400), 5)
        Image.fromarray(part).save(tmp_path / "part.png")
        script = readme_client_script().replace("http://127.0.0.1:7860/", f"http://127.0.0.1:{port}/")
        r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=env)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [x for x in lines if "done" in x][-1].startswith("3/3 done") and "Exported 3 pairs" in lines[-1]
    assert np.array(Image.open(next(x for x in lines if x.endswith(".png") and Path(x).is_file()))).shape == part.shape
    base, = (tmp_path / "exports").glob("session-*/my_set")
    records = [json.loads(x) for x in (base / "manifest.jsonl").read_text().splitlines()]
    assert [rec["seed"] for rec in records] == [0, 1, 2]
    bank = REPO / "checkpoints" / "sard-magnetic-tile" / "bank"
    assert all(Path(rec["mask_params"]["drawn"]["source"]).parent.parent == bank for rec in records)


# -- the studio's logic, without a server ----------------------------------------------------------

@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from ui.actions import Studio
    tmp = tmp_path_factory.mktemp("studio_logic")
    return Studio(tiny_checkpoint(tmp / "ck"), tmp / "exports")


def test_strokes_add_to_a_mask_and_the_eraser_removes_at_full_resolution(studio):
    """A 2400 x 1800 image is shown at 1024 x 768: the random mask's full-resolution pixels stay where
    the editor still shows it, a stroke adds its region, an erased block goes."""
    from ui.pictures import mask_layer, to_display_mask
    from ui.session import Session
    session = Session()
    image = texture((1800, 2400), 1)
    session.new_image("/x.png", image, 1024 / 2400)
    base = random_mask_of(image.shape)
    session.set_mask(base, {"kind": "scratch"})
    shown = to_display_mask(base, (768, 1024))
    editor = lambda m: {"background": None, "layers": [mask_layer(m)], "composite": None}   # noqa: E731
    full, _, session = studio.mask_from_editor(editor(shown), 0, session)
    assert np.array_equal(full > 0, base) and session.mask_params == {"kind": "scratch"}   # untouched: itself
    stroke = np.zeros((768, 1024), bool)
    stroke[700:720, 50:300] = True
    full, _, session = studio.mask_from_editor(editor(shown | stroke), 0, session)
    added = to_display_mask(stroke, (1800, 2400))
    assert np.array_equal(full > 0, base | added)
    assert session.mask_params == {"kind": "painted", "on": {"kind": "scratch"}}
    erased = shown.copy()
    ys, xs = np.nonzero(shown)
    erased[ys.min():ys.min() + 20] = False
    full, _, _ = studio.mask_from_editor(editor(erased), 0, session)
    assert np.array_equal(full > 0, base & ~to_display_mask(shown & ~erased, (1800, 2400)))
    assert 0 < (full > 0).sum() < base.sum()


def random_mask_of(shape) -> np.ndarray:
    from sard.masks import random_mask
    return random_mask("scratch", shape, 4, (0.002, 0.004))[0] > 0


def test_dilate_erode_and_clear_keep_the_mask_params_honest(studio):
    from ui.session import Session
    session = Session()
    session.new_image("/x.png", texture((120, 160), 2), 1.0)
    m = np.zeros((120, 160), bool)
    m[40:80, 50:100] = True
    session.set_mask(m, {"kind": "uploaded", "file": "m.png"})
    grown, session = studio.dilate(3, session)
    assert (grown > 0).sum() > m.sum()
    assert session.mask_params == {"kind": "edited", "from": {"kind": "uploaded", "file": "m.png"},
                                   "edits": ["dilate 3"]}
    shrunk, session = studio.erode(5, session)
    assert session.mask_params["edits"] == ["dilate 3", "erode 5"] and (shrunk > 0).sum() < m.sum()
    with pytest.raises(gr.Error, match="Eroding by 40 pixels leaves nothing"):
        studio.erode(40, session)
    editor, overlay, mask, session = studio.clear_mask(0, session)
    assert editor["layers"] == [] and editor["background"].shape == (120, 160, 3) and mask is None
    assert np.array_equal(overlay, editor["background"]) and session.mask is None


@pytest.mark.parametrize("case", ["levels", "colour", "empty", "size"])
def test_an_uploaded_mask_is_used_as_it_is_or_refused_saying_why(case):
    from sard.io import strict_mask as uploaded_mask
    m = np.zeros((30, 40), np.uint8)
    m[5:10, 5:20] = 255
    assert np.array_equal(uploaded_mask(m, "m.png", (30, 40)), m > 0)
    assert np.array_equal(uploaded_mask(np.dstack([m // 255] * 3), "m.png", (30, 40)), m > 0)
    levels = m.copy()
    levels[0, 0] = 128
    bad, message = {"levels": (levels, r"m.png: not a mask \(3 gray levels from 0 to 255\)"),
                    "colour": (np.dstack([m, m * 0, m]), r"m.png: not a mask \(its colour channels differ\)"),
                    "empty": (m * 0, r"m.png: the mask is empty"),
                    "size": (m[:29], r"m.png: 40x29 does not match the image's 40x30")}[case]
    with pytest.raises(SardInputError, match=message):
        uploaded_mask(bad, "m.png", (30, 40))


def test_step_through_counts_steps_as_its_caption_and_shows_x_t_in_its_own_range(studio):
    from ui.session import Session, Variation
    session = Session()
    image = texture((64, 64), 7)
    session.new_image("/x.png", image, 1.0)
    view = studio.step_view(0, None, session)
    assert view[0]["visible"] is False and view[1] == "No results yet." and view[2] is None
    m = np.zeros((64, 64), bool)
    m[20:40, 20:44] = True
    r = studio.pipe(image, m, seed=1, defect="crack")
    session.variations = [Variation(r.image, r.mask, r.frames, r.roi, {"method": "sard"})]
    T = studio.pipe.schedule.num_steps
    last = studio.step_view(0, None, session)
    assert last[0]["value"] == T and last[0]["minimum"] == 1 and last[0]["maximum"] == T
    assert f"Reverse step {T}/{T}" in last[1] and "t = 1 of" in last[1] and last[4] is not None
    first = studio.step_view(0, 1, session)
    assert first[0]["value"] == 1 and f"Reverse step 1/{T}" in first[1] and f"t = {T} of {T}" in first[1]
    assert first[4] is None                                  # no previous step to change from
    lo, hi = r.frames[0].x_t_range                           # x_T is noise: beyond [-1, 1], not clipped
    assert lo < -1 and hi > 1 and f"{lo:.2f} to {hi:.2f}" in first[1]
    assert r.frames[0].x_t.min() == 0 and r.frames[0].x_t.max() == 255
    assert len(re.findall(r"\d\.\d{3}", first[1])) == T - 1   # the change of x0 per step, after the first


def test_step_through_shows_the_native_scale_refine_step_after_the_scaled_ones(studio):
    from sard.pipeline import SardPipeline
    from ui.session import Session, Variation
    pipe = SardPipeline.from_pretrained(REPO / "checkpoints" / "sard-bottle")      # refine 1 in its config
    assert pipe.config.refine == 1
    image = np.dstack([texture((200, 200), 3)] * 3)
    m = np.zeros((200, 200), bool)
    m[30:170, 40:160] = True                                  # larger than its 64 px crops: painted scaled
    r = pipe(image, m, seed=2, defect="contamination")
    T = pipe.schedule.num_steps
    assert len(r.frames) == T + 1 and r.frames[0].scale < 1 and r.frames[-1].scale == 1
    session = Session()
    session.new_image("/x.png", image, 1.0)
    session.variations = [Variation(r.image, r.mask, r.frames, r.roi, {"method": "sard"})]
    last = studio.step_view(0, None, session)
    assert last[0]["maximum"] == T + 1 and f"Reverse step {T + 1}/{T + 1}" in last[1]
    assert "refine step" in last[1] and "refine step" not in studio.step_view(0, T, session)[1]


def test_x0_changes_are_mean_absolute_differences_inside_the_mask():
    from sard.results import FrameImages
    from ui.pictures import x0_changes
    m = np.zeros((4, 4), bool)
    m[:2] = True
    frames = [FrameImages(i, None, np.full((4, 4), v, np.uint8), None) for i, v in enumerate((0, 51, 51))]
    frames[2].x0_hat[2:] = 255                               # outside the mask: not counted
    assert x0_changes(frames, m) == [None, pytest.approx(0.2), 0.0]


def test_messages_count_and_hide_temp_folders():
    from ui.messages import clean, count
    assert (count(1, "pair"), count(0, "pair"), count(3, "pair")) == ("1 pair", "0 pairs", "3 pairs")
    upload = Path(tempfile.gettempdir()) / "gradio" / "0a1b2c" / "my tile.png"
    assert clean(f"{upload}: unreadable") == "my tile.png: unreadable"
    assert clean(f"{upload}: unreadable", upload, "part.png") == "part.png: unreadable"


def test_the_served_page_names_the_device_in_its_title_line(server):
    import httpx
    cfg = httpx.get(f"{server[0]}config").json()
    (head,) = [c["props"]["value"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == "sard-title"]
    device = "CUDA: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    assert head.splitlines()[0] == f"# SARD Studio · runs on {device}"


def test_the_title_names_a_gpu_by_its_name(studio, monkeypatch):
    from ui.layout import title
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(studio.pipe, "device", torch.device("cuda:0"))
    assert title(studio).splitlines()[0] == "# SARD Studio · runs on CUDA: NVIDIA H100 80GB HBM3"


def test_the_studio_says_what_the_checkpoint_does_to_colour(studio, tmp_path):
    from ui.actions import Studio
    from ui.layout import title
    from ui.session import Session
    rgb = Studio(tiny_checkpoint(tmp_path / "rgb", channels=3), tmp_path / "exports")
    assert "gray checkpoint: on a colour image it changes luminance" in title(studio)
    assert "RGB checkpoint: paints colour" in title(rgb)
    gray, colour = tmp_path / "gray.png", tmp_path / "colour.png"
    Image.fromarray(texture((40, 50), 1)).save(gray)
    Image.fromarray(np.dstack([texture((40, 50), k) for k in range(3)])).save(colour)
    notes = {(s.pipe.channels, p.name): s.load_image(str(p), Session())[3]
             for s in (studio, rgb) for p in (gray, colour)}
    assert "gray model: SARD changes luminance, keeps its colour" in notes[(1, "colour.png")]
    assert "(SARD paints colour)" in notes[(3, "colour.png")]
    assert "RGB model: SARD synthesizes in colour, the result is its gray" in notes[(3, "gray.png")]
    assert notes[(1, "gray.png")] == "gray.png: 50x40, 8-bit, gray"


def test_bank_masks_keep_to_the_area_range_as_every_generator(tmp_path):
    """Issue 32 item 6: a real mask from the bank is scaled into the area range the studio offers (its
    natural size ran from 0.07 to 54 % of the image): the tiny data set's masks (about 1.5 % of
    their tiles) asked for 5-10 %, the shipped checkpoint's bank (when present) for 0.5-3 %."""
    from ui.actions import Studio
    from ui.session import Session
    studios = [(Studio(tiny_checkpoint(tmp_path / "ck"), tmp_path / "exports", make_tiny_data(tmp_path / "data")),
                (5.0, 10.0))]
    if (DEFAULT_CK / "bank").is_dir():
        studios.append((Studio(DEFAULT_CK, tmp_path / "exports"), (0.5, 3.0)))
    img = tile(tmp_path, size=(300, 400))
    for studio, (lo, hi) in studios:
        for seed in range(12):
            m, session = studio.random_mask(img, "Real-mask bank", lo, hi, seed, "crack", Session())
            area = 100 * (m > 0).mean()
            assert lo <= area <= hi, f"{studio.checkpoint.name} seed {seed}: {area:.2f} % of the image"
            assert session.mask_params["kind"] == "bank" and session.mask_params["area"] == [lo / 100, hi / 100]


def test_real_examples_and_the_bank_come_from_the_data_set_or_the_checkpoint(studio, tmp_path):
    from sard.masks import write_bank
    from ui.actions import Studio
    from ui.session import Session
    data = make_tiny_data(tmp_path / "data", size=(64, 80))
    with_data = Studio(tiny_checkpoint(tmp_path / "ck"), tmp_path / "exports", data)
    crops = with_data.examples("crack")
    assert len(crops) == 6 and all(max(c.shape[:2]) == 160 and c.ndim == 3 for c, _ in crops)
    assert [name for _, name in crops] == [f"{i:03d}.png" for i in range(6)]
    assert with_data.examples("fray") == [] and "No real fray defects" in with_data.examples_view("fray")["label"]
    assert "training third" in with_data.bank.origin and len(with_data.bank) == 4
    tile_path = tile(tmp_path)
    with pytest.raises(gr.Error, match="carries none and no data set was given.*--write-bank"):
        studio.random_mask(tile_path, "Real-mask bank", 1, 2, 0, "crack", Session())
    write_bank(tmp_path / "ck", data)            # the same checkpoint, now with its bank, and no data set
    alone = Studio(tmp_path / "ck", tmp_path / "exports")
    assert "shipped with ck" in alone.bank.origin and alone.examples("crack") == []
    m, session = alone.random_mask(tile_path, "Real-mask bank", 1, 2, 0, "crack", Session())
    assert m.any() and session.mask_params["drawn"]["source"].startswith(str(tmp_path / "ck" / "bank"))
