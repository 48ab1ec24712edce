"""The training configuration: one dataclass whose fields are the command's options, saved as JSON.

`--config FILE.json` overrides the defaults; command-line flags override the file. The model
sections (generator, discriminator, schedule, loss) are the constructor arguments of those parts.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sard.fast_step import COMPILE_MODES, FAST_CHOICES
from sard.io import SardInputError
from sard.validate import SEED_MAX
from sard.losses import LossConfig
from sard.store.model_folder import MAX_Z_CARRY
from sard.nets.bounds import MAX_ITERS, choice, out_of_bounds, problems_of
from sard.nets.discriminator import DiscriminatorConfig
from sard.nets.generator import GeneratorConfig
from sard.schedule import ScheduleConfig
from sard.typed import from_dict

SECTIONS = ("generator", "discriminator", "schedule", "loss")
FLAGS = {"iters": "--iters", "minutes": "--minutes", "res": "--res", "batch": "--batch", "seed": "--seed",
         "fit_crops": "--fit-crops", "log_every": "--log-every", "sample_every": "--sample-every",
         "ckpt_every": "--ckpt-every", "fast": "--fast",
         "fast_mode": "--fast-mode"}   # the fields sard.train's flags set
MAX_MINUTES = 1e7       # about 19 years
MAX_D_STEPS = 100       # discriminator steps per generator step
MAX_FIT_WIDTH = 1e4     # px


@dataclass
class TrainConfig:
    data: str = ""
    out: str = ""
    iters: int = 2000
    minutes: float | None = None   # wall-time budget of the whole run (resumes included); stops at the first of both
    res: int = 64                  # crop size in pixels (native scale)
    batch: int = 4
    defects: list[str] | None = None   # None: every defect type of the data set
    rcd: bool = True               # fake samples keep the real background (RCD in training)
    dmg: bool = True               # the mask-guided discriminator branch
    seed: int = 0
    split_seed: int = 0            # the deterministic third that trains the synthesizer
    lr_g: float = 1.6e-4
    lr_d: float = 4e-4             # DDGAN-sized D steps are too small for a CPU budget (reports: realism_trainer_probes)
    betas: tuple[float, float] = (0.5, 0.9)
    d_steps: int = 2               # discriminator steps per generator step (1: DDGAN); 2 keeps D's gap alive
    ema: float = 0.999
    ema_warmup: bool = True        # decay min(ema, (1 + s) / (10 + s)); False: the paper's constant 0.999
    augment: bool = True           # D sees real and fake pairs through the same random shift / brightness
    init: str = ""                 # the checkpoint a fine-tuning run started from (--init), resolved
    whole_images: bool = False     # whole images resized to res instead of defect-centred crops
    fit_crops: float = 0.5         # share of crops scaled so the whole mask fits (masks larger than the
                                   # crop); synthesis then works at that scale in such masks. 0: native only
    fit_min_width: float = 6.0     # px: fit crops never thin a mask's strokes below this (a crack stays
                                   # native). 0: scale by the bounding box alone
    log_every: int = 10
    sample_every: int = 500
    ckpt_every: int = 500
    refine: int = 1                # the shipped sampler's native-scale steps after a mask painted at a fit crop's scale; 0: none
    refine_carry: float = 1.0      # the share of the scaled pass's last z the refine pass keeps (sard.rcd.keep_latent); 0: fresh z
    z_carry: float = 8.0           # the shipped sampler's latent carried across reverse steps (sard.rcd.carry_latent); 0: DDGAN's fresh z
    part_grain: float = 0.0        # share of the part's own band finer than a fit crop's scale kept in such a mask's fill (reports/sampler/part_grain.md)
    fast: str = "auto"             # the compiled step (sard.fast_step): auto = on CUDA only, on, off
    fast_mode: str = "default"     # its torch.compile mode
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def problems(self, flags: bool = False) -> list[str]:
        """What is wrong with the top-level fields, as 'field: expected ..., got ...' lines (empty: fine);
        flags=True names a field a flag sets by the flag. Widths, batch and res have no upper bound
        here: what fits is the machine's memory (sard.memory)."""
        def n(f: str) -> str:
            return FLAGS.get(f, f) if flags else f
        b = out_of_bounds
        return problems_of(
            *(b(n(f), getattr(self, f), 1, MAX_ITERS, whole=True) for f in ("iters", "log_every", "sample_every",
                                                                             "ckpt_every")),
            None if self.minutes is None else b(n("minutes"), self.minutes, 0, MAX_MINUTES, above=True),
            b(n("res"), self.res, 16, whole=True), b(n("batch"), self.batch, 1, whole=True),
            b(n("seed"), self.seed, 0, SEED_MAX, whole=True), b("split_seed", self.split_seed, 0, SEED_MAX, whole=True),
            b("lr_g", self.lr_g, 0, 1, above=True), b("lr_d", self.lr_d, 0, 1, above=True),
            *(b(f"betas[{k}]", v, 0, 1, below=True) for k, v in enumerate(self.betas)),
            b("d_steps", self.d_steps, 1, MAX_D_STEPS, whole=True), b("ema", self.ema, 0, 1, below=True),
            b(n("fit_crops"), self.fit_crops, 0, 1), b("fit_min_width", self.fit_min_width, 0, MAX_FIT_WIDTH),
            b("z_carry", self.z_carry, 0, MAX_Z_CARRY), b("refine", self.refine, 0, self.schedule.num_steps, whole=True),
            b("refine_carry", self.refine_carry, 0, 1), b("part_grain", self.part_grain, 0, 1),
            choice(n("fast"), self.fast, FAST_CHOICES), choice(n("fast_mode"), self.fast_mode, COMPILE_MODES))

    def validate(self) -> "TrainConfig":
        """Every field and section checked (a flag's value named by the flag): SardInputError naming the
        first problem. What the machine can hold is sard.memory's check."""
        for name in SECTIONS:
            section = getattr(self, name).problems()
            if section:
                raise SardInputError(f"{name}.{section[0]}")
        top = self.problems(flags=True)
        if top:
            raise SardInputError(top[0])
        stride = max(self.generator.stride, 2 ** (len(self.discriminator.channel_mult) - 1))
        if self.res % stride:
            raise SardInputError(f"--res: expected a multiple of {stride} of at least 16 pixels, got {self.res}")
        return self


def config_from_dict(d: dict, source: str = "config") -> TrainConfig:
    """TrainConfig from a (possibly partial) dict; unknown keys and wrongly typed values are an error
    naming the source and the field."""
    return from_dict(TrainConfig, d, source)


def load_config_file(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise SardInputError(f"--config {path}: no such file; expected a JSON file of TrainConfig fields")
    try:
        d = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SardInputError(f"--config {path}: not valid UTF-8 JSON ({e})") from None
    if not isinstance(d, dict):
        raise SardInputError(f"--config {path}: expected a JSON object")
    return config_from_dict(d, f"--config {path}")
