"""python -m tools.timing: the studio's start time and Synthesize-to-last-frame time at 256 and 1024 px.

Starts `python app.py` as a user would, waits for its page, drives /synthesize with gradio_client
(one variation, a 2 % ellipse mask, ROI on), prints the figures and stops the server it started.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    from gradio_client import Client, handle_file

    from sard.bench_inputs import ellipse_mask, tile_image
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="sard-timing-"))
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--export-root", str(tmp / "exports")],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - t0 > 300:
                    raise RuntimeError("the studio did not start")
                time.sleep(0.1)
        figures = {"start_s": time.perf_counter() - t0}
        client = Client(f"http://127.0.0.1:{port}/", download_files=False, verbose=False)
        data = REPO.parent / "shared" / "data" / "magnetic_tile"
        for size in (256, 1024):
            img, mask = tile_image(size, data if data.is_dir() else None), ellipse_mask(size, int(0.02 * size * size))
            Image.fromarray(img).save(tmp / f"{size}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / f"{size}_mask.png")
            times = []
            for seed in range(3):
                t = time.perf_counter()
                client.submit(handle_file(str(tmp / f"{size}.png")), handle_file(str(tmp / f"{size}_mask.png")),
                              "SARD", "crack", seed, 1, True, api_name="/synthesize").result()
                times.append(time.perf_counter() - t)
            figures[f"synthesize_to_last_frame_{size}_s"] = float(np.median(times))
        print(json.dumps(figures, indent=2))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
