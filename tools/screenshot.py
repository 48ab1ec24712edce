"""python -m tools.screenshot [DATASET_ROOT]: docs/studio.png from the real studio in Debian's chromium.

A bank crack mask on a magnetic tile, three SARD results, the first selected: the page down to the
step-through, 960 pixels wide, 128 colours.
"""
from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    from playwright.sync_api import sync_playwright

    import app
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "magnetic_tile"
    tmp = Path(tempfile.mkdtemp(prefix="sard-shot-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = app.parse_args(["--port", str(port), "--export-root", str(tmp), "--data", str(data)])
    demo = app.launch(args, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.locator("#image-input input[type=file]").set_input_files(str(data / "train/good/exp1_num_10181.jpg"))
            page.wait_for_function("document.querySelector('#image-info').innerText.includes('494x361')")
            for label, option in (("Defect type", "crack"), ("Random mask generator", "Real-mask bank")):
                page.get_by_label(label).click()
                page.get_by_role("option", name=option).click()
            page.get_by_label("Mask seed").fill("5")
            page.click("#random-mask")
            time.sleep(3)
            page.click("#synthesize")
            page.wait_for_function("document.querySelector('#synth-status').innerText.includes('3/3 done')",
                                   timeout=180_000)
            page.locator("#results button.thumbnail-item").nth(0).click()
            page.wait_for_function("document.querySelector('#step-caption').innerText.includes('Reverse step 4/4')")
            page.wait_for_selector("#compare img")
            time.sleep(2)
            page.screenshot(path=str(tmp / "full.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    im = Image.open(tmp / "full.png").convert("RGB").crop((60, 0, 1340, 2400))
    im = im.resize((960, round(im.height * 960 / im.width)), Image.LANCZOS)
    im.quantize(128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(REPO / "docs" / "studio.png",
                                                                                      optimize=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
