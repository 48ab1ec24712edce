"""The training configuration: one dataclass whose fields are the command's options, saved as JSON.

`--config FILE.json` overrides the defaults; command-line flags override the file. The model
sections (generator, discriminator, schedule, loss) are the constructor arguments of those parts.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sard.io import SardInputError
from sard.validate import seed as check_seed, whole_number
from sard.losses import LossConfig
from sard.nets.discriminator import DiscriminatorConfig
from sard.nets.generator import GeneratorConfig
from sard.schedule import ScheduleConfig
from sard.typed import from_dict


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
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "TrainConfig":
        if self.iters < 1:
            raise SardInputError(f"--iters: expected a positive number of steps, got {self.iters}")
        if self.minutes is not None and not (isinstance(self.minutes, (int, float)) and self.minutes > 0):
            raise SardInputError(f"--minutes: expected a positive number of minutes, got {self.minutes!r}")
        if self.batch < 1:
            raise SardInputError(f"--batch: expected at least 1, got {self.batch}")
        whole_number("d_steps", self.d_steps, 1)
        if not (isinstance(self.fit_crops, (int, float)) and 0 <= self.fit_crops <= 1):
            raise SardInputError(f"fit_crops: expected a share between 0 and 1, got {self.fit_crops!r}")
        if not (isinstance(self.fit_min_width, (int, float)) and self.fit_min_width >= 0):
            raise SardInputError(f"fit_min_width: expected a width in pixels >= 0, got {self.fit_min_width!r}")
        for flag in ("--log-every", "--sample-every", "--ckpt-every"):   # steps between two of them
            whole_number(flag, getattr(self, flag[2:].replace("-", "_")), 1)
        check_seed("--seed", self.seed)
        check_seed("split_seed", self.split_seed)
        stride = max(self.generator.stride, 2 ** (len(self.discriminator.channel_mult) - 1))
        if self.res < 16 or self.res % stride:
            raise SardInputError(f"--res: expected a multiple of {stride} of at least 16 pixels, got {self.res}")
        if self.schedule.num_steps < 1:
            raise SardInputError(f"schedule.num_steps: expected at least 1, got {self.schedule.num_steps}")
        if self.discriminator.problems():
            raise SardInputError("discriminator." + self.discriminator.problems()[0])
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
