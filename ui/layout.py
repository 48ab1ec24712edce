"""The studio's layout and its wiring to the callbacks in ui.actions.

Stable API names (gradio_client): /random_mask, /synthesize, /keep, /keep_all, /export. Everything
else is private UI plumbing. Images and masks travel as PNG (Gradio's default WEBP is lossy).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from sard.devices import device_label
from sard.io import image_size, read_image
from sard.synthesizers import LABELS, SARD
from ui.actions import Studio, colour_note
from ui.files import Served
from ui.mask_editing import BRUSH_RGB, MASK_LABELS
from ui.messages import user_error, user_errors
from ui.session import Session
from ui.synthesis import METHOD_LABELS, NO_RESULTS, STARTING

CSS = """
#sard-title h1 {margin-bottom: 0}
#curated-count {font-size: 1.1em}
#curated .grid-container {grid-template-columns: repeat(auto-fill, 160px) !important}
"""   # curated cells of a thumbnail's size (ui.curation.CURATED_SIDE), not a share of the width: whole in view

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
    Gradio says "Could not preprocess ..." with the server's temp path; one larger than sard.io's
    limit is refused from its header, before Gradio decodes it (a 100-megapixel mask). (Wrapped on
    the instance: a subclass would make Gradio write a .pyi file beside this module.)"""
    preprocess = component.preprocess

    def checked(payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            name = payload.orig_name or Path(payload.path).name
            with user_errors(payload.path, name):
                image_size(payload.path)
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
    """The page's head: the device the model runs on in the title line, then the model and its bank."""
    bank = f" Real-mask bank: {studio.bank.origin or f'{len(studio.bank)} masks'}." if studio.bank else \
        " No real-mask bank (start with --data)."
    return (f"# SARD Studio · runs on {device_label(studio.pipe.device)}\n"
            f"Defect synthesis with Region-Constrained Diffusion. Model: `{studio.checkpoint.name}` "
            f"({', '.join(studio.defects)}); {colour_note(studio.pipe.channels)}.{bank}")


def build_studio(studio: Studio) -> gr.Blocks:
    """The page top to bottom, then its wiring; `c` names every component the wiring uses. The
    panels and the wiring see the studio through ui.files.Served: every picture a callback returns
    reaches Gradio as a PNG file written once."""
    studio = Served(studio, studio.files)
    with gr.Blocks(title="SARD Studio", analytics_enabled=False) as demo:
        c = SimpleNamespace(session=gr.State(Session()))
        gr.Markdown(title(studio), elem_id="sard-title")
        with gr.Accordion("Help", open=False):
            gr.Markdown(HELP)
        with gr.Row():
            image_column(studio, c)
            editor_column(c)
            mask_column(c)
        run_controls(studio, c)
        results_panel(studio, c)
        curation_panel(studio, c)
        first = badge_clearing([c.results, c.status, c.curated, c.count, c.export_status, c.download, c.info])
        wire_masks(studio, c, first)
        wire_synthesis(studio, demo, c, first)
        wire_curation(studio, c, first)
    return demo


# -- the panels, top to bottom ---------------------------------------------------------------------

def image_column(studio: Studio, c: SimpleNamespace) -> None:
    """The normal image: upload, its note, and a gallery of the data set's normal images."""
    with gr.Column(scale=1):
        c.image_in = named_refusals(gr.Image(label="Normal part image", type="filepath", image_mode=None,
                                             format="png", sources=["upload", "clipboard"], height=260,
                                             elem_id="image-input"))
        c.info = gr.Markdown("Load a normal part image to begin.", elem_id="image-info")
        if studio.normals:
            picks = gr.Gallery(value=studio.gallery_items(), label="Normal images from the data set",
                               columns=6, height=180, format="png", allow_preview=False,
                               elem_id="normals-gallery")
            picks.select(studio.pick_normal, None, c.image_in, api_visibility="private")


def editor_column(c: SimpleNamespace) -> None:
    """The mask editor and its brush size."""
    with gr.Column(scale=2):
        # canvas_size (1, 1): the editor keeps a stray layer of its initial canvas size, which
        # would make a layer set from the server land off the image (Gradio 6.31).
        c.editor = gr.ImageEditor(label="Mask: paint the defect region (strokes add, the eraser removes)",
                                  type="numpy", image_mode="RGBA", format="png", sources=[], transforms=[],
                                  layers=False, fixed_canvas=False, canvas_size=(1, 1),
                                  brush=gr.Brush(colors=[BRUSH_RGB], default_color=BRUSH_RGB,
                                                 color_mode="fixed", default_size=BRUSH_SIZE),
                                  eraser=gr.Eraser(default_size=BRUSH_SIZE), height=420, elem_id="mask-editor")
        with gr.Row():
            c.brush_size = gr.Slider(1, 80, value=BRUSH_SIZE, step=1, scale=3, elem_id="brush-size",
                                     label="Brush and eraser size (px on screen)")
            c.clear_btn = gr.Button("Clear mask", elem_id="clear-mask", scale=1)


def mask_column(c: SimpleNamespace) -> None:
    """The overlay, the full-resolution mask, random masks, dilate / erode, feather and upload."""
    with gr.Column(scale=1):
        c.mask_overlay = gr.Image(label="Mask overlay", format="png", interactive=False, height=260,
                                  elem_id="mask-overlay")
        c.mask_full = named_refusals(gr.Image(label="Mask (full resolution)", type="numpy", image_mode="L",
                                              format="png", visible=False, elem_id="mask-full"))
        with gr.Group():
            c.kind = gr.Dropdown(list(MASK_LABELS), value="Perlin", label="Random mask generator")
            with gr.Row():
                c.area_min = gr.Number(value=0.5, label="Area min (%)", minimum=0.01, maximum=100)
                c.area_max = gr.Number(value=3.0, label="Area max (%)", minimum=0.01, maximum=100)
                c.mask_seed = gr.Number(value=0, precision=0, label="Mask seed")
            c.random_btn = gr.Button("Random mask", elem_id="random-mask")
        with gr.Group():
            with gr.Row():
                c.grow_px = gr.Number(value=3, precision=0, minimum=1, maximum=256, label="px", min_width=60)
                c.dilate_btn = gr.Button("Dilate", elem_id="dilate", min_width=60)
                c.erode_btn = gr.Button("Erode", elem_id="erode", min_width=60)
            c.feather_px = gr.Slider(0, 32, value=0, step=1, label="Feather (px inside the mask's edge)",
                                     elem_id="feather")
            c.upload_btn = gr.UploadButton("Upload mask PNG", file_types=["image"], type="filepath",
                                           elem_id="upload-mask")


def run_controls(studio: Studio, c: SimpleNamespace) -> None:
    """Method, defect type, seed, variations, RCD, Synthesize / Cancel, and the run's status."""
    with gr.Row():
        c.method = gr.Radio(list(METHOD_LABELS), value=LABELS[SARD], label="Method")
        c.defect = gr.Dropdown(studio.defects, value=studio.defects[0], label="Defect type")
        with gr.Column(min_width=160):
            c.seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
            c.seed_btn = gr.Button("Random seed", size="sm", elem_id="random-seed")
        c.variations = gr.Slider(1, 8, value=3, step=1, label="Variations")
        c.rcd = gr.Checkbox(value=True, label="RCD (keep background exact)")
        with gr.Column(min_width=160):
            c.synth_btn = gr.Button("Synthesize", variant="primary", elem_id="synthesize")
            c.cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
    c.status = gr.Markdown("", elem_id="synth-status")


def results_panel(studio: Studio, c: SimpleNamespace) -> None:
    """Results, before / after, real examples and the step-through; c.views and c.run name the
    output groups of ui.synthesis."""
    with gr.Row():
        with gr.Column(scale=1):
            c.results = gr.Gallery(label="Results (select one to inspect)", columns=3, height=320, format="png",
                                   object_fit="contain", allow_preview=False, elem_id="results")
            c.results_full = gr.Gallery(label="Results at full resolution", format="png", visible=False,
                                        elem_id="results-full")
            with gr.Row():
                c.keep_btn = gr.Button("Keep selected", elem_id="keep")
                c.keep_all_btn = gr.Button("Keep all", elem_id="keep-all")
                c.download_result = gr.DownloadButton("Download result", value=None, interactive=False,
                                                      elem_id="download-result")
        with gr.Column(scale=1):
            c.compare = gr.ImageSlider(label="Before / after (drag to compare; full size)", type="numpy",
                                       format="png", interactive=False, max_height=420, elem_id="compare")
    c.examples = gr.Gallery(label="Real defects from the data set", columns=8, height=170, format="png",
                            object_fit="contain", allow_preview=False, visible=bool(studio.defect_samples),
                            elem_id="real-examples")
    c.selected = gr.Number(value=0, precision=0, label="Selected result", visible=False)
    c.step = gr.Slider(1, 2, value=1, step=1, label="Reverse step", visible=False, elem_id="step-slider")
    step_caption = gr.Markdown(NO_RESULTS, elem_id="step-caption")
    with gr.Row():
        x_t = gr.Image(label="x_t (network input, its own range)", format="png", interactive=False, height=220)
        x0 = gr.Image(label="Predicted x0", format="png", interactive=False, height=220)
        dx0 = gr.Image(label="|change of predicted x0| from the previous step", format="png", interactive=False,
                       height=220, elem_id="x0-change")
        comp = gr.Image(label="Composite", format="png", interactive=False, height=220)
        heat = gr.Image(label="|output - input| (black = unchanged)", format="png", interactive=False,
                        height=220, elem_id="heat-map")
    c.views = [c.step, step_caption, x_t, x0, dx0, comp, heat]
    c.run = [c.results, c.results_full, c.status, c.compare, c.download_result, *c.views]


def curation_panel(studio: Studio, c: SimpleNamespace) -> None:
    """The curated set, its export category, Export and the zip."""
    c.count = gr.Markdown("**Curated: 0**", elem_id="curated-count")
    c.curated = gr.Gallery(label="Curated set (select one to remove)", columns=6, height=220, format="png",
                           object_fit="contain", allow_preview=False, elem_id="curated")
    with gr.Row():
        c.remove_btn = gr.Button("Remove selected from curated", elem_id="remove")
        c.category = gr.Textbox(value=studio.data.name if studio.data else "studio", label="Export category",
                                max_lines=1, elem_id="category")
        c.export_btn = gr.Button("Export curated set", variant="primary", elem_id="export")
        c.download = gr.DownloadButton("Download zip (export first)", value=None, interactive=False,
                                       elem_id="download")
    c.export_status = gr.Markdown("", elem_id="export-status")


# -- the wiring ------------------------------------------------------------------------------------

def badge_clearing(badged: list):
    """`first(trigger, fn, inputs, outputs)`: an action's first step. It also touches (without
    changing) the outputs the last action may have left an "Error" badge on (`badged`), so the badge
    goes with the next action."""
    def first(trigger, fn=None, inputs=(), outputs=()):
        extra = [c for c in badged if c not in outputs]

        def step_fn(*args):
            out = fn(*args) if fn else ()
            return (*(out if isinstance(out, tuple) else (out,)), *[gr.skip()] * len(extra))
        return trigger(step_fn, list(inputs), [*outputs, *extra], api_visibility="private", show_progress="hidden")
    return first


def wire_masks(studio: Studio, c: SimpleNamespace, first) -> None:
    """Image and mask."""
    session = c.session
    first(c.image_in.change, studio.load_image, [c.image_in, session],
          [c.editor, c.mask_overlay, c.mask_full, c.info, session, *c.run])
    c.editor.change(studio.mask_from_editor, [c.editor, c.feather_px, session], [c.mask_full, c.mask_overlay, session],
                    api_visibility="private", show_progress="hidden")
    c.editor.clear(studio.clear_mask, [c.feather_px, session], [c.editor, c.mask_overlay, c.mask_full, session],
                   api_visibility="private")   # the editor's own trash clears the mask, never the image
    show = dict(fn=studio.show_mask, inputs=[c.feather_px, session], outputs=[c.editor, c.mask_overlay, session],
                api_visibility="private")
    first(c.random_btn.click) \
        .then(studio.random_mask, [c.image_in, c.kind, c.area_min, c.area_max, c.mask_seed, c.defect, session],
              [c.mask_full, session], api_name="random_mask").then(**show)
    first(c.upload_btn.upload) \
        .then(studio.upload_mask, [c.upload_btn, session], [c.mask_full, session], api_visibility="private") \
        .then(**show)
    for btn, fn in ((c.dilate_btn, studio.dilate), (c.erode_btn, studio.erode)):
        first(btn.click, studio.mask_from_editor, [c.editor, c.feather_px, session],
              [c.mask_full, c.mask_overlay, session]) \
            .then(fn, [c.grow_px, session], [c.mask_full, session], api_visibility="private").then(**show)
    first(c.clear_btn.click, studio.clear_mask, [c.feather_px, session],
          [c.editor, c.mask_overlay, c.mask_full, session])
    c.feather_px.change(studio.overlay, [c.feather_px, session], c.mask_overlay, api_visibility="private",
                        show_progress="hidden")
    c.brush_size.change(studio.brush, c.brush_size, c.editor, api_visibility="private", show_progress="hidden")


def wire_synthesis(studio: Studio, demo: gr.Blocks, c: SimpleNamespace, first) -> None:
    """Synthesis, comparing and stepping through it."""
    session = c.session
    c.seed_btn.click(studio.new_seed, None, c.seed, api_visibility="private", show_progress="hidden")
    # In the browser at once, before any round trip: the last run's "N/N done" goes with the click.
    c.synth_btn.click(None, None, c.status, js=f"() => {json.dumps(STARTING)}", api_visibility="private",
                      show_progress="hidden")
    running = first(c.synth_btn.click, studio.begin_run, [c.editor, c.feather_px, session],
                    [c.mask_full, c.mask_overlay, session, *c.run]) \
        .then(studio.synthesize, [c.image_in, c.mask_full, c.method, c.defect, c.seed, c.variations, c.rcd,
                                  c.feather_px, session],
              [c.results, c.status, c.results_full, session], api_name="synthesize", concurrency_id="model",
              concurrency_limit=1, show_progress_on=[c.results])
    running.then(studio.result_view, [c.selected, session], [c.compare, c.download_result],
                 api_visibility="private") \
        .then(studio.step_view, [c.selected, gr.State(None), session], c.views, api_visibility="private")
    c.cancel_btn.click(studio.cancelled, None, c.status, cancels=[running], api_visibility="private")
    c.results.select(studio.select, [session], [c.selected, c.compare, c.download_result, *c.views],
                     api_visibility="private")
    c.step.input(studio.step_view, [c.selected, c.step, session], c.views, api_visibility="private",
                 show_progress="hidden")
    if studio.defect_samples:
        c.defect.change(studio.examples_view, c.defect, c.examples, api_visibility="private")
        demo.load(studio.examples_view, c.defect, c.examples, api_visibility="private")


def wire_curation(studio: Studio, c: SimpleNamespace, first) -> None:
    """Curation and export."""
    session = c.session
    check = dict(outputs=None, api_visibility="private", show_progress="hidden")   # a refusal: a message, no badge
    first(c.keep_btn.click) \
        .success(studio.check_keep, [c.selected, session], **check) \
        .success(studio.keep, [c.selected, session], [c.curated, c.count, session], api_name="keep")
    first(c.keep_all_btn.click) \
        .success(studio.check_keep_all, [session], **check) \
        .success(studio.keep_all, [session], [c.curated, c.count, session], api_name="keep_all")
    c.curated.select(studio.pick_curated, [session], [session], api_visibility="private")
    first(c.remove_btn.click) \
        .success(studio.check_remove, [session], **check) \
        .success(studio.remove, [session], [c.curated, c.count, session], api_name="remove")
    first(c.export_btn.click) \
        .then(studio.export, [c.category, session], [c.export_status, c.download], api_name="export") \
        .then(studio.zip_ready, c.download, c.download, api_visibility="private", show_progress="hidden")
