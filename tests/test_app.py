"""The studio through gradio_client against a real launched server: API names, streaming, curation,
export on disk, two sessions kept apart, path traversal refused, the queue limit."""
import json
import os
import re
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, make_tiny_data, run_module, texture, tiny_checkpoint

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


def curate_and_export(c, img: str, root: Path, category: str) -> dict:
    """Random mask, one SARD result, keep it, export: the pair's manifest line."""
    from gradio_client import handle_file
    m = c.predict(handle_file(img), "Ellipse", 2.0, 4.0, 1, "crack", api_name="/random_mask")
    list(c.submit(handle_file(img), handle_file(path_of(m)), "SARD", "crack", 0, 1, True, api_name="/synthesize"))
    c.predict(0, api_name="/keep")
    assert "Exported 1 pairs" in c.predict(category, api_name="/export")[0]
    return json.loads((root / category / "manifest.jsonl").read_text().splitlines()[0])


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
    gallery, status = updates[-1]
    assert len(gallery) == 2 and "2/2 done" in status
    result = np.array(Image.open(path_of(gallery[0]["image"])))
    assert np.array_equal(result[..., 0][mask == 0], source[mask == 0])   # PNG, exact background
    _, count = c.predict(1, api_name="/keep")
    assert "Curated: 1" in count
    status, zip_file = c.predict("api_test", api_name="/export")
    assert "Exported 1 pairs" in status
    base = root / "api_test"
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
    assert not (root / "b_set").exists()
    assert "Exported 1 pairs" in a.predict("a_set", api_name="/export")[0]


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


def test_manifest_source_is_the_absolute_path_of_the_upload(server, tmp_path):
    url, root = server
    img = tile(tmp_path, "my tile.png")
    rec = curate_and_export(client(url), img, root, "upload_source")
    source = Path(rec["source"])
    assert source.is_absolute() and source == source.resolve() and source.name == "my tile.png"
    assert np.array_equal(np.array(Image.open(source)), np.array(Image.open(img)))   # the file read, while served


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
