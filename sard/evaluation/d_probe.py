"""Can the discriminator learn? D trained alone on real defect crops against a known fake.

The fake is the real crop with its masked region replaced (zero, mean of the background, or a
blurred copy), diffused exactly as the trainer diffuses G's fakes (RCD keeps the real background).
Per reverse step i it reports D's real-minus-fake logit gap and how often it ranks the real pair
above the fake one, beside the best any discriminator could do: real and fake x_{i} differ only by
A_i (x0 - x0_fake) under noise sigma_i (posterior eq. 1-3), so even knowing both x0 a test cannot
beat Phi(d' / sqrt 2) with d' = A_i ||x0 - x0_fake|| / sigma_i. At the noisiest step it is near 50 %.
With `judges="x0"` D sees the clean x0 (real or fake) beside x_{i+1} at every step, as the trainer
shows it then (sard.steps.judged_view): nothing hides the difference, the bound is 100 % at every step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sard.data import defect_types, list_dataset, split_defects
from sard.data.crops import CropSampler, infer_channels, load_examples
from sard.losses import d_fake_loss, d_real_loss
from sard.nets.discriminator import Discriminator, DiscriminatorConfig, texture_gain
from sard.rcd import rcd_step
from sard.schedule import Schedule

FAKES = ("zero", "mean", "blur")


@dataclass
class StepResult:
    step: int
    gap_img: float          # mean D_img(real) - D_img(fake)
    gap_fg: float | None    # the same for D_fg
    accuracy: float         # two-alternative: how often D_img(real) > D_img(fake) on the same crop and noise
    bayes_bound: float      # best such accuracy of any test that knows x0 and the fake


def fake_x0(x0: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """The crop with its masked region replaced by zeros, the background's mean, or a 9x9 box blur."""
    if kind == "zero":
        fill = torch.zeros_like(x0)
    elif kind == "mean":
        bg = 1 - mask
        fill = ((x0 * bg).sum((2, 3), keepdim=True) / bg.sum((2, 3), keepdim=True).clamp(min=1)).expand_as(x0)
    elif kind == "blur":
        fill = F.avg_pool2d(F.pad(x0, (4, 4, 4, 4), mode="reflect"), 9, 1)
    else:
        raise ValueError(f"fake must be one of {FAKES}, got {kind!r}")
    return mask * fill + (1 - mask) * x0


def probe(data: str, config: DiscriminatorConfig | None = None, fake: str = "zero", steps: int = 300,
          lr: float = 4e-4, batch: int = 4, res: int = 64, seed: int = 0, eval_batches: int = 25) -> list[StepResult]:
    """Train D alone for `steps` steps, then measure it per reverse step i on fresh crops."""
    torch.manual_seed(seed)
    samples = list_dataset(data)
    defects = defect_types(samples)
    split = split_defects(samples, 0)
    channels = infer_channels(split.synth)
    examples, _ = load_examples(split.synth, defects, channels)
    sampler = CropSampler(examples, res, seed=seed)
    schedule = Schedule()
    base = config or DiscriminatorConfig()
    D = Discriminator(DiscriminatorConfig(**{**base.to_dict(), "image_channels": channels, "num_classes": len(defects),
                                             "num_steps": schedule.num_steps,
                                             "highpass_gain": texture_gain(CropSampler(examples, res, seed + 1).batch(64)[0])}))
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.9))
    rng = torch.Generator().manual_seed(seed)

    clean = D.config.judges == "x0"

    def pairs(x0, m, i):
        x_i, x_next = schedule.q_sample_pairs(x0, i, rng)
        noise = torch.randn(x0.shape, generator=rng)
        if clean:
            return x0, x_next, fake_x0(x0, m, fake)
        return x_i, x_next, rcd_step(schedule, fake_x0(x0, m, fake), x_next, x0, m, i, noise)

    for _ in range(steps):
        x0, m, y = sampler.batch(batch)
        i = torch.randint(0, schedule.num_steps, (batch,), generator=rng)
        x_i, x_next, x_fake = pairs(x0, m, i)
        loss = d_real_loss(D(x_i, x_next, i, m, y), 0.2) + d_fake_loss(D(x_fake, x_next, i, m, y), 0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    out = []
    with torch.no_grad():
        for step in range(schedule.num_steps):
            gi, gf, hits, dprime = [], [], [], []
            snr = (schedule.posterior_coef_x0[step] / schedule.posterior_variance[step].sqrt().clamp(min=1e-6)).item()
            for _ in range(eval_batches):
                x0, m, y = sampler.batch(8)
                i = torch.full((8,), step)
                x_i, x_next, x_fake = pairs(x0, m, i)
                r, f = D(x_i, x_next, i, m, y), D(x_fake, x_next, i, m, y)
                gi.append(r.img - f.img)
                if r.fg is not None:
                    gf.append(r.fg - f.fg)
                hits.append((r.img > f.img).float())
                dprime.append(snr * (x0 - fake_x0(x0, m, fake)).flatten(1).norm(dim=1))
            d = torch.cat(dprime)
            bound = 1.0 if clean else (0.5 * (1 + torch.erf(d / 2))).mean().item()     # Phi(d' / sqrt 2); clean: no noise
            out.append(StepResult(step, torch.cat(gi).mean().item(), torch.cat(gf).mean().item() if gf else None,
                                  torch.cat(hits).mean().item(), bound))
    return out
