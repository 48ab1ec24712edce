"""The studio in a real browser (Debian's chromium, driven by Playwright, headless), one server and one
browser for the module: upload, paint, synthesize, step through, keep, export, download; a random mask
drawn where the overlay (and synthesis) has it, strokes adding to it, Clear mask keeping the image,
an uploaded mask used as it is. The editor's layers are read back from its canvas (window.editor,
the blobs it would send), the overlay from the image the browser shows."""
import base64
import io
import json
import os
import re
import shutil
import socket
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MAGNETIC_TILE, REPO, requires_data

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SARD_ARTIFACTS", REPO / "tests" / "artifacts"))
pytestmark = [requires_data, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                reason="Debian's chromium is not installed (scripts/test.sh installs it as root)")]
TILE = MAGNETIC_TILE / "train" / "good" / "exp1_num_10181.jpg"    # 494 x 361: shown at full size

# The editor's layers and background as it holds them (what it sends to the server), base64 PNGs.
EDITOR_BLOBS = """async () => {
  const b64 = async (blob) => { if (!blob) return null; const u = new Uint8Array(await blob.arrayBuffer());
    let s = ''; for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
    return btoa(s); };
  if (!window.editor || !window.editor.layer_manager) return null;      // still starting
  const blobs = await window.editor.get_blobs();
  return {background: await b64(blobs.background), layers: await Promise.all(blobs.layers.map(b64))};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path_factory.mktemp("browser") / "exports"
    demo = app.launch(app.parse_args(["--port", str(port), "--export-root", str(root), "--data", str(MAGNETIC_TILE)]),
                      block=False)
    yield f"http://127.0.0.1:{port}/", root
    demo.close()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1600}, accept_downloads=True)
    page.goto(server[0], wait_until="load")
    yield page
    page.close()


def load(page, image: Path) -> np.ndarray:
    source = np.array(Image.open(image))
    page.locator("#image-input input[type=file]").set_input_files(str(image))
    size = f"{source.shape[1]}x{source.shape[0]}"
    page.wait_for_function(f"document.querySelector('#image-info').innerText.includes('{size}')")
    wait_for_layer(page, lambda layer: not layer.any())
    return source


# The "Error" badges Gradio leaves on the outputs of a failed action (toasts aside).
BADGES = "[...document.querySelectorAll('[data-testid=status-tracker] .error')].filter(e => e.innerText.trim())"


def editor(page) -> tuple[np.ndarray, np.ndarray]:
    """(background RGB, mask: any layer's alpha > 0) as the editor holds them."""
    blobs = page.evaluate(EDITOR_BLOBS)
    if blobs is None:
        return None, None
    decode = lambda b: np.array(Image.open(io.BytesIO(base64.b64decode(b))))   # noqa: E731
    layers = [decode(b)[..., 3] > 0 for b in blobs["layers"] if b]
    return decode(blobs["background"])[..., :3], np.any(layers, axis=0) if layers else None


def wait_for_layer(page, ok, timeout: float = 30) -> np.ndarray:
    t0 = time.time()
    while True:
        _, layer = editor(page)
        if layer is not None and ok(layer):
            return layer
        if time.time() - t0 > timeout:
            raise AssertionError("the editor's layer never became what was expected")
        time.sleep(0.3)


def overlay_mask(page, source: np.ndarray, old: str | None = None) -> np.ndarray:
    """The pixels the Mask overlay shows tinted (the server's mask), once its image is not `old`."""
    page.wait_for_function("(old) => { const i = document.querySelector('#mask-overlay img'); "
                           "return i && i.src && i.src !== old; }", arg=old)
    src = page.locator("#mask-overlay img").get_attribute("src")
    shown = np.array(Image.open(io.BytesIO(urllib.request.urlopen(src).read())).convert("RGB")).astype(int)
    return np.abs(shown - np.repeat(source[..., None], 3, 2)).max(axis=2) > 8


def overlay_src(page) -> str | None:
    img = page.locator("#mask-overlay img")
    return img.get_attribute("src") if img.count() else None


def stroke(page, fx: float, fy: float, dx: float = 40, dy: float = 30):
    box = page.locator("#mask-editor canvas").first.bounding_box()
    x0, y0 = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + dx, y0 + dy, steps=20)
    page.mouse.up()


def upload(page, mask: Path):
    with page.expect_file_chooser() as chooser:
        page.click("#upload-mask")
    chooser.value.set_files(str(mask))


def exported(root: Path, category: str) -> Path:
    """The category folder of the one session (browser page) that exported it: <root>/session-.../<category>."""
    base, = root.glob(f"session-*/{category}")
    return base


def choose(page, label: str, option: str):
    page.get_by_label(label).click()
    page.get_by_role("option", name=option).click()


def test_random_mask_lands_where_the_overlay_has_it_and_strokes_add_to_it(page):
    from sard.masks import random_mask
    source = load(page, TILE)
    choose(page, "Random mask generator", "Ellipse")
    page.get_by_label("Area min (%)").fill("4")
    page.get_by_label("Area max (%)").fill("8")
    page.get_by_label("Mask seed").fill("3")
    old = overlay_src(page)
    page.click("#random-mask")
    expected = random_mask("ellipse", source.shape, 3, (0.04, 0.08))[0] > 0
    layer = wait_for_layer(page, lambda m: m.any())
    background, _ = editor(page)
    assert np.array_equal(background[..., 0], source)      # the picture itself, unmoved
    assert np.array_equal(layer, expected)                 # the editor draws the mask at its pixels
    assert np.array_equal(overlay_mask(page, source, old), expected)   # and so does the overlay

    old = overlay_src(page)
    stroke(page, 0.75, 0.3)                                # far from nothing in particular: a second region
    layer = wait_for_layer(page, lambda m: m.sum() > expected.sum())
    assert (layer & expected).sum() == expected.sum()      # the random mask stays: a union
    page.screenshot(path=str(ARTIFACTS / "random_mask_and_stroke.png"), full_page=True)
    shown = overlay_mask(page, source, old)
    assert np.array_equal(shown, layer) and (shown & ~expected).any()


def test_clear_mask_keeps_the_image_and_the_trash_does_the_same(page):
    source = load(page, TILE)
    choose(page, "Random mask generator", "Polygon")
    page.click("#random-mask")
    wait_for_layer(page, lambda m: m.any())
    page.click("#clear-mask")
    wait_for_layer(page, lambda m: not m.any())
    background, _ = editor(page)
    assert np.array_equal(background[..., 0], source)
    stroke(page, 0.4, 0.4)                                 # the brush still paints, on the image
    wait_for_layer(page, lambda m: m.any())
    page.locator("#mask-editor button[aria-label='Clear canvas']").click()
    page.wait_for_timeout(1500)
    layer = wait_for_layer(page, lambda m: not m.any())
    background, _ = editor(page)
    assert not layer.any() and np.array_equal(background[..., 0], source)


def test_an_uploaded_mask_is_used_as_it_is(page, server, tmp_path):
    url, root = server
    source = load(page, TILE)
    mask = np.zeros(source.shape, np.uint8)
    mask[40:90, 60:75] = 255                               # a bar and a ring: nothing a generator makes
    ys, xs = np.mgrid[: source.shape[0], : source.shape[1]]
    mask[(np.hypot(ys - 250, xs - 300) < 30) & (np.hypot(ys - 250, xs - 300) > 20)] = 255
    Image.fromarray(mask).save(tmp_path / "my mask.png")
    Image.fromarray(mask[:-1]).save(tmp_path / "short.png")
    old = overlay_src(page)
    upload(page, tmp_path / "my mask.png")
    assert np.array_equal(wait_for_layer(page, lambda m: m.any()), mask > 0)
    assert np.array_equal(overlay_mask(page, source, old), mask > 0)

    # A mask of another size is refused naming the file; the next action clears the error badge.
    upload(page, tmp_path / "short.png")
    toast = page.locator(".toast-body").filter(has_text="short.png")
    toast.first.wait_for()
    text = toast.first.inner_text()
    assert "494x360 does not match the image's 494x361" in text and "/tmp" not in text and "gradio" not in text

    page.click("#export")                                  # nothing curated yet: an error badge on the outputs
    page.wait_for_function(f"{BADGES}.length > 0")
    page.get_by_label("CutPaste").check()
    page.locator("#variations input[type=number], input[aria-label='number input for Variations']").first.fill("1")
    page.click("#synthesize")
    page.wait_for_function("document.querySelector('#synth-status').innerText.includes('1/1 done')", timeout=120_000)
    assert page.evaluate(f"{BADGES}.length") == 0          # the next action cleared it
    page.click("#keep")
    page.wait_for_function("document.querySelector('#curated-count').innerText.includes('Curated: 1')")
    page.locator("#category input, #category textarea").first.fill("uploaded_mask")
    page.click("#export")
    page.wait_for_function("document.querySelector('#export-status').innerText.includes('Exported 1 pair ')")
    base = exported(root, "uploaded_mask")
    rec = json.loads((base / "manifest.jsonl").read_text().splitlines()[0])
    assert rec["mask_params"] == {"kind": "uploaded", "file": "my mask.png"}
    assert np.array_equal(np.array(Image.open(base / rec["mask"])), mask)


def test_paint_synthesize_step_keep_export_download(page, server, tmp_path):
    url, root = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image = sorted((MAGNETIC_TILE / "test" / "good").iterdir())[5]
    source = load(page, image)
    assert page.locator("#download").is_disabled() and "export first" in page.locator("#download").inner_text()
    assert page.locator("#step-slider").is_hidden() and page.locator("#step-caption").inner_text() == "No results yet."
    stroke(page, 0.4, 0.35, 50, 70)
    page.screenshot(path=str(ARTIFACTS / "1_painted.png"), full_page=True)

    page.click("#synthesize")
    page.wait_for_function("document.querySelectorAll('#results img').length >= 3", timeout=180_000)
    page.wait_for_function("document.querySelector('#synth-status').innerText.includes('3/3 done')")
    thumbs = page.locator("#results button.thumbnail-item")
    thumbs.nth(1).click()
    # the last of T = 4 reverse steps, or of 5 when the stroke, larger than the model's 64 px crops, is
    # painted at their scale and then refined at native scale (the shipped checkpoint's refine 1)
    page.wait_for_function(r"/Reverse step (\d+)\/\1\b/.test(document.querySelector('#step-caption').innerText)")
    caption = page.locator("#step-caption").inner_text()
    n = int(re.search(r"Reverse step (\d+)/(\d+)", caption).group(2))
    assert n in (4, 5) and (("refine step" in caption) == (n == 5)), caption
    slider = page.locator("#step-slider input[type=range]")
    assert slider.get_attribute("min") == "1" and slider.get_attribute("max") == str(n) and slider.input_value() == str(n)
    slider.focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"document.querySelector('#step-caption').innerText.includes('Reverse step {n - 1}/{n}')")
    assert slider.input_value() == str(n - 1)
    page.wait_for_selector("#heat-map img")
    page.wait_for_selector("#compare img")
    page.screenshot(path=str(ARTIFACTS / "2_step_through.png"), full_page=True)
    with page.expect_download() as dl:
        page.click("#download-result")
    dl.value.save_as(tmp_path / "result.png")
    result = np.array(Image.open(tmp_path / "result.png"))
    assert result.shape == source.shape and (result != source).any()

    page.click("#keep")
    page.wait_for_function("document.querySelector('#curated-count').innerText.includes('Curated: 1')")
    thumbs.nth(2).click()
    time.sleep(0.5)
    page.click("#keep")
    page.wait_for_function("document.querySelector('#curated-count').innerText.includes('Curated: 2')")
    page.locator("#category input, #category textarea").first.fill("browser_set")
    page.click("#export")
    page.wait_for_function("document.querySelector('#export-status').innerText.includes('Exported 2 pairs')",
                           timeout=60_000)
    page.wait_for_function("!document.querySelector('#download').disabled")
    with page.expect_download() as dl:
        page.click("#download")
    zip_path = tmp_path / "download.zip"
    dl.value.save_as(zip_path)
    page.screenshot(path=str(ARTIFACTS / "3_exported.png"), full_page=True)

    base = exported(root, "browser_set")
    manifest = [json.loads(x) for x in (base / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 2 and [r["seed"] for r in manifest] == [1, 2]
    for rec in manifest:
        img = np.array(Image.open(base / rec["image"]))
        mask = np.array(Image.open(base / rec["mask"]))
        assert Image.open(base / rec["mask"]).mode == "L" and set(np.unique(mask)) == {0, 255}
        assert img.shape == source.shape
        assert np.array_equal(img[mask == 0], source[mask == 0])   # the painted region only
        assert (img[mask > 0] != source[mask > 0]).mean() > 0.5
        assert rec["method"] == "sard" and rec["mask_params"] == {"kind": "painted"}
        assert Path(rec["source"]).is_absolute() and Path(rec["source"]).name == image.name   # the upload, as named
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
    assert names == {f"browser_set/{r[k]}" for r in manifest for k in ("image", "mask")} | {"browser_set/manifest.jsonl"}


def test_cancel_stops_a_run_and_a_random_seed_is_drawn(page):
    load(page, TILE)
    choose(page, "Random mask generator", "Ellipse")
    page.click("#random-mask")
    wait_for_layer(page, lambda m: m.any())
    page.click("#random-seed")
    page.wait_for_function("document.querySelector('#seed input').value !== '0'")
    page.get_by_label("RCD (keep background exact)").uncheck()        # the whole image each time: slower
    page.locator("input[aria-label='number input for Variations']").fill("8")
    page.locator("input[aria-label='number input for Variations']").press("Enter")
    page.click("#synthesize")
    page.wait_for_function("document.querySelector('#synth-status').innerText.includes('1/8 done')", timeout=120_000)
    page.click("#cancel")
    page.wait_for_function("document.querySelector('#synth-status').innerText.includes('Cancelled')")
    shown = page.locator("#results button.thumbnail-item").count()
    time.sleep(4)                                                  # nothing more arrives
    assert page.locator("#results button.thumbnail-item").count() == shown < 8
    assert "Cancelled" in page.locator("#synth-status").inner_text()


def set_variations(page, n: int):
    box = page.locator("input[aria-label='number input for Variations']")
    box.fill(str(n))
    box.press("Enter")


def synthesize_cutpaste(page, variations: int):
    """`variations` CutPaste results (fast) of the image and mask loaded, shown."""
    page.get_by_label("CutPaste").check()
    set_variations(page, variations)
    page.click("#synthesize")
    page.wait_for_function(f"document.querySelector('#synth-status').innerText.includes('{variations}/{variations} "
                           f"done')", timeout=120_000)


def run_cutpaste(page, variations: int, image: Path = TILE) -> np.ndarray:
    """The image loaded, a random ellipse mask, `variations` CutPaste results shown."""
    source = load(page, image)
    choose(page, "Random mask generator", "Ellipse")
    page.click("#random-mask")
    wait_for_layer(page, lambda m: m.any())
    synthesize_cutpaste(page, variations)
    return source


def curated_count(page) -> int:
    return int(page.locator("#curated-count").inner_text().split(":")[1])


def test_remove_with_nothing_selected_says_so_and_the_curated_set_stays_clickable(page):
    """Issue 32 item 2: Remove with no curated result selected is a message; no "Error" badge covers
    the curated gallery, so the result can be selected there and removed."""
    run_cutpaste(page, 1)
    page.click("#keep")
    page.wait_for_function("document.querySelector('#curated-count').innerText.includes('Curated: 1')")
    page.click("#remove")
    page.locator(".toast-body").filter(has_text="Select a curated result to remove").first.wait_for()
    page.wait_for_timeout(500)
    assert page.evaluate(f"{BADGES}.filter(e => e.closest('#curated')).length") == 0
    page.locator("#curated button.thumbnail-item").first.click(timeout=5000)   # not swallowed by a badge
    page.wait_for_timeout(300)
    page.click("#remove")
    page.wait_for_function("document.querySelector('#curated-count').innerText.includes('Curated: 0')")
    assert page.evaluate(f"{BADGES}.length") == 0


def test_keeping_a_result_twice_keeps_it_once(page, server):
    """Issue 32 item 3: Keep selected twice on one result counts it once (and says so); Keep all then
    adds only the others; the export writes as many pairs as the count says."""
    root = server[1]
    run_cutpaste(page, 2)
    page.click("#keep")
    page.wait_for_function("document.querySelector('#curated-count').innerText.includes('Curated: 1')")
    page.click("#keep")                                    # the same result again: counted twice, or said so
    page.wait_for_function("document.querySelector('#curated-count').innerText.includes('Curated: 2') || "
                           "[...document.querySelectorAll('.toast-body')].some(t => t.innerText.includes("
                           "'already in the curated set'))")
    page.wait_for_timeout(500)
    assert curated_count(page) == 1
    page.click("#keep-all")
    page.wait_for_function("!document.querySelector('#curated-count').innerText.includes('Curated: 1')")
    assert curated_count(page) == 2 and page.locator("#curated button.thumbnail-item").count() == 2
    page.locator("#category input, #category textarea").first.fill("kept_once")
    page.click("#export")
    page.wait_for_function("document.querySelector('#export-status').innerText.includes('Exported 2 pairs')")
    assert "already there" not in page.locator("#export-status").inner_text()
    assert len((exported(root, "kept_once") / "manifest.jsonl").read_text().splitlines()) == 2


def test_curated_thumbnails_show_the_mask_region_whole(page, tmp_path):
    """Issue 32 item 4: with the mask at the bottom of the part, each curated thumbnail lies whole
    inside the curated gallery's visible area (not cropped to the top of the image) and shows the
    tinted mask region."""
    source = load(page, TILE)
    mask = np.zeros(source.shape, np.uint8)
    mask[315:350, 190:270] = 255                           # near the bottom edge
    Image.fromarray(mask).save(tmp_path / "bottom.png")
    upload(page, tmp_path / "bottom.png")
    wait_for_layer(page, lambda m: m.any())
    synthesize_cutpaste(page, 2)
    page.click("#keep-all")
    page.wait_for_function("document.querySelectorAll('#curated button.thumbnail-item img').length == 2 && "
                           "[...document.querySelectorAll('#curated button.thumbnail-item img')].every(i => i.complete)")
    page.wait_for_timeout(500)
    view = page.locator("#curated .grid-wrap").bounding_box()
    page.screenshot(path=str(ARTIFACTS / "curated.png"), full_page=True)
    for k in range(2):
        b = page.locator("#curated button.thumbnail-item img").nth(k).bounding_box()
        assert b["y"] >= view["y"] - 1 and b["y"] + b["height"] <= view["y"] + view["height"] + 1, (k, b, view)
        shot = np.array(Image.open(io.BytesIO(page.screenshot(clip=b))).convert("RGB")).astype(int)
        tinted = shot[..., 0] - shot[..., 1:].max(axis=2) > 30
        assert tinted.mean() > 0.02, f"thumbnail {k}: the mask region is not in view"


STATUS_LOG = """() => { window.statusLog = []; const el = document.querySelector('#synth-status');
  const text = () => (el.querySelector('[data-testid=markdown]') || el).innerText.trim();
  new MutationObserver(() => window.statusLog.push([performance.now(), text()]))
    .observe(el, {subtree: true, childList: true, characterData: true});
  window.clicked = performance.now(); document.querySelector('#synthesize').click(); }"""


def test_the_status_counts_the_wait_from_synthesize_and_is_never_blank(page, tmp_path):
    """Issue 32 item 5: on a 6-megapixel part the status line (its text, not Gradio's timer) says how
    long it has been since Synthesize was pressed, as the browser measures it, not only the compute
    time of a variation; the last run's "1/1 done" goes at the click, and the line is never blank
    while the first variation runs."""
    import re
    from conftest import texture
    Image.fromarray(texture((2000, 3000), 4)).save(tmp_path / "large part.png")
    run_cutpaste(page, 1, tmp_path / "large part.png")
    set_variations(page, 2)
    page.evaluate(STATUS_LOG)
    page.wait_for_function("document.querySelector('#synth-status').innerText.includes('1/2 done')", timeout=120_000)
    clicked = page.evaluate("window.clicked")
    log = [((t - clicked) / 1000, text) for t, text in page.evaluate("window.statusLog")]
    gone = next(t for t, text in log if "1/1 done" not in text)
    assert gone < 0.4, f"the last run's status stayed {gone:.2f} s: {log[:3]}"
    running = [(t, text) for t, text in log if "1/2 done" not in text]
    assert all(text for _, text in running), f"blank while the first variation ran: {running}"
    shown, text = next((t, text) for t, text in log if "1/2 done" in text)
    wait = re.search(r"(\d+\.\d+) s since Synthesize", text)
    assert wait, text
    assert 0.5 * shown <= float(wait.group(1)) <= shown + 0.1, (text, f"shown {shown:.2f} s after the click")
