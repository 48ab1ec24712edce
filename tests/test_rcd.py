"""RCD keeps the background exact; rcd=False does not; the sampler yields a frame per step."""
import dataclasses

import numpy as np
import pytest
import torch

from sard.nets.generator import Generator, GeneratorConfig
from sard.pipeline import SardPipeline
from sard.rcd import carry_latent, rcd_sample
from sard.schedule import Schedule, ScheduleConfig
from sard.store.model_folder import ModelConfig, sampler_of


def random_pipeline(channels: int, T: int = 4, seed: int = 0) -> SardPipeline:
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(image_channels=channels, base_channels=8, channel_mult=(1, 2), num_res_blocks=1))
    # Random (not zero) last conv, so the untrained network really changes pixels.
    for blk in [*g.down, *g.mid, *g.up]:
        torch.nn.init.normal_(blk.conv2.weight, std=0.05)
    return SardPipeline(g, Schedule(ScheduleConfig(num_steps=T)), ModelConfig(g.config, res=16), torch.device("cpu"))


def test_the_refine_pass_goes_on_with_the_scaled_pass_latent_as_refine_carry_says():
    pipe = random_pipeline(3)
    pipe.config.fit_crops, pipe.config.refine, pipe.config.z_carry = 0.5, 1, 8.0
    with torch.no_grad():   # the untrained style path starts at zero: make z matter
        for w in pipe.generator.parameters():
            if not w.any():
                w.normal_(0, 0.05)
    img = np.random.default_rng(4).integers(0, 256, (120, 140, 3), dtype=np.uint8)
    big = large_mask(120, 140, 20, 30, 80, 60)
    seen = []
    pipe.generator.register_forward_pre_hook(lambda module, args: seen.append(args[2].clone()))
    fresh = pipe(img, big, seed=1)                      # refine_carry 0: the refine pass draws a fresh z
    assert len(seen) == 5 and not torch.allclose(seen[4], seen[3])
    pipe.config.refine_carry = 1.0                      # 1: it paints with the scaled pass's last z
    kept = pipe(img, big, seed=1)
    assert torch.equal(seen[9], seen[8]) and all(torch.equal(a, b) for a, b in zip(seen[:4], seen[5:9]))
    assert np.array_equal(kept.image[~big], img[~big]) and not np.array_equal(kept.image, fresh.image)
    pipe.config.refine_carry = 0.5                      # between: N(0, I) again, part of the last z kept
    pipe(img, big, seed=1)
    corr = float(torch.nn.functional.cosine_similarity(seen[14], seen[13]).mean())
    assert 0.2 < corr < 0.8, corr


def blob_mask(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
    return (yy - cy) ** 2 / (h / 6) ** 2 + (xx - cx) ** 2 / (w / 5) ** 2 < 1


@pytest.mark.parametrize("shape", [(37, 53), (61, 29, 3), (101, 77, 3), (45, 45)])
@pytest.mark.parametrize("roi", [True, False])
def test_background_is_bit_exact_under_rcd(shape, roi):
    channels = 3 if len(shape) == 3 else 1
    pipe = random_pipeline(channels)
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    m = blob_mask(*shape[:2])
    r = pipe(img, m, seed=3, roi=roi)
    assert r.image.shape == img.shape and r.image.dtype == img.dtype
    assert np.array_equal(r.image[~m], img[~m])
    assert (r.image[m] != img[m]).mean() > 0.5  # the masked region was synthesized
    assert set(np.unique(r.mask)) <= {0, 255}


@pytest.mark.parametrize("channels", [1, 3])
def test_rcd_off_changes_the_background(channels):
    pipe = random_pipeline(channels)
    shape = (40, 48, 3) if channels == 3 else (40, 48)
    img = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    m = blob_mask(40, 48)
    r = pipe(img, m, seed=0, rcd=False)
    assert (r.image[~m] != img[~m]).mean() > 0.5


def test_same_seed_same_output_and_seeds_differ():
    pipe = random_pipeline(1)
    img = np.random.default_rng(3).integers(0, 256, (33, 35), dtype=np.uint8)
    m = blob_mask(33, 35)
    a, b, c = pipe(img, m, seed=7), pipe(img, m, seed=7), pipe(img, m, seed=8)
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("T", [2, 4, 8])
def test_sampler_yields_a_frame_per_step_and_keeps_background_in_x0_space(T):
    pipe = random_pipeline(1, T=T)
    x0 = torch.rand(2, 1, 16, 16) * 2 - 1
    m = torch.zeros(2, 1, 16, 16)
    m[:, :, 4:10, 5:12] = 1
    frames = list(rcd_sample(pipe.generator, pipe.schedule, x0, m, 100, torch.Generator().manual_seed(0)))
    assert [f.step for f in frames] == list(reversed(range(T)))
    last = frames[-1]
    assert torch.equal(last.composite[m.expand_as(x0) == 0], x0[m.expand_as(x0) == 0])
    # The final x_0 of the chain itself is the background up to float rounding (A_0 = 1, B_0 = 0).
    assert torch.allclose(last.x_prev[m.expand_as(x0) == 0], x0[m.expand_as(x0) == 0], atol=1e-5)
    # Intermediate x_t are noisy in the background (the forward chain), not the clean image.
    assert not torch.allclose(frames[0].x_t, x0, atol=0.1)


def test_16bit_and_rgba_inputs_keep_mode_and_background():
    from PIL import Image
    pipe = random_pipeline(1)
    rng = np.random.default_rng(4)
    img16 = rng.integers(0, 65536, (30, 34), dtype=np.uint16)
    m = blob_mask(30, 34)
    r = pipe(img16, m, seed=1)
    assert r.image.dtype == np.uint16 and np.array_equal(r.image[~m], img16[~m])
    rgba = Image.fromarray(rng.integers(0, 256, (30, 34, 4), dtype=np.uint8), "RGBA")
    r = pipe(rgba, Image.fromarray(m.astype(np.uint8) * 255), seed=1)
    out = np.array(r.image)
    assert r.image.mode == "RGBA" and np.array_equal(out[~m], np.array(rgba)[~m])
    assert np.array_equal(out[..., 3], np.array(rgba)[..., 3])


def large_mask(h, w, top, left, bh, bw):
    m = np.zeros((h, w), bool)
    m[top:top + bh, left:left + bw] = True
    return m


def test_a_fit_crop_checkpoint_paints_a_large_mask_at_its_crop_scale_and_keeps_the_background():
    pipe = random_pipeline(3)
    img = np.random.default_rng(4).integers(0, 256, (120, 140, 3), dtype=np.uint8)
    big, small = large_mask(120, 140, 20, 30, 80, 60), large_mask(120, 140, 50, 60, 8, 8)
    native = pipe(img, big, seed=1)
    assert native.timings["scale"] == 1.0          # a checkpoint without fit crops: native scale always
    pipe.config.fit_crops = 0.5
    r = pipe(img, big, seed=1)
    # res 16, context res / 8 = 2 px each side: the 80 px mask is painted at 12 / 80 of its size
    assert r.timings["scale"] == pytest.approx(12 / 80)
    top, left, bottom, right = r.roi
    assert top <= 20 and left <= 30 and bottom >= 100 and right >= 90  # the window holds the whole mask
    assert all(f.x0_hat.shape[:2] == (bottom - top, right - left) for f in r.frames)  # shown at native size
    assert np.array_equal(r.image[~big], img[~big])
    assert (r.image[big] != img[big]).all(axis=-1).mean() > 0.5          # every part of the mask painted
    assert not np.array_equal(r.image, native.image)
    assert pipe(img, small, seed=1).timings["scale"] == 1.0             # a mask that fits stays native
    # refine: one more reverse step at native scale, from the scaled result noised to t = 1
    fine = pipe(img, big, seed=1, refine=1)
    assert [f.scale for f in fine.frames] == [r.timings["scale"]] * 4 + [1.0] and fine.frames[-1].step == 0
    assert np.array_equal(fine.image[~big], img[~big]) and not np.array_equal(fine.image, r.image)
    assert len(pipe(img, small, seed=1, refine=1).frames) == 4          # nothing to refine at native scale
    # the checkpoint's own refine (ModelConfig.refine) is the default; batch() shares the scaled pass's calls
    # and refines each job alone, as it is made on its own
    pipe.config.refine = 1
    assert np.array_equal(pipe(img, big, seed=1).image, fine.image)
    assert np.array_equal(pipe(img, big, seed=1, refine=0).image, r.image)
    other = np.roll(img, 7, axis=1)
    together = pipe.batch([(img, big, 1, None), (img, small, 2, None), (other, big, 5, None), (img, small, 3, None)],
                          size=4)
    assert [t.timings["batch"]["size"] for t in together] == [2, 2, 2, 2] and all(t.frames == [] for t in together)
    for t, (image, seed) in zip(together[::2], ((img, 1), (other, 5))):
        alone = pipe(image, big, seed=seed)
        assert int(np.abs(t.image.astype(int) - alone.image.astype(int)).max()) <= 1   # a batched call's rounding
        assert np.array_equal(t.image[~big], image[~big])
    assert not np.array_equal(together[0].image, pipe(img, big, seed=1, refine=0).image)   # the refine step ran


def test_a_fit_crop_holds_the_whole_mask_scaled_as_synthesis_scales_it():
    from sard.data.crops import DefectExample, defect_crop
    from sard.imaging import fit_scale
    img = torch.rand(1, 300, 260) * 2 - 1
    m = torch.from_numpy(large_mask(300, 260, 40, 100, 160, 90))[None].float()
    ex = DefectExample(img, m, 0, None)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, mk = defect_crop(ex, 64, rng, fit=True)
        assert x.shape == (1, 64, 64) and mk.shape == (1, 64, 64)
        ys, xs = torch.nonzero(mk[0], as_tuple=True)
        # the whole 160 x 90 box, at fit_scale, with context on every side
        assert int(ys.max() - ys.min() + 1) == pytest.approx(160 * fit_scale(m[0].numpy() > 0, 64), abs=1)
        assert int(xs.max() - xs.min() + 1) == pytest.approx(90 * fit_scale(m[0].numpy() > 0, 64), abs=1)
        assert ys.min() > 0 and xs.min() > 0 and ys.max() < 63 and xs.max() < 63
        native, _ = defect_crop(ex, 64, rng)
        assert native[0].std() > 1.5 * x[0].std()   # area-averaged noise: the fit crop was scaled down


def test_the_width_floor_keeps_a_thin_mask_at_native_scale_in_crops_and_in_synthesis():
    from sard.data.crops import DefectExample, defect_crop
    from sard.imaging import fit_scale, mask_width
    crack = large_mask(300, 260, 40, 100, 160, 3)              # a 3 px stroke, 160 px long
    blob = large_mask(300, 260, 40, 100, 160, 90)
    assert mask_width(crack) == pytest.approx(3, rel=0.1) and mask_width(blob) > 50
    assert fit_scale(crack, 64) == pytest.approx(48 / 160)     # by its box alone: thinned to 1 px
    assert fit_scale(crack, 64, min_width=6) == 1.0            # thinner than the floor: native
    assert fit_scale(blob, 64, min_width=6) == fit_scale(blob, 64)   # a wide mask is not held back
    wide = large_mask(300, 260, 40, 100, 160, 12)
    assert fit_scale(wide, 64, min_width=6) == pytest.approx(0.5, rel=0.1)   # its strokes stay 6 px
    img = torch.rand(1, 300, 260) * 2 - 1
    ex = DefectExample(img, torch.from_numpy(crack)[None].float(), 0, None)
    rng = np.random.default_rng(0)
    for _ in range(10):
        thin, mk = defect_crop(ex, 64, rng, fit=True)
        held, mh = defect_crop(ex, 64, rng, fit=True, fit_min_width=6)
        assert thin.std() < 0.8 * held.std()                 # the box-only crop was scaled down
        widths = mh[0].sum(dim=1)
        assert widths[widths > 0].max() == 3                  # the floor's crop: the stroke at native width
        assert (mh[0].sum(dim=0) > 0).sum() == 64 or (mh[0].sum(dim=1) > 0).sum() == 64   # crosses the crop
    pipe = random_pipeline(3)
    pipe.config.fit_crops = 0.5
    shape = (200, 160)
    stroke = large_mask(*shape, 20, 70, 150, 3)
    assert pipe.scale_for(stroke) == pytest.approx(12 / 150)  # res 16: 12 px of box, 2 px of context
    pipe.config.fit_min_width = 6.0
    assert pipe.scale_for(stroke) == 1.0
    img8 = np.random.default_rng(5).integers(0, 256, (*shape, 3), dtype=np.uint8)
    r = pipe(img8, stroke, seed=0)
    assert r.timings["scale"] == 1.0 and np.array_equal(r.image[~stroke], img8[~stroke])


def _latents_seen(T: int, z_carry: float, batch: int = 2000) -> list[torch.Tensor]:
    """The z the generator receives at each reverse step of one rcd_sample run."""
    seen = []

    def generator(x_t, i, z, mask, context, label):
        seen.append(z.clone())
        return torch.zeros_like(x_t)
    x0, m = torch.zeros(batch, 1, 8, 8), torch.ones(batch, 1, 8, 8)
    list(rcd_sample(generator, Schedule(ScheduleConfig(num_steps=T)), x0, m, 16, torch.Generator().manual_seed(0),
                    z_carry=z_carry))
    return seen


@pytest.mark.parametrize("z_carry", [1.0, 4.0])
def test_the_carried_latent_keeps_each_step_standard_normal_and_correlated_as_its_schedule_says(z_carry):
    sched = Schedule(ScheduleConfig(num_steps=4))
    zs = _latents_seen(4, z_carry)
    for k, (prev, cur) in enumerate(zip(zs, zs[1:])):
        step = 4 - 2 - k                                   # cur is the z of reverse step `step`
        rho = float(sched.sqrt_alpha_bar[step + 1]) ** (1 / z_carry)
        corr = float((prev * cur).mean() / (prev.std() * cur.std()))
        assert abs(corr - rho) < 0.03, (step, corr, rho)
        assert abs(float(cur.std()) - 1) < 0.03
    assert carry_latent(sched, zs[0], zs[1], 0, 0.0) is zs[1]      # 0: a fresh z, eq. 4 as DDGAN samples


def test_no_carry_draws_what_the_sampler_always_drew():
    """z_carry 0 takes the same random draws in the same order: old exports regenerate bit for bit."""
    zs = _latents_seen(4, 0.0, batch=3)
    g = torch.Generator().manual_seed(0)
    torch.randn(3, 1, 8, 8, generator=g)                  # x_T
    for z in zs:
        assert torch.equal(z, torch.randn(3, 16, generator=g))
        torch.randn(3, 1, 8, 8, generator=g)              # the posterior's noise


def test_a_checkpoint_with_a_carried_latent_synthesizes_otherwise_and_says_so_in_its_hash(tmp_path):
    from sard.store.model_folder import save_model
    pipe = random_pipeline(1)
    with torch.no_grad():   # the untrained style path starts at zero: make z matter
        for w in pipe.generator.parameters():
            if not w.any():
                w.normal_(0, 0.05)
    save_model(tmp_path / "fresh", pipe.generator.state_dict(), pipe.config)
    save_model(tmp_path / "carry", pipe.generator.state_dict(), dataclasses.replace(pipe.config, z_carry=4.0))
    a, b = (SardPipeline.from_pretrained(tmp_path / n) for n in ("fresh", "carry"))
    assert b.config.z_carry == 4.0 and b.checkpoint_hash == a.checkpoint_hash + "-zc4"
    none = {"z_carry": 0.0, "refine": 0, "refine_carry": 0.0, "part_grain": 0.0}
    assert sampler_of(b.checkpoint_hash) == {**none, "z_carry": 4.0} and sampler_of(a.checkpoint_hash) == none
    assert sampler_of("abc-zc0.5-r2") == {**none, "z_carry": 0.5, "refine": 2}
    assert sampler_of("abc-zc8-r1-rc1") == {**none, "z_carry": 8.0, "refine": 1, "refine_carry": 1.0}
    assert sampler_of("abc-zc8-pg1") == {**none, "z_carry": 8.0, "part_grain": 1.0}
    img = np.random.default_rng(3).integers(0, 256, (33, 35), dtype=np.uint8)
    m = blob_mask(33, 35)
    ra, rb = a(img, m, seed=7), b(img, m, seed=7)
    assert not np.array_equal(ra.image, rb.image) and np.array_equal(ra.image[~m], rb.image[~m])
    assert np.array_equal(ra.image, pipe(img, m, seed=7).image)
    # a pair recorded before the folder's sampler changed is rebuilt with the sampler it was made with
    from sard.synthesizers import build, from_record
    record = {"method": "sard", "method_params": build("sard", tmp_path / "fresh").params}
    (tmp_path / "fresh" / "config.json").write_bytes((tmp_path / "carry" / "config.json").read_bytes())
    assert np.array_equal(from_record(record)(img, m, 7, None).image, ra.image)
    assert np.array_equal(build("sard", tmp_path / "fresh")(img, m, 7, None).image, rb.image)


def test_the_cards_step_through_grid_holds_refined_and_native_masks_side_by_side(tmp_path):
    from types import SimpleNamespace
    from PIL import Image
    from sard.evaluation.card import step_through_grid
    pipe = random_pipeline(3)
    pipe.config.fit_crops, pipe.config.refine = 0.5, 1
    img = np.random.default_rng(4).integers(0, 256, (120, 140, 3), dtype=np.uint8)
    held = []
    for k, m in enumerate((large_mask(120, 140, 20, 30, 80, 60), large_mask(120, 140, 50, 60, 8, 8))):
        Image.fromarray(img).save(tmp_path / f"{k}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / f"{k}_mask.png")
        held.append(SimpleNamespace(image=tmp_path / f"{k}.png", mask=tmp_path / f"{k}_mask.png", defect=None))
    grid = step_through_grid(pipe, held, None, height=40, zoom_size=32)
    # the real defect, 4 reverse steps and one native refine step; the native mask's row left blank there
    assert grid.width >= 6 * 40 and grid.height >= 2 * 40


def test_part_grain_keeps_the_parts_band_finer_than_a_scaled_painting_and_nothing_else():
    pipe = random_pipeline(1)
    pipe.config.fit_crops = 0.5
    stripes = np.where(np.arange(140) % 2, 170, 80).astype(np.uint8)   # 1 px streaks, as a ground tile's
    img = np.repeat(stripes[None], 120, axis=0)
    big, small = large_mask(120, 140, 20, 30, 80, 60), large_mask(120, 140, 50, 60, 8, 8)
    plain = pipe(img, big, seed=1)
    pipe.config.part_grain = 1.0
    kept = pipe(img, big, seed=1)
    assert plain.timings["scale"] < 1 and np.array_equal(kept.image[~big], img[~big])
    core = big & np.roll(big, 2, 1) & np.roll(big, -2, 1)
    streak = lambda a: float(np.abs(np.diff(a.astype(float), axis=1))[core[:, 1:]].mean())
    assert streak(plain.image) < 0.2 * streak(img) and streak(kept.image) > 0.6 * streak(img)   # the painting alone smooths them
    band = img.astype(float) - img.astype(float).mean()                   # the stripes are all band: no coarser detail
    added = kept.image.astype(float) - plain.image.astype(float)
    assert np.corrcoef(added[core], band[core])[0, 1] > 0.9
    with_grain = pipe(img, small, seed=1)
    pipe.config.part_grain = 0.0
    assert np.array_equal(with_grain.image, pipe(img, small, seed=1).image)   # a mask painted at native scale: no band to keep
