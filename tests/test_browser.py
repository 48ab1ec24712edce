"""The studio in a real browser (Debian's chromium, driven by Playwright, headless): upload, paint,
synthesize, step through, keep two, export, download the zip; then check the files on disk."""
import json
import os
import shutil
import socket
import time
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


def test_paint_synthesize_step_keep_export_download(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    import app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "exports"
    demo = app.launch(app.parse_args(["--port", str(port), "--export-root", str(root), "--data", str(MAGNETIC_TILE)]),
                      block=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image = sorted((MAGNETIC_TILE / "test" / "good").iterdir())[5]
    source = np.array(Image.open(image))
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1600}, accept_downloads=True)
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.locator("#image-input input[type=file]").set_input_files(str(image))
            size = f"{source.shape[1]}x{source.shape[0]}"
            page.wait_for_function(f"document.querySelector('#image-info').innerText.includes('{size}')")
            time.sleep(1)
            box = page.locator("#mask-editor canvas").first.bounding_box()
            x0, y0 = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.35
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + 50, y0 + 70, steps=20)
            page.mouse.up()
            page.screenshot(path=str(ARTIFACTS / "1_painted.png"), full_page=True)

            page.click("#synthesize")
            page.wait_for_function("document.querySelectorAll('#results img').length >= 3", timeout=180_000)
            page.wait_for_function("document.querySelector('#synth-status').innerText.includes('3/3 done')")
            thumbs = page.locator("#results button.thumbnail-item")
            thumbs.nth(1).click()
            page.wait_for_function("document.querySelector('#step-caption').innerText.includes('Reverse step 4/4')")
            page.locator("#step-slider input[type=range]").focus()
            page.keyboard.press("ArrowLeft")
            page.wait_for_function("document.querySelector('#step-caption').innerText.includes('Reverse step 3/4')")
            page.wait_for_selector("#heat-map img")
            page.screenshot(path=str(ARTIFACTS / "2_step_through.png"), full_page=True)

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
            with page.expect_download() as dl:
                page.click("#download")
            zip_path = tmp_path / "download.zip"
            dl.value.save_as(zip_path)
            page.screenshot(path=str(ARTIFACTS / "3_exported.png"), full_page=True)
            browser.close()
    finally:
        demo.close()

    base = root / "browser_set"
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
