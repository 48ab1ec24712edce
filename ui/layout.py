"""The studio's layout and its wiring to the callbacks in ui.actions.

Stable API names (gradio_client): /random_mask, /synthesize, /keep, /keep_all, /export. Everything
else is private UI plumbing. Images and masks travel as PNG (Gradio's default WEBP is lossy).
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from sard.io import read_image
from sard.synthesizers import LABELS, SARD
from ui.actions import Studio, colour_note
from ui.mask_editing import BRUSH_RGB, MASK_LABELS
from ui.messages import user_error, user_errors
from ui.session import Session
from ui.synthesis import METHOD_LABELS, NO_RESULTS

CSS = """
#sard-title h1 {margin-bottom: 0}
#curated-count {font-size: 1.1em}
"""

HELP = """**How it works.** Load a normal part image (or pick one below), paint the defect region with the
brush, press **Random mask** or upload a mask PNG; strokes add to the mask, the eraser removes from
it, **Dilate** / **Erode** grow or shrink it and **Feather** lets the defect fade into its
surroundings. Choose the method and defect type and press **Synthesize**. Compare a result with the
input (drag the slider), with the real defects beside it, and step through its reverse process;
**Keep** the good ones, then **Export** the curated set in the MVTec layout (images, 0/255 masks,
manifest) and download it as a zip."""

BRUSH_SIZE = 6


def named_refusals(component):
    """A file an image input cannot read is refused naming the upload and what is expected, where
    Gradio says "Could not preprocess ..." with the server's temp path. (Wrapped on the instance: a
    subclass would make Gradio write a .pyi file beside this module.)"""
    preprocess = component.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - whatever Pillow raised, the library says what is wrong
            name = payload.orig_name or Path(payload.path).name
            with user_errors(payload.path, name):
                read_image(payload.path)
            raise user_error(f"{name}: could not be read as an image ({e})", payload.path, name) from None
    component.preprocess = checked
    return component


def title(studio: Studio) -> str:
    bank = f" Real-mask bank: {studio.bank.origin or f'{len(studio.bank)} masks'}." if studio.bank else \
        " No real-mask bank (start with --data)."
    return (f"# SARD Studio\nDefect synthesis with Region-Constrained Diffusion. Model: `{studio.checkpoint.name}` "
            f"({', '.join(studio.defects)}); {colour_note(studio.pipe.channels)}.{bank}")


def build_studio(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="SARD Studio", analytics_enabled=False) as demo:
        session = gr.State(Session())
        gr.Markdown(title(studio), elem_id="sard-title")
        with gr.Accordion("Help", open=False):
            gr.Markdown(HELP)
        with gr.Row():
            with gr.Column(scale=1):
                image_in = named_refusals(gr.Image(label="Normal part image", type="filepath", image_mode=None,
                                                    format="png", sources=["upload", "clipboard"], height=260,
                                                    elem_id="image-input"))
                info = gr.Markdown("Load a normal part image to begin.", elem_id="image-info")
                if studio.normals:
                    picks = gr.Gallery(value=studio.gallery_items(), label="Normal images from the data set",
                                       columns=6, height=180, format="png", allow_preview=False,
                                       elem_id="normals-gallery")
                    picks.select(studio.pick_normal, None, image_in, api_visibility="private")
            with gr.Column(scale=2):
                # canvas_size (1, 1): the editor keeps a stray layer of its initial canvas size, which
                # would make a layer set from the server land off the image (Gradio 6.31).
                editor = gr.ImageEditor(label="Mask: paint the defect region (strokes add, the eraser removes)",
                                        type="numpy", image_mode="RGBA", format="png", sources=[], transforms=[],
                                        layers=False, fixed_canvas=False, canvas_size=(1, 1),
                                        brush=gr.Brush(colors=[BRUSH_RGB], default_color=BRUSH_RGB,
                                                       color_mode="fixed", default_size=BRUSH_SIZE),
                                        eraser=gr.Eraser(default_size=BRUSH_SIZE), height=420, elem_id="mask-editor")
                with gr.Row():
                    brush_size = gr.Slider(1, 80, value=BRUSH_SIZE, step=1, scale=3, elem_id="brush-size",
                                           label="Brush and eraser size (px on screen)")
                    clear_btn = gr.Button("Clear mask", elem_id="clear-mask", scale=1)
            with gr.Column(scale=1):
                mask_overlay = gr.Image(label="Mask overlay", format="png", interactive=False, height=260,
                                        elem_id="mask-overlay")
                mask_full = named_refusals(gr.Image(label="Mask (full resolution)", type="numpy", image_mode="L",
                                                     format="png", visible=False, elem_id="mask-full"))
                with gr.Group():
                    kind = gr.Dropdown(list(MASK_LABELS), value="Perlin", label="Random mask generator")
                    with gr.Row():
                        area_min = gr.Number(value=0.5, label="Area min (%)", minimum=0.01, maximum=100)
                        area_max = gr.Number(value=3.0, label="Area max (%)", minimum=0.01, maximum=100)
                        mask_seed = gr.Number(value=0, precision=0, label="Mask seed")
                    random_btn = gr.Button("Random mask", elem_id="random-mask")
                with gr.Group():
                    with gr.Row():
                        grow_px = gr.Number(value=3, precision=0, minimum=1, maximum=256, label="px", min_width=60)
                        dilate_btn = gr.Button("Dilate", elem_id="dilate", min_width=60)
                        erode_btn = gr.Button("Erode", elem_id="erode", min_width=60)
                    feather_px = gr.Slider(0, 32, value=0, step=1, label="Feather (px inside the mask's edge)",
                                           elem_id="feather")
                    upload_btn = gr.UploadButton("Upload mask PNG", file_types=["image"], type="filepath",
                                                 elem_id="upload-mask")
        with gr.Row():
            method = gr.Radio(list(METHOD_LABELS), value=LABELS[SARD], label="Method")
            defect = gr.Dropdown(studio.defects, value=studio.defects[0], label="Defect type")
            with gr.Column(min_width=160):
                seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                seed_btn = gr.Button("Random seed", size="sm", elem_id="random-seed")
            variations = gr.Slider(1, 8, value=3, step=1, label="Variations")
            rcd = gr.Checkbox(value=True, label="RCD (keep background exact)")
            with gr.Column(min_width=160):
                synth_btn = gr.Button("Synthesize", variant="primary", elem_id="synthesize")
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
        status = gr.Markdown("", elem_id="synth-status")
        with gr.Row():
            with gr.Column(scale=1):
                results = gr.Gallery(label="Results (select one to inspect)", columns=3, height=320, format="png",
                                     object_fit="contain", allow_preview=False, elem_id="results")
                results_full = gr.Gallery(label="Results at full resolution", format="png", visible=False,
                                          elem_id="results-full")
                with gr.Row():
                    keep_btn = gr.Button("Keep selected", elem_id="keep")
                    keep_all_btn = gr.Button("Keep all", elem_id="keep-all")
                    download_result = gr.DownloadButton("Download result", value=None, interactive=False,
                                                        elem_id="download-result")
            with gr.Column(scale=1):
                compare = gr.ImageSlider(label="Before / after (drag to compare; full size)", type="numpy",
                                         format="png", interactive=False, max_height=420, elem_id="compare")
        examples = gr.Gallery(label="Real defects from the data set", columns=8, height=170, format="png",
                              object_fit="contain", allow_preview=False, visible=bool(studio.defect_samples),
                              elem_id="real-examples")
        selected = gr.Number(value=0, precision=0, label="Selected result", visible=False)
        step = gr.Slider(1, 2, value=1, step=1, label="Reverse step", visible=False, elem_id="step-slider")
        step_caption = gr.Markdown(NO_RESULTS, elem_id="step-caption")
        with gr.Row():
            x_t = gr.Image(label="x_t (network input, its own range)", format="png", interactive=False, height=220)
            x0 = gr.Image(label="Predicted x0", format="png", interactive=False, height=220)
            dx0 = gr.Image(label="|change of predicted x0| from the previous step", format="png", interactive=False,
                           height=220, elem_id="x0-change")
            comp = gr.Image(label="Composite", format="png", interactive=False, height=220)
            heat = gr.Image(label="|output - input| (black = unchanged)", format="png", interactive=False,
                            height=220, elem_id="heat-map")
        count = gr.Markdown("**Curated: 0**", elem_id="curated-count")
        curated = gr.Gallery(label="Curated set (select one to remove)", columns=6, height=200, format="png",
                             object_fit="contain", allow_preview=False, elem_id="curated")
        with gr.Row():
            remove_btn = gr.Button("Remove selected from curated", elem_id="remove")
            category = gr.Textbox(value=studio.data.name if studio.data else "studio", label="Export category",
                                  max_lines=1, elem_id="category")
            export_btn = gr.Button("Export curated set", variant="primary", elem_id="export")
            download = gr.DownloadButton("Download zip (export first)", value=None, interactive=False,
                                         elem_id="download")
        export_status = gr.Markdown("", elem_id="export-status")

        views = [step, step_caption, x_t, x0, dx0, comp, heat]
        run = [results, results_full, status, compare, download_result, *views]
        # Outputs an action can leave an "Error" badge on: the next action's first step touches them
        # (no change) so the badge goes.
        badged = [results, status, curated, count, export_status, download, info]

        def first(trigger, fn=None, inputs=(), outputs=()):
            """An action's first step. It also touches (without changing) the outputs the last action may
            have left an "Error" badge on, so the badge goes with the next action."""
            extra = [c for c in badged if c not in outputs]

            def step_fn(*args):
                out = fn(*args) if fn else ()
                return (*(out if isinstance(out, tuple) else (out,)), *[gr.skip()] * len(extra))
            return trigger(step_fn, list(inputs), [*outputs, *extra], api_visibility="private", show_progress="hidden")

        # Image and mask.
        first(image_in.change, studio.load_image, [image_in, session],
              [editor, mask_overlay, mask_full, info, session, *run])
        editor.change(studio.mask_from_editor, [editor, feather_px, session], [mask_full, mask_overlay, session],
                      api_visibility="private", show_progress="hidden")
        editor.clear(studio.clear_mask, [feather_px, session], [editor, mask_overlay, mask_full, session],
                     api_visibility="private")   # the editor's own trash clears the mask, never the image
        show = dict(fn=studio.show_mask, inputs=[feather_px, session], outputs=[editor, mask_overlay, session],
                    api_visibility="private")
        first(random_btn.click) \
            .then(studio.random_mask, [image_in, kind, area_min, area_max, mask_seed, defect, session],
                  [mask_full, session], api_name="random_mask").then(**show)
        first(upload_btn.upload) \
            .then(studio.upload_mask, [upload_btn, session], [mask_full, session], api_visibility="private") \
            .then(**show)
        for btn, fn in ((dilate_btn, studio.dilate), (erode_btn, studio.erode)):
            first(btn.click, studio.mask_from_editor, [editor, feather_px, session],
                  [mask_full, mask_overlay, session]) \
                .then(fn, [grow_px, session], [mask_full, session], api_visibility="private").then(**show)
        first(clear_btn.click, studio.clear_mask, [feather_px, session], [editor, mask_overlay, mask_full, session])
        feather_px.change(studio.overlay, [feather_px, session], mask_overlay, api_visibility="private",
                          show_progress="hidden")
        brush_size.change(studio.brush, brush_size, editor, api_visibility="private", show_progress="hidden")

        # Synthesis, comparing and stepping through it.
        seed_btn.click(studio.new_seed, None, seed, api_visibility="private", show_progress="hidden")
        running = first(synth_btn.click, studio.begin_run, [editor, feather_px, session],
                        [mask_full, mask_overlay, session, *run]) \
            .then(studio.synthesize, [image_in, mask_full, method, defect, seed, variations, rcd, feather_px, session],
                  [results, status, results_full, session], api_name="synthesize", concurrency_id="model",
                  concurrency_limit=1, show_progress_on=[results])
        running.then(studio.result_view, [selected, session], [compare, download_result], api_visibility="private") \
            .then(studio.step_view, [selected, gr.State(None), session], views, api_visibility="private")
        cancel_btn.click(studio.cancelled, None, status, cancels=[running], api_visibility="private")
        results.select(studio.select, [session], [selected, compare, download_result, *views],
                       api_visibility="private")
        step.input(studio.step_view, [selected, step, session], views, api_visibility="private",
                   show_progress="hidden")
        if studio.defect_samples:
            defect.change(studio.examples_view, defect, examples, api_visibility="private")
            demo.load(studio.examples_view, defect, examples, api_visibility="private")

        # Curation and export.
        first(keep_btn.click) \
            .then(studio.keep, [selected, session], [curated, count, session], api_name="keep")
        first(keep_all_btn.click) \
            .then(studio.keep_all, [session], [curated, count, session], api_name="keep_all")
        curated.select(studio.pick_curated, [session], [session], api_visibility="private")
        first(remove_btn.click) \
            .then(studio.remove, [session], [curated, count, session], api_name="remove")
        first(export_btn.click) \
            .then(studio.export, [category, session], [export_status, download], api_name="export") \
            .then(studio.zip_ready, download, download, api_visibility="private", show_progress="hidden")
    return demo
