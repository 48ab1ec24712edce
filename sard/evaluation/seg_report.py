"""The segmentation benchmark's report: seed summaries, the convergence verdict, the Markdown tables
and the AP chart, all from the report dict `sard.evaluation.segmentation.build_report` makes.

Convergence: the benchmark can rank synthesizers only if its Real only segmenter has
learnt something a constant cannot give: per backbone, Real only must beat "All defect" on mean AP
and on mean pooled IoU by more than the seed spread (the larger std of the two). Otherwise the report
says "not converged: no ranking" and ranks nothing. Both figures charge false-alarm pixels on the
good images; the image-level false alarms are a separate warning: when Real only flags
MAX_FALSE_ALARMS or more of the good test images, the verdict says so (the ranking is then one of
pixel scores, not of detectors an engineer could deploy at that threshold).
"""
from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np

from sard.metrics import mean_spread, within_spread

DAGGER = "†"
REF_ROWS = ("all_defect", "all_background", "real")   # reference rows, first in every table
MAX_FALSE_ALARMS = 0.3    # Real only flagging more good images than this is warned about
# The paper's bottle rows (mIoU, Acc in %), SegFormer (Table I) and BiSeNetV2 (Table II): pretrained
# segmenters trained to convergence on 500 pairs per type (../shared/paper/SARD-paper.md).
PAPER_BOTTLE = {
    "Table I (SegFormer)": {"CutPaste": (75.11, 79.49), "DRAEM": (79.51, 84.99), "GLASS": (70.26, 76.30),
                            "RealNet": (77.96, 83.90), "DFMGAN": (75.45, 80.39), "AnomalyDiffusion": (76.39, 83.54),
                            "DDGAN": (66.75, 70.70), "SARD": (83.52, 87.71)},
    "Table II (BiSeNetV2)": {"CutPaste": (71.77, 78.57), "DRAEM": (75.13, 79.17), "GLASS": (57.81, 60.79),
                             "RealNet": (72.16, 75.55), "DFMGAN": (64.28, 71.31), "AnomalyDiffusion": (75.28, 85.11),
                             "DDGAN": (61.25, 65.97), "SARD": (81.70, 90.79)},
}
PAPER_BACKBONE = {"segformer-b0": "Table I (SegFormer)", "bisenetv2": "Table II (BiSeNetV2)"}


def seed_summary(values: list[float]) -> dict:
    """{mean, std, values}; NaN seeds skipped without a warning (the values list shows them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m, sd = mean_spread(values)
    return {"mean": m, "std": sd, "values": values}


def _within(a: list[float], b: list[float]) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return within_spread(a, b)


def beats(a: dict, b: dict) -> bool:
    """a's mean above b's by more than the larger of their seed spreads."""
    return bool(a["mean"] - b["mean"] > max(a["std"], b["std"]))


def convergence(per: dict) -> dict:
    """Real only against All defect on mean AP and mean pooled IoU (module docstring)."""
    if "real" not in per:
        return {"converged": False, "words": "no Real only run (add 'real' to --methods)"}
    real, ref = per["real"], per["all_defect"]
    ok = [beats(real[k], ref[k]) for k in ("AP", "IoU")]
    words = "; ".join(f"{k} {100 * real[k]['mean']:.1f} ± {100 * real[k]['std']:.1f} vs {100 * ref[k]['mean']:.1f}"
                      for k in ("AP", "IoU"))
    fa = real["false_alarm_rate"]["mean"]
    alarm = (f"; warning: Real only flags {100 * fa:.0f} % of the good test images (not under "
             f"{100 * MAX_FALSE_ALARMS:.0f} %), so this ranks pixel scores, not deployable detectors"
             if fa >= MAX_FALSE_ALARMS else f"; Real only flags {100 * fa:.0f} % of the good test images")
    return {"converged": all(ok), "false_alarms_ok": bool(fa < MAX_FALSE_ALARMS),
            "words": f"Real only vs All defect: {words}{alarm}"
                     + ("; one seed, so no spread" if len(real["AP"]["values"]) == 1 else "")}


def ranking(per: dict) -> list[tuple[str, bool]]:
    """Trained methods by mean AP, best first; True for those within the seed spread of the best."""
    names = sorted((n for n in per if n not in REF_ROWS[:2] and not math.isnan(per[n]["AP"]["mean"])),
                   key=lambda n: -per[n]["AP"]["mean"])
    return [(n, i > 0 and _within(per[n]["AP"]["values"], per[names[0]]["AP"]["values"])) for i, n in enumerate(names)]


def main_arm(report: dict, arms: dict) -> dict:
    """The mixed arm's results, the one Real only trains in ({} when this run has none: a run of the
    synthetic-only arm alone)."""
    return arms.get(f"{report['settings']['main_fraction']:g}", {})


def verdict(report: dict) -> dict:
    """Per backbone: converged or not, and if so the ranking per arm and where SARD stands."""
    out = {}
    labels = {n: m["label"] for n, m in report["methods"].items()}
    for b, arms in report["results"].items():
        conv = convergence(main_arm(report, arms))
        if not conv["converged"]:
            out[b] = {"converged": False, "text": f"not converged: no ranking ({conv['words']}; converged needs "
                                                  f"both margins above the seed spread)."}
            continue
        parts = [f"converged ({conv['words']})."]
        for arm, per in arms.items():
            order = ranking(per)
            parts.append(f"Ranking by mean AP, {arm_name(arm)}: " + ", ".join(
                f"{labels[n]} {100 * per[n]['AP']['mean']:.1f}" + (f" {DAGGER}" if tie else "") for n, tie in order)
                + ".")
            if "sard" in per:
                sard, real = per["sard"]["AP"], per["real"]["AP"]
                place = [n for n, _ in order].index("sard") + 1
                relation = ("beats" if beats(per["sard"]["AP"], real) else
                            "is within the seed spread of" if _within(sard["values"], real["values"]) else
                            "loses to")
                parts.append(f"SARD ranks {place} of {len(order)} and {relation} Real only "
                             f"({100 * sard['mean']:.1f} vs {100 * real['mean']:.1f} AP).")
        out[b] = {"converged": True, "text": " ".join(parts)}
    return out


def where_sard_loses(report: dict) -> dict:
    """Per backbone, one line per arm that holds SARD: the methods above it on mean AP beyond the seed
    spread, and per type where Real only or the best method beats it beyond the spread, so a loss is
    stated, never left to the reader to find; the why is the --reading text."""
    out = {}
    labels = {n: m["label"] for n, m in report["methods"].items()}
    for b, arms in report["results"].items():
        lines = []
        for arm, per in arms.items():
            if "sard" not in per:
                continue
            sard = per["sard"]
            ahead = [(n, per[n]["AP"]) for n, _ in ranking(per) if n != "sard" and beats(per[n]["AP"], sard["AP"])]
            text = (", ".join(f"{labels[n]} {100 * a['mean']:.1f}" for n, a in ahead) + f" against SARD's "
                    f"{100 * sard['AP']['mean']:.1f}") if ahead else "none"
            types = []
            for d in report["defects"]:
                s_ap = sard["types"][d]["AP"]
                rivals = [n for n in per if n not in REF_ROWS[:2] and n != "sard"
                          and beats(per[n]["types"][d]["AP"], s_ap)]
                if not rivals:
                    continue
                best = max(rivals, key=lambda n: per[n]["types"][d]["AP"]["mean"])
                vs = [f"{labels[best]} {100 * per[best]['types'][d]['AP']['mean']:.1f}"]
                if "real" in rivals and best != "real":
                    vs.append(f"Real only {100 * per['real']['types'][d]['AP']['mean']:.1f}")
                types.append(f"{d} {100 * s_ap['mean']:.1f} (below {', '.join(vs)})")
            lines.append(f"{arm_name(arm)}: above SARD on mean AP beyond the seed spread: {text}; types where a "
                         f"method beats SARD beyond the spread: {'; '.join(types) or 'none'}.")
        out[b] = lines
    return out


def arm_name(arm: str) -> str:
    return "synthetic only (real share 0)" if float(arm) == 0 else f"real share {arm} of each batch"


# -- Markdown -------------------------------------------------------------------------------------------

def _cell(v: dict, digits: int = 1) -> str:
    if v["mean"] is None or math.isnan(v["mean"]):
        return "n/a"
    return f"{100 * v['mean']:.{digits}f} ± {100 * v['std']:.{digits}f}"


def _marked(per: dict, n: str, get, higher: bool = True) -> str:
    """A cell, bold if best among the trained methods, † if within the best's seed spread."""
    text = _cell(get(per[n]))
    if n in REF_ROWS[:2] or text == "n/a":
        return text
    trained = [m for m in per if m not in REF_ROWS[:2] and not math.isnan(get(per[m])["mean"])]
    best = (max if higher else min)(trained, key=lambda m: get(per[m])["mean"])
    if abs(get(per[n])["mean"] - get(per[best])["mean"]) <= 1e-12:
        return f"**{text}**"
    return text + (f" {DAGGER}" if _within(get(per[n])["values"], get(per[best])["values"]) else "")


def _rows(per: dict) -> list[str]:
    return [n for n in REF_ROWS if n in per] + [n for n in per if n not in REF_ROWS]


def _ap_table(report: dict, per: dict) -> list[str]:
    defects, labels = report["defects"], {n: m["label"] for n, m in report["methods"].items()}
    L = ["| Method | " + " | ".join(f"{d} AP ↑" for d in defects) +
         " | Mean AP ↑ | Mean IoU ↑ | Mean F1 ↑ | False alarms ↓ | Threshold |",
         "|---|" + "---|" * (len(defects) + 5)]
    for n in _rows(per):
        cells = [_marked(per, n, lambda r, d=d: r["types"][d]["AP"]) for d in defects]
        cells += [_marked(per, n, lambda r, k=k: r[k]) for k in ("AP", "IoU", "F1")]
        cells += [_marked(per, n, lambda r: r["false_alarm_rate"], higher=False),
                  f"{per[n]['threshold']['mean']:.3f}"]
        L.append(f"| {labels[n]} | " + " | ".join(cells) + " |")
    return L


def _iou_table(report: dict, per: dict, keys: tuple[str, str], heads: tuple[str, str]) -> list[str]:
    defects, labels = report["defects"], {n: m["label"] for n, m in report["methods"].items()}
    L = ["| Method | " + " | ".join(f"{d} {heads[0]} ↑ | {d} {heads[1]} ↑" for d in defects) + " |",
         "|---|" + "---|---|" * len(defects)]
    for n in _rows(per):
        cells = [_marked(per, n, lambda r, d=d, k=k: r["types"][d][k]) for d in defects for k in keys]
        L.append(f"| {labels[n]} | " + " | ".join(cells) + " |")
    return L


def _paper_table(report: dict) -> list[str]:
    L = ["| Method | " + " | ".join(f"{t} mIoU | {t} Acc" for t in PAPER_BOTTLE) +
         " | " + " | ".join(f"ours {b} mIoU | ours {b} Acc" for b in report["results"]) + " |",
         "|---|" + "---|---|" * (len(PAPER_BOTTLE) + len(report["results"]))]
    ours = {m["label"]: n for n, m in report["methods"].items()}
    for label in list(PAPER_BOTTLE["Table I (SegFormer)"]) + [lb for lb in ours if lb not in PAPER_BOTTLE["Table I (SegFormer)"]]:
        cells = [" | ".join(f"{v:.2f}" for v in t[label]) if label in t else "- | -" for t in PAPER_BOTTLE.values()]
        for b, arms in report["results"].items():
            per = main_arm(report, arms)
            n = ours.get(label)
            cells.append(" | ".join(_cell(per[n][k]) for k in ("IoU_paper", "Acc_paper")) if n in per else "- | -")
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    return L


def markdown(report: dict) -> str:
    L = []
    for section in (_head, _losses_and_reading, _protocol, _tables, _beside_paper, _convergence_steps, _settings,
                    _failures):
        L += section(report)
    return "\n".join(L)


def _head(report: dict) -> list[str]:
    """Title, verdict per backbone, and what the run lacks (pending runs, variants left out)."""
    L = [f"# Segmentation benchmark on {Path(report['data']).name}" + (" (--quick)" if report["quick"] else ""), ""]
    L += [f"**Verdict ({b}): {v['text']}**" for b, v in report["verdict"].items()] + [""]
    if report.get("pending"):
        labels = {n: m["label"] for n, m in report["methods"].items()}
        todo = "; ".join(f"{labels[n]} " + ", ".join(f"{arm_name(a)} ({k} run{'s' * (k > 1)})" for a, k in arms.items())
                         for n, arms in report["pending"].items())
        L += [f"**Incomplete** (written with `--from-cache`; the verdict covers only what is below). Still to run: "
              f"{todo}. The explicit command at the end trains them and resumes from the cache.", ""]
    if report.get("left_out"):
        lo = report["left_out"]
        L += [f"**Not in this run**: {', '.join(lo['methods'])}: no same-budget checkpoint in `{lo['folder']}` "
              f"(train and ship them with `{lo['train']}`; then the default run includes them).", ""]
    return L


def _losses_and_reading(report: dict) -> list[str]:
    L = []
    losses = {b: ls for b, ls in where_sard_loses(report).items() if ls}
    if losses:
        L += ["## Where SARD loses", ""] + [f"- {b}, {line}" for b, ls in losses.items() for line in ls] + [""]
    if report.get("reading"):
        L += ["## Reading", "", f"(Written by whoever ran the benchmark, from `{report['reading']['file']}`; "
              "every figure elsewhere in this report is computed.)", "", report["reading"]["text"].strip(), ""]
    return L


def _protocol(report: dict) -> list[str]:
    st, sp = report["settings"], report["split"]
    L = []
    if report["quick"]:
        L += ["**Quick run**: a CI-sized version (few types, pairs and steps, one seed); its figures check the "
              "pipeline, they are not results.", ""]
    L += ["Protocol (DESIGN.md section 2): per defect type a deterministic third of the real defects trains the "
          "synthesizers; of it a quarter is the validation split (with "
          f"{sp['val_good']} train/good images), the rest trains every segmenter and forms the mask bank. The held-out "
          "two thirds and test/good are the test set, never seen by a synthesizer, a mask bank or a segmenter "
          "(checked by path).", "",
          "Primary figures, per defect type over its test images **plus all test/good images**: pixel AP "
          "(threshold-free) and IoU / F1 of the defect class at the one threshold of best F1 on the validation split; "
          "means over types; false alarms = share of test/good images with a predicted defect region of at least "
          f"10 px. Cells in %, mean ± std over {st['seeds']} seed(s); **bold** = best trained method, {DAGGER} = within "
          "its seed spread. Reference rows: All defect and All background (constant scores: their AP is the defect "
          "prevalence) and Real only (the real pairs alone, in the same real batches every method gets).", ""]
    return L


def _tables(report: dict) -> list[str]:
    """Per backbone: the AP and IoU / F1 tables of each arm, then the paper's columns."""
    L = []
    main = f"{report['settings']['main_fraction']:g}"
    for b, arms in report["results"].items():
        for arm, per in arms.items():
            title = "synthetic-only arm (real share 0: trained on synthetic pairs alone)" if float(arm) == 0 else \
                f"real share {arm} of each batch, the rest synthetic"
            L += [f"## {b}: {title}", ""] + _ap_table(report, per) + [""]
            L += ["IoU and F1 at the validation threshold, pooled with test/good:", ""]
            L += _iou_table(report, per, ("IoU", "F1"), ("IoU", "F1")) + [""]
        if main_arm(report, arms):    # a run of the synthetic-only arm alone has no mixed arm to show them for
            L += [f"## {b}: the paper's columns (secondary)", "",
                  "IoU and Acc (= recall) of the defect class on each type's defect images alone, at the same "
                  f"threshold (real share {main}): they charge nothing for false alarms on good images.", ""]
            L += _iou_table(report, main_arm(report, arms), ("IoU_paper", "Acc_paper"), ("IoU", "Acc")) + [""]
    return L


def _beside_paper(report: dict) -> list[str]:
    if Path(report["data"]).name != "bottle":
        return []
    return ["## Beside the paper (bottle rows of Tables I-II)", "",
            "The paper's mIoU / Acc (defect images only) beside ours (mean over types, same definition, real share "
            f"{report['settings']['main_fraction']:g}). **Caveat**: the paper's segmenters were pretrained and fully "
            "trained, on 500 pairs per type on GPUs; ours are trained from scratch on a CPU budget, so compare methods "
            "within a column, not the columns.", ""] + _paper_table(report) + [""]


def _convergence_steps(report: dict) -> list[str]:
    st = report["settings"]
    L = ["## Convergence and steps", ""]
    for b, arms in report["results"].items():
        real = main_arm(report, arms).get("real")
        if real:
            t = real["loss_tenths"]
            L.append(f"- {b}: Real only training loss per tenth of the steps {', '.join(f'{x:.3f}' for x in t)} "
                     f"(last tenth {100 * (t[-1] / t[-2] - 1):+.1f} % against the one before); false alarms on "
                     f"test/good {_cell(real['false_alarm_rate'])} %.")
    L += [f"- Steps: {st['iters']}. Real only is converged when its loss is flat over the last tenths; the image-level "
          f"false alarms were meant to fall well under {100 * MAX_FALSE_ALARMS:.0f} % too, and the verdict warns where "
          "they do not. How the steps were chosen, and every setting tried against the false alarms: "
          "`reports/segmentation_protocol.md`.", ""]
    return L


def _settings(report: dict) -> list[str]:
    st, sp = report["settings"], report["split"]
    return ["## Settings", "",
            f"- Data: `{report['data']}`, types {', '.join(report['defects'])}; real training {sp['train_real']}, "
            f"validation {sp['val_defects']} defect + {sp['val_good']} good, test {sp['test_defects']} defect + "
            f"{sp['test_good']} good images; mask bank {sp['bank_masks']} masks; backgrounds from {sp['normals']} "
            f"normal training images.",
            f"- Left out ({len(sp['skipped'])}): " + ("; ".join(sp["skipped"][:8]) or "nothing")
            + (f"; and {len(sp['skipped']) - 8} more (see the JSON)" if len(sp["skipped"]) > 8 else "") + ".",
            "- Per type (train real / validation / test): "
            + ", ".join(f"{d} {v['train_real']}/{v['val']}/{v['test']}" for d, v in sp["per_type"].items()) + ".",
            f"- Input: {st['input']}. Validation: {st['validation']}.",
            f"- Pairs per type: {st['pairs_per_type']} (the paper: 500); split seed {st['split_seed']}, pair seed "
            f"{st['pair_seed']}.",
            f"- Segmenters: {', '.join(st['backbones'])}, trained from scratch; {st['iters']} steps, batch {st['batch']} "
            f"(real share {', '.join(f'{f:g}' for f in st['real_fractions'])}; Real only and the synthetic-only arm "
            f"{round(st['main_fraction'] * st['batch'])} patches a step, so each is compared patch for patch), "
            f"{st['optimizer']}, lr {st['lr']:g}, "
            f"{st['schedule']}; loss: {st['loss']}.",
            "- Methods: " + "; ".join(f"{m['label']} (`{n}`" + (f", checkpoint `{m['checkpoint']}`)" if m["checkpoint"]
                                                                 else ")")
                                      for n, m in report["methods"].items() if not m["reference"]) + ".",
            f"- Machine: {report['machine']}. Wall time {report['wall_seconds']:.0f} s "
            f"({report['runs_trained']} runs trained, {report['runs_cached']} from the cache in `{st['work']}`).",
            f"- Command: `{report['command']}`", f"- Explicit: `{report['command_explicit']}`", ""]


def _failures(report: dict) -> list[str]:
    failed = {n: v["failed"] for n, v in report["synthesis"].items() if v.get("failed")}
    if not failed:
        return []
    return ["Synthesis failures (pairs left out): " + "; ".join(f"{n}: {len(f)}" for n, f in failed.items()), ""]


# -- chart ---------------------------------------------------------------------------------------------

def chart_png(report: dict) -> bytes:
    """Per backbone and arm: AP per type (and the mean) per trained method with seed error bars; the
    references (All defect = All background = prevalence, and Real only) drawn as lines over each group."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = {n: m["label"] for n, m in report["methods"].items()}
    panels = [(b, arm, per) for b, arms in report["results"].items() for arm, per in arms.items()]
    groups = report["defects"] + ["mean"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, 1.3 * len(groups) + 3), 3.2 * len(panels)), dpi=110,
                             squeeze=False)
    for ax, (b, arm, per) in zip(axes[:, 0], panels):
        bars = [n for n in per if n not in REF_ROWS]
        get = lambda n, g: per[n]["AP"] if g == "mean" else per[n]["types"][g]["AP"]  # noqa: E731
        x = np.arange(len(groups))
        width = 0.8 / max(1, len(bars))
        for i, n in enumerate(bars):
            ax.bar(x + (i - (len(bars) - 1) / 2) * width, [100 * np.nan_to_num(get(n, g)["mean"]) for g in groups],
                   width, yerr=[100 * np.nan_to_num(get(n, g)["std"]) for g in groups], capsize=2, label=labels[n])
        for n, style in (("all_defect", ":"), ("real", "-")):
            if n in per:
                for j, g in enumerate(groups):
                    ax.hlines(100 * np.nan_to_num(get(n, g)["mean"]), j - 0.45, j + 0.45, colors="k", linestyles=style,
                              label=(labels[n] + (" / All background (prevalence)" if n == "all_defect" else ""))
                              if j == 0 else None)
        ax.set_xticks(x, groups)
        ax.set_ylabel("pixel AP (%)")
        ax.set_title(f"{Path(report['data']).name}, {b}, {arm_name(arm)}" + (" (quick)" if report["quick"] else ""),
                     fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
