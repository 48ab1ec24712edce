"""Figures and pictures for a model card: exact background, speed, a grid per defect type, the loss curve."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from sard.io import atomic_save_png, read_image
from sard.masks import random_mask
from sard.pipeline import SardPipeline, mask_bbox
from sard.train_samples import overlay


def _gray(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 2 else a.mean(axis=2).astype(a.dtype)


def background_check(pipe: SardPipeline, normals: list[Path], bank, n: int = 100, seed: int = 0) -> dict:
    """max |output - input| outside the mask over n syntheses on held-out normals with bank masks."""
    worst, changed_inside, seconds = 0, [], []
    defects = pipe.defects or [None]
    for k in tqdm(range(n), desc="background check", leave=False):
        image = read_image(normals[k % len(normals)])
        defect = defects[k % len(defects)]
        m, _ = random_mask("bank", image.shape[:2], seed + k, None, bank=bank, defect=defect)
        m = m > 0
        t = time.perf_counter()
        out = np.asarray(pipe(image, m, seed=seed + k, defect=defect).image)
        seconds.append(time.perf_counter() - t)
        worst = max(worst, int(np.abs(out.astype(np.int64) - image.astype(np.int64))[~m].max(initial=0)))
        changed_inside.append(float((out[m] != image[m]).mean()))
    return {"syntheses": n, "max_abs_diff_outside_mask": worst,
            "mean_share_changed_inside_mask": float(np.mean(changed_inside)),
            "seconds_per_synthesis_roi": float(np.mean(seconds))}


def speed_256(pipe: SardPipeline, normals: list[Path], bank, n: int = 10, seed: int = 0) -> dict:
    """Seconds per synthesized 256x256 pair: the network on the whole 256 image and on the mask's ROI."""
    out = {}
    crops = []
    for k in range(n):
        image = _gray(read_image(normals[k % len(normals)]))
        h, w = image.shape
        crop = np.zeros((256, 256), image.dtype)
        crop[:min(h, 256), :min(w, 256)] = image[:256, :256]
        m, _ = random_mask("bank", (256, 256), seed + k, None, bank=bank,
                           defect=(pipe.defects or [None])[k % max(1, len(pipe.defects))])
        crops.append((crop, m > 0, (pipe.defects or [None])[k % max(1, len(pipe.defects))]))
    pipe(crops[0][0], crops[0][1], seed=0, defect=crops[0][2])  # warm-up
    for roi in (False, True):
        t = time.perf_counter()
        for k, (crop, m, d) in enumerate(crops):
            pipe(crop, m, seed=k, defect=d, roi=roi)
        out["seconds_per_pair_256_roi" if roi else "seconds_per_pair_256_full"] = (time.perf_counter() - t) / n
    return out


def _fit_h(a: np.ndarray, h: int) -> Image.Image:
    im = Image.fromarray(a)
    return im.resize((max(1, round(im.width * h / im.height)), h), Image.BILINEAR)


def defect_grid(pipe: SardPipeline, normal: np.ndarray, mask: np.ndarray, defect: str, seeds=(0, 1, 2),
                height: int = 220, zoom_size: int = 96) -> Image.Image:
    """Row 1: the normal tile, its bank mask, three seeds (whole tiles). Row 2: the same, zoomed on the mask."""
    results = [np.asarray(pipe(normal, mask, seed=s, defect=defect).image) for s in seeds]
    rgb = lambda a: np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a  # noqa: E731
    tiles = [rgb(normal), overlay(rgb(normal), mask)] + [rgb(r) for r in results]
    top, left, bottom, right = mask_bbox(mask)
    cy, cx = (top + bottom) // 2, (left + right) // 2
    z = max(zoom_size, bottom - top + 16, right - left + 16)
    t0 = int(np.clip(cy - z // 2, 0, max(0, mask.shape[0] - z)))
    l0 = int(np.clip(cx - z // 2, 0, max(0, mask.shape[1] - z)))
    zooms = [t[t0:t0 + z, l0:l0 + z] for t in tiles]
    row1 = [_fit_h(t, height) for t in tiles]
    row2 = [_fit_h(t, height) for t in zooms]
    labels = ["normal (held out)", "bank mask", *(f"seed {s}" for s in seeds)]
    col_w = [max(a.width, b.width) for a, b in zip(row1, row2)]
    W, H = sum(col_w) + 6 * len(col_w), 2 * height + 40
    canvas = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for a, b, w, lab in zip(row1, row2, col_w, labels):
        draw.text((x + 3, 2), lab, fill="black")
        canvas.paste(a, (x, 16))
        canvas.paste(b, (x, 16 + height + 8))
        x += w + 6
    draw.text((3, H - 14), f"{defect}: whole tile (top), zoom on the mask (bottom)", fill="black")
    return canvas


def loss_curve(log_path: Path, out: Path, smooth: int = 25) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(x) for x in Path(log_path).read_text().splitlines() if x.strip()]
    steps = np.array([r["step"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for key, label in (("d_real", "L_D real"), ("d_fake", "L_D fake"), ("g_adv_img", "L_adv-img"),
                       ("g_adv_mask", "L_adv-mask")):
        v = np.array([r.get(key, np.nan) for r in rows], float)
        if np.isfinite(v).any():
            k = np.ones(smooth) / smooth
            axes[0].plot(steps[smooth - 1:], np.convolve(v, k, mode="valid"), label=label)
    v = np.array([r["g_mse"] for r in rows], float)
    k = np.ones(smooth) / smooth
    axes[1].plot(steps[smooth - 1:], np.convolve(v, k, mode="valid"), color="tab:purple")
    axes[1].set_yscale("log")
    axes[0].set_title("adversarial terms (moving average)")
    axes[1].set_title("L_MSE (moving average)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out)
    return out


def save_grid(img: Image.Image, path: Path) -> Path:
    return atomic_save_png(path, np.asarray(img))
