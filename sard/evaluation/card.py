"""Figures and pictures for a model card: exact background, speed, a grid per defect type, the loss curve."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from sard.data import Split, list_dataset, normal_images, split_defects
from sard.imaging import overlay
from sard.evaluation.grain import grain_ratio
from sard.evaluation.sheets import columns, fit_h, rgb, zoom_on_mask
from sard.io import read_image, read_mask
from sard.masks import MaskBank, grow_mask, random_mask
from sard.results import x0_change_per_step
from sard.store.model_folder import ModelConfig

if TYPE_CHECKING:   # the card measures a pipeline it is given; sard.synthesizers builds them
    from sard.pipeline import SardPipeline


def _gray(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 2 else a.mean(axis=2).astype(a.dtype)


def held_out_inputs(pipe: SardPipeline, data: Path) -> tuple[Split, MaskBank, list[Path]]:
    """What the card measures a checkpoint on: its split of `data`, the real-mask bank of the
    synthesizer third it trained on, and the held-out normal images."""
    samples = list_dataset(data)
    split = split_defects(samples, pipe.config.split_seed)
    return split, MaskBank.from_samples(split.synth), normal_images(samples, "test")


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
        image = read_image(normals[k % len(normals)])          # gray or colour, as the checkpoint meets it
        h, w = image.shape[:2]
        crop = np.zeros((256, 256, *image.shape[2:]), image.dtype)
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


def defect_grid(pipe: SardPipeline, normal: np.ndarray, mask: np.ndarray, defect: str, seeds=(0, 1, 2),
                height: int = 220, zoom_size: int = 96) -> Image.Image:
    """Row 1: the normal image, its bank mask, three seeds (whole images). Row 2: the same, zoomed on the mask."""
    results = [np.asarray(pipe(normal, mask, seed=s, defect=defect).image) for s in seeds]
    tiles = [rgb(normal), overlay(rgb(normal), mask)] + [rgb(r) for r in results]
    zooms = [zoom_on_mask(t, mask, zoom_size) for t in tiles]
    rows = [[fit_h(t, height) for t in tiles], [fit_h(t, height) for t in zooms]]
    labels = ["normal (held out)", "bank mask", *(f"seed {s}" for s in seeds)]
    return columns(rows, labels, height, 8, f"{defect}: whole image (top), zoom on the mask (bottom)")


def held_out_defects(held_out: list, defect: str | None, n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The first n held-out real defects of the type whose mask is usable: (image, bool mask)."""
    found = 0
    for s in [s for s in held_out if defect is None or s.defect == defect]:
        if found == n:
            return
        image = read_image(s.image)
        m = read_mask(s.mask, size=image.shape[:2]) > 0
        if m.sum() >= 10:
            found += 1
            yield image, m


def repaint_grid(pipe: SardPipeline, held_out: list, defect: str | None, n: int = 4, seeds=(0, 1),
                 height: int = 160, zoom_size: int = 96, refine: int | None = None) -> Image.Image | None:
    """One row per held-out real defect of the type: the real defect, its mask, and the synthesis inside
    that mask for each seed, zoomed on the mask: what (b) and (c) measure, to be looked at (a seed that
    paints a faint defect, a texture unlike the part's). None when the type has no usable held-out defect."""
    rows = []
    for image, m in held_out_defects(held_out, defect, n):
        tiles = [rgb(image), overlay(rgb(image), m)]
        tiles += [rgb(np.asarray(pipe(image, m, seed=k, defect=defect, refine=refine).image)) for k in seeds]
        rows.append([fit_h(zoom_on_mask(t, m, zoom_size), height) for t in tiles])
    if not rows:
        return None
    labels = ["real (held out)", "its mask", *(f"seed {k}" for k in seeds)]
    return columns(rows, labels, height, 6, f"{defect or 'defect'}: real defects repainted inside their own masks")


def step_through_grid(pipe: SardPipeline, held_out: list, defect: str | None, n: int = 2, seed: int = 0,
                      height: int = 140, zoom_size: int = 96) -> Image.Image | None:
    """One row per held-out real defect of the type: the real defect, then the composite the studio's
    step-through shows after each reverse step (figure e, to be looked at: a defect that forms and
    settles, or one redrawn at every step). None when the type has no usable held-out defect."""
    rows = []
    for image, m in held_out_defects(held_out, defect, n):
        res = pipe(image, m, seed=seed, defect=defect)
        top, left, bottom, right = res.roi
        frames = []
        for fr in res.frames:   # each step's composite (at the region's size) pasted back where the network ran
            whole = rgb(image).copy()
            whole[top:bottom, left:right] = rgb(fr.composite)
            frames.append(whole)
        rows.append([fit_h(zoom_on_mask(t, m, zoom_size), height) for t in (rgb(image), *frames)])
    if not rows:
        return None
    width = max(map(len, rows))   # a mask painted at a fit crop's scale may get native refine steps too
    rows = [r + [Image.new("RGB", (height, height), "white")] * (width - len(r)) for r in rows]
    T = pipe.schedule.num_steps
    labels = ["real (held out)", *(f"after step {k + 1}" if k < T else f"native refine {k + 1 - T}" for k in range(width - 1))]
    return columns(rows, labels, height, 6, f"{defect or 'defect'}: the step-through, seed {seed}, zoomed on the mask")


def _smooth(v: np.ndarray, n: int) -> np.ndarray:
    """Moving average that skips missing values (a step i not drawn in a log interval)."""
    ok = np.isfinite(v)
    k = np.ones(max(1, min(n, len(v))))      # a short run's log: the window never outgrows it
    num, den = np.convolve(np.where(ok, v, 0), k, "same"), np.convolve(ok.astype(float), k, "same")
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def loss_curve(log_path: Path, out: Path, smooth: int = 25) -> Path:
    """Adversarial terms, L_MSE, and D's real-minus-fake logit gap per reverse step i (is the game alive?)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(x) for x in Path(log_path).read_text().splitlines() if x.strip()]
    steps = np.array([r["step"] for r in rows])
    col = lambda key: np.array([r.get(key, np.nan) for r in rows], float)  # noqa: E731
    gap_keys = sorted({k for r in rows for k in r if k.startswith("d_gap_")})
    fig, axes = plt.subplots(1, 3 if gap_keys else 2, figsize=(15 if gap_keys else 10, 3.4))
    for key, label in (("d_real", "L_D real"), ("d_fake", "L_D fake"), ("g_adv_img", "L_adv-img"),
                       ("g_adv_mask", "L_adv-mask")):
        if np.isfinite(col(key)).any():
            axes[0].plot(steps, _smooth(col(key), smooth), label=label)
    axes[1].plot(steps, _smooth(col("g_mse"), smooth), color="tab:purple")
    axes[1].set_yscale("log")
    axes[0].set_title("adversarial terms (moving average)")
    axes[1].set_title("L_MSE (moving average)")
    if gap_keys:
        for key in gap_keys:   # d_gap_<head>_<i>
            head, i = key.split("_")[2], key.split("_")[3]
            axes[2].plot(steps, _smooth(col(key), smooth), ls="-" if head == "img" else "--",
                         color=f"C{int(i)}", label=f"i={i} {'D_img' if head == 'img' else 'D_fg'}")
        axes[2].axhline(0, color="black", lw=0.8)
        axes[2].set_title("D real - fake logit gap per reverse step i")
        axes[2].legend(fontsize=7, ncol=2)
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


# -- synthesis quality: is the game alive in what G paints? ----------------------------------------------

def _inside(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """float gray levels of the mask's pixels (colour averaged over channels)."""
    return _gray(a.astype(np.float64))[m]


def _channel_means(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Mean level of each channel (one for gray) over the mask's pixels."""
    px = a[m].astype(np.float64)
    return px.reshape(len(px), -1).mean(0)


RING_PX = 8   # the local background of a defect: pixels within this distance outside its mask


def _local_level(g: np.ndarray, m: np.ndarray) -> float:
    """Median gray level of the ring of background around the mask (the part's own brightness there)."""
    ring = grow_mask(m, RING_PX) & ~m
    return float(np.median(g[ring])) if ring.any() else float(np.median(g[~m])) if (~m).any() else 0.0


def _aligned_difference(a: np.ndarray, ma: np.ndarray, b: np.ndarray, mb: np.ndarray,
                        relative: bool = False) -> float | None:
    """Mean |a - b| over the defect pixels both share once b's defect is moved onto a's (centroids
    aligned): how different two real defects of one type are at the same place in the defect.
    relative: each taken against its own local background level first (_local_level), so that two
    parts of different brightness do not count as different defects; two seeds share theirs."""
    ya, xa = np.argwhere(ma).mean(0)
    yb, xb = np.argwhere(mb).mean(0)
    dy, dx = int(round(ya - yb)), int(round(xa - xb))
    ga, gb = _gray(a.astype(np.float64)), _gray(b.astype(np.float64))
    if relative:
        ga, gb = ga - _local_level(ga, ma), gb - _local_level(gb, mb)
    H, W = ga.shape
    vals = []
    for y, x in np.argwhere(mb):
        ty, tx = y + dy, x + dx
        if 0 <= ty < H and 0 <= tx < W and ma[ty, tx]:
            vals.append(abs(ga[ty, tx] - gb[y, x]))
    return float(np.mean(vals)) if len(vals) >= 10 else None


def synthesis_quality(pipe: SardPipeline, held_out: list, per_type: int = 20, seeds=(0, 1), refine: int | None = None) -> dict:
    """Per defect type, on held-out real defect images with their own masks (the real defect is
    repainted, so synthesis and reality share mask and surroundings), in gray levels 0-255:
    - seed_diversity: mean |seed a - seed b| inside the mask;
    - real_spread: mean |defect j - defect k| of two real defects of the type, centroids aligned,
      over the pixels both masks share (the same measure between two real draws);
    - real_spread_relative: the same with each defect against its own local background level, as
      two seeds are (they share the part); diversity_ratio_relative: seed_diversity / that;
    - diversity_ratio: seed_diversity / real_spread (figure b: at least 0.5 asked);
    - std_synth / std_real: texture, the std of the pixels inside the mask;
    - colour_synth / colour_real: mean level of each channel inside the mask (a bias of the mean colour);
    - x0_change: mean |x0_hat(step i) - x0_hat(step i - 1)| inside the mask per reverse step
      transition (the step-through forms the defect when these are not all ~0)."""
    out = {}
    for defect in pipe.defects or [None]:
        samples = [s for s in held_out if defect is None or s.defect == defect][:per_type]
        div, std_s, std_r, spread, spread_rel, change, col_s, col_r = [], [], [], [], [], [], [], []
        grain = {"synth": [], "real": []}
        loaded = []
        for s in tqdm(samples, desc=f"quality {defect}", leave=False):
            image = read_image(s.image)
            m = read_mask(s.mask, size=image.shape[:2])
            if m.sum() < 10:
                continue
            loaded.append((image, m))
            res = [pipe(image, m, seed=k, defect=defect, refine=refine) for k in seeds]
            a, b = (np.asarray(r.image) for r in res)
            div.append(float(np.abs(_inside(a, m) - _inside(b, m)).mean()))
            std_s.append(float(_inside(a, m).std()))
            std_r.append(float(_inside(image, m).std()))
            col_s.append(_channel_means(a, m))
            col_r.append(_channel_means(image, m))
            for k, v in (("synth", grain_ratio(a, m)), ("real", grain_ratio(image, m))):
                if v is not None:
                    grain[k].append(v)
            top, left, bottom, right = res[0].roi
            mr = m[top:bottom, left:right]
            change.append(x0_change_per_step(res[0].frames, mr))
        for j, (image, m) in enumerate(loaded):
            k = (j + 1) % len(loaded)
            if k != j:
                d = _aligned_difference(image, m, *loaded[k])
                if d is not None:
                    spread.append(d)
                    spread_rel.append(_aligned_difference(image, m, *loaded[k], relative=True))
        if not div:
            continue
        out[defect or "defect"] = {
            "syntheses": len(div) * len(seeds), "seed_diversity": float(np.mean(div)),
            "real_spread": float(np.mean(spread)) if spread else None,
            "diversity_ratio": float(np.mean(div) / np.mean(spread)) if spread else None,   # figure (b)
            "real_spread_relative": float(np.mean(spread_rel)) if spread_rel else None,
            "diversity_ratio_relative": float(np.mean(div) / np.mean(spread_rel)) if spread_rel else None,
            "std_synth": float(np.mean(std_s)), "std_real": float(np.mean(std_r)),
            "std_ratio": float(np.mean(std_s) / max(np.mean(std_r), 1e-9)),
            # a mask refined at native scale has one transition more (SardPipeline.stream's refine)
            "x0_change_per_step": [float(np.mean([c[i] for c in change if len(c) > i]))
                                   for i in range(max(map(len, change)))],
            "colour_synth": [float(v) for v in np.mean(col_s, axis=0)],
            "colour_real": [float(v) for v in np.mean(col_r, axis=0)],
            **{f"grain_{k}": float(np.median(v)) if v else None for k, v in grain.items()},   # figure (g)
        }
    return out


def game_pulse(log_path: Path) -> dict:
    """From a run's log.jsonl: D's real-minus-fake logit gap per head and reverse step i, as the mean
    over each third of training and the share of log lines where it was above 0 (figure a)."""
    rows = [json.loads(x) for x in Path(log_path).read_text().splitlines() if x.strip()]
    keys = sorted({k for r in rows for k in r if k.startswith("d_gap_")})
    out = {}
    for key in keys:
        v = np.array([r.get(key, np.nan) for r in rows], float)
        thirds = np.array_split(v, 3)
        out[key[len("d_gap_"):]] = {"mean_by_third": [float(np.nanmean(t)) if np.isfinite(t).any() else None
                                                      for t in thirds],
                                    "share_positive": float(np.mean(v[np.isfinite(v)] > 0)) if np.isfinite(v).any()
                                    else None}
    return out


# -- the card as text: the same tables for every checkpoint ------------------------------------------

def _num(v, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def _levels(v: list[float] | None) -> str:
    return " ".join(f"{x:.0f}" for x in v) if v else "-"


def _judged_rows(figures: dict, c2st: dict | None) -> list[str]:
    """The table rows of the judges: realism (C2ST beside its Nothing painted floor) and the types."""
    lines: list[str] = []
    if c2st:
        floor = c2st.get("floor")
        below = 100 * (floor["mean"] - c2st["mean"]) if floor else 0.0
        lines.append(f"| (d) realism, C2ST accuracy (50 % = indistinguishable) | **{100 * c2st['mean']:.1f} % "
                     f"± {100 * c2st['std']:.1f}**" + (f"; *Nothing painted* scores {100 * floor['mean']:.1f} %: "
                                                       f"{abs(below):.1f} points {'below' if below >= 0 else 'above'} "
                                                       f"that floor" if floor else "") + " |")
    ts = figures.get("types")
    if ts:
        lines.append(f"| (f) types told apart: a CNN trained on real crops of the {len(ts['types'])} types, scored on "
                     f"held-out real crops and on every type painted in each held-out mask ({ts['masks']}) | real "
                     f"{100 * ts['real_accuracy']:.0f} %, synthesized **{100 * ts['synthetic_accuracy']:.0f} %** "
                     f"(chance {100 * ts['chance']:.0f} %); swapping the type changes the fill by "
                     f"{ts['type_swap_change']:.1f} grey levels, a new seed by {ts['seed_change']:.1f} |")
    return lines


def card_markdown(figures: dict, config: ModelConfig, c2st: dict | None = None, grids: str = "") -> str:
    """The model card's figure sections from `figures.json` (this module's functions), the checkpoint's
    config.json and, when given, its C2ST entry ({"mean", "std"} of `sard.evaluate realism`, with
    "floor": the report's Nothing painted entry, or None for an older report).
    `grids`: the folder of the grid PNGs relative to where the text will live."""
    types = config.defects or ["defect"]
    minutes = config.train_seconds
    lines = ["| | |", "|---|---|",
             f"| defect types | {', '.join(types)} |",
             f"| colour | {'RGB (synthesizes colour)' if config.generator.image_channels == 3 else 'gray (on a colour image it changes luminance and keeps the image' + chr(39) + 's chroma)'} |",
             f"| training | {config.step or '?'} steps on {config.data or '?'}, {config.res} px crops"
             + (f", {minutes / 60:.0f} min of training" if minutes else "")
             + (f", fine-tuned from `{Path(config.init).name}` (`--init`)" if config.init else ", from scratch")
             + f"; RCD {'on' if config.rcd else 'off'}, DMG {'on' if config.dmg else 'off'} |"]
    bg, sp = figures.get("background"), figures.get("speed")
    if bg:
        lines.append(f"| background: max \\|output - input\\| outside the mask, {bg['syntheses']} syntheses on held-out "
                     f"normals with bank masks | **{bg['max_abs_diff_outside_mask']}**"
                     f"{' (bit-exact)' if bg['max_abs_diff_outside_mask'] == 0 else ''}; "
                     f"{100 * bg['mean_share_changed_inside_mask']:.1f} % of mask pixels changed |")
    if sp:
        lines.append(f"| seconds per 256 x 256 pair, {figures.get('machine', '')} | "
                     f"{sp['seconds_per_pair_256_roi']:.2f} s with ROI (default), {sp['seconds_per_pair_256_full']:.2f} s "
                     f"on the whole image |")
    lines += _judged_rows(figures, c2st)
    gap = figures.get("d_gap") or {}
    if gap:
        lines += ["", "**(a) Is the game alive?** The discriminator's real-minus-fake logit gap per reverse step i "
                  "(`log.jsonl` fields `d_gap_*`): mean over each third of training, and the share of log lines above 0.",
                  "", "| head | step i | mean gap, 1st / 2nd / 3rd third | lines > 0 |", "|---|---|---|---|"]
        for key, v in sorted(gap.items()):
            head, i = key.rsplit("_", 1)
            lines.append(f"| D_{head} | {i} | {' / '.join(_num(x, '+.3f') for x in v['mean_by_third'])} | "
                         f"{_num(None if v['share_positive'] is None else 100 * v['share_positive'], '.0f')} % |")
    q = figures.get("quality") or {}
    if q:
        lines += ["", "**Per type**, held-out real defects repainted inside their own masks (two seeds each), grey "
                  "levels 0-255 (luminance for colour): (b) seed diversity = mean \\|seed 0 - seed 1\\| inside the mask, "
                  "real spread = the same between two real defects of the type (centroids aligned), target ratio >= 0.5; "
                  "relative: each real defect against its own local background level (the median of an "
                  f"{RING_PX} px ring around its mask), as two seeds share theirs; "
                  "(c) std inside the mask synthesis / real, target within 15 %; (e) mean \\|change of the predicted x0\\| "
                  "per reverse step; (g) native grain: the std of the finest detail (what a 1 px blur removes) inside "
                  "the mask over that of an 8 px ring around it, median, synthesis / real (a fill smoother than the "
                  "part is a cue a segmenter learns instead of the defect); mean level inside the mask synthesis / "
                  "real (R G B for colour).", "",
                  "| type | (b) seed diversity | real spread | ratio | real spread, relative | ratio | "
                  "(c) std synth / real | (e) x0 change per step | (g) native grain synth / real | mean level synth / real |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for d, v in q.items():
            lines.append(f"| {d} | {v['seed_diversity']:.1f} | {_num(v.get('real_spread'))} | "
                         f"{_num(v.get('diversity_ratio'), '.2f')} | {_num(v.get('real_spread_relative'))} | "
                         f"{_num(v.get('diversity_ratio_relative'), '.2f')} | "
                         f"{v['std_synth']:.1f} / {v['std_real']:.1f} = {v['std_ratio']:.2f} | "
                         f"{' / '.join(f'{x:.1f}' for x in v['x0_change_per_step'])} | "
                         f"{_num(v.get('grain_synth'), '.2f')} / {_num(v.get('grain_real'), '.2f')} | "
                         f"{_levels(v.get('colour_synth'))} / {_levels(v.get('colour_real'))} |")
    lines += _picture_lines(figures, types, grids)
    if figures.get("command"):
        lines += ["", f"Measured by `{figures['command']}`."]
    return "\n".join(lines) + "\n"


def _picture_lines(figures: dict, types: list[str], grids: str) -> list[str]:
    """The card's pictures: a grid per type, then the repaint and step-through grids where made."""
    lines = ["", "Held-out normal image, a real mask of the type from the bank, three seeds (top: whole image; "
             "bottom: zoom on the mask):", ""]
    lines += [f"![{d}]({grids}grid_{d}.png)" for d in types]
    if figures.get("repaint_grids"):
        lines += ["", "Held-out real defects repainted inside their own masks (the pairs (b) and (c) measure): real, "
                  "mask, seeds 0 and 1, zoomed on the mask:", ""]
        lines += [f"![{d} repainted]({grids}repaint_{d}.png)" for d in figures["repaint_grids"]]
    if figures.get("step_grids"):
        lines += ["", "The step-through (figure e): a held-out real defect, then the composite after each reverse "
                  "step inside its own mask:", ""]
        lines += [f"![{d} step-through]({grids}steps_{d}.png)" for d in figures["step_grids"]]
    return lines
