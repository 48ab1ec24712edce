"""The studio's layout and its wiring to the callbacks in ui.actions.

Stable API names (gradio_client): /random_mask, /synthesize, /keep, /export. Everything else is
private UI plumbing. Images and masks travel as PNG (Gradio's default WEBP is lossy).
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from sard.io import read_image
from ui.actions import MASK_LABELS, METHODS, Studio, user_error, user_errors
from ui.session import Session

CSS = """
#sard-title h1 {margin-bottom: 0}
#curated-count {font-size: 1.1em}
"""

HELP = """**How it works.** Load a normal part image (or pick one below), paint the defect region with the
brush or press **Random mask**, choose the method and defect type, and press **Synthesize**. Step
through the reverse process of a result with the slider, **Keep** the good ones, then **Export** the
curated set in the MVTec layout (images, 0/255 masks, manifest) and download it as a zip."""


def named_refusals(image: gr.Image) -> gr.Image:
    """A file the image input cannot read is refused naming the upload and what is expected, where
    Gradio says "Could not preprocess ..." with the server's temp path. (Wrapped on the instance: a
    gr.Image subclass would make Gradio write a .pyi file beside this module.)"""
    preprocess = image.preprocess

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
    image.preprocess = checked
    return image


def build_studio(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="SARD Studio", analytics_enabled=False) as demo:
        session = gr.State(Session())
        gr.Markdown(f"# SARD Studio\nDefect synthesis with Region-Constrained Diffusion. "
                    f"Model: `{studio.checkpoint.name}` ({', '.join(studio.defects)}; "
                    f"{'RGB: paints colour' if studio.pipe.channels == 3 else 'gray: on a colour image it changes luminance and keeps the part’s own colour'}).",
                    elem_id="sard-title")
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
                editor = gr.ImageEditor(label="Mask: paint the defect region", type="numpy", image_mode="RGBA",
                                        format="png", sources=[], transforms=[], layers=False, fixed_canvas=False,
                                        brush=gr.Brush(colors=["#ff3030"], default_color="#ff3030",
                                                       color_mode="fixed", default_size=6),
                                        eraser=gr.Eraser(default_size=10), height=420, elem_id="mask-editor")
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
        with gr.Row():
            method = gr.Radio(list(METHODS), value="SARD", label="Method")
            defect = gr.Dropdown(studio.defects, value=studio.defects[0], label="Defect type")
            seed = gr.Number(value=0, precision=0, label="Seed")
            variations = gr.Slider(1, 8, value=3, step=1, label="Variations")
            rcd = gr.Checkbox(value=True, label="RCD (keep background exact)")
            synth_btn = gr.Button("Synthesize", variant="primary", elem_id="synthesize")
        status = gr.Markdown("", elem_id="synth-status")
        results = gr.Gallery(label="Results (select one to inspect)", columns=4, height=300, format="png",
                             allow_preview=False, elem_id="results")
        selected = gr.Number(value=0, precision=0, label="Selected result", visible=False)
        with gr.Row():
            step = gr.Slider(0, 3, value=3, step=1, label="Reverse step", elem_id="step-slider")
        step_caption = gr.Markdown("", elem_id="step-caption")
        with gr.Row():
            x_t = gr.Image(label="x_t (network input)", format="png", interactive=False, height=256)
            x0 = gr.Image(label="Predicted x0", format="png", interactive=False, height=256)
            comp = gr.Image(label="Composite", format="png", interactive=False, height=256)
            heat = gr.Image(label="|output - input| (black = unchanged)", format="png", interactive=False,
                            height=256, elem_id="heat-map")
        with gr.Row():
            keep_btn = gr.Button("Keep selected", elem_id="keep")
            count = gr.Markdown("**Curated: 0**", elem_id="curated-count")
        curated = gr.Gallery(label="Curated set (select one to remove)", columns=6, height=200, format="png",
                             allow_preview=False, elem_id="curated")
        with gr.Row():
            remove_btn = gr.Button("Remove selected from curated", elem_id="remove")
            category = gr.Textbox(value=studio.data.name if studio.data else "studio", label="Export category",
                                  max_lines=1, elem_id="category")
            export_btn = gr.Button("Export curated set", variant="primary", elem_id="export")
            download = gr.DownloadButton("Download zip", value=None, elem_id="download")
        export_status = gr.Markdown("", elem_id="export-status")

        # Image and mask.
        image_in.change(studio.load_image, [image_in, session], [editor, mask_overlay, mask_full, session, info],
                        api_visibility="private")
        editor.change(studio.mask_from_editor, [editor, session], [mask_full, mask_overlay, session],
                      api_visibility="private")
        random_btn.click(studio.random_mask, [image_in, kind, area_min, area_max, mask_seed, defect, session],
                         [mask_full, session], api_name="random_mask") \
            .then(studio.show_mask, [mask_full, session], [editor, mask_overlay, session], api_visibility="private")

        # Synthesis and stepping through it.
        views = [step, x_t, x0, comp, heat, step_caption]
        # The button first takes the editor's current layers (a stroke's change event may still be queued).
        synth_btn.click(studio.mask_from_editor, [editor, session], [mask_full, mask_overlay, session],
                        api_visibility="private") \
            .then(studio.synthesize, [image_in, mask_full, method, defect, seed, variations, rcd, session],
                        [results, status, session], api_name="synthesize", concurrency_id="model",
                        concurrency_limit=1) \
            .then(studio.step_view, [selected, gr.State(None), session], views, api_visibility="private")
        results.select(studio.select, [session], [selected, *views], api_visibility="private")
        step.input(studio.step_view, [selected, step, session], views, api_visibility="private")

        # Curation and export.
        keep_btn.click(studio.keep, [selected, session], [curated, count, session], api_name="keep")
        curated.select(studio.pick_curated, [session], [session], api_visibility="private")
        remove_btn.click(studio.remove, [session], [curated, count, session], api_name="remove")
        export_btn.click(studio.export, [category, session], [export_status, download], api_name="export")
    return demo
