"""The training configuration: one dataclass whose fields are the command's options, saved as JSON.

`--config FILE.json` overrides the defaults; command-line flags override the file. The model
sections (generator, discriminator, schedule, loss) are the constructor arguments of those parts.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sard.io import SardInputError
from sard.losses import LossConfig
from sard.nets.discriminator import DiscriminatorConfig
from sard.nets.generator import GeneratorConfig
from sard.schedule import ScheduleConfig


@dataclass
class TrainConfig:
    data: str = ""
    out: str = ""
    iters: int = 2000
    res: int = 64                  # crop size in pixels (native scale)
    batch: int = 4
    defects: list[str] | None = None   # None: every defect type of the data set
    rcd: bool = True               # fake samples keep the real background (RCD in training)
    dmg: bool = True               # the mask-guided discriminator branch
    seed: int = 0
    split_seed: int = 0            # the deterministic third that trains the synthesizer
    lr_g: float = 1.6e-4
    lr_d: float = 4e-4             # DDGAN-sized D steps are too small for a CPU budget (issue 15 probes)
    betas: tuple[float, float] = (0.5, 0.9)
    ema: float = 0.999
    ema_warmup: bool = True        # decay min(ema, (1 + s) / (10 + s)); False: the paper's constant 0.999
    augment: bool = True           # D sees real and fake pairs through the same random shift / brightness
    whole_images: bool = False     # whole images resized to res instead of defect-centred crops
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
        if self.batch < 1:
            raise SardInputError(f"--batch: expected at least 1, got {self.batch}")
        stride = max(self.generator.stride, 2 ** (len(self.discriminator.channel_mult) - 1))
        if self.res < 16 or self.res % stride:
            raise SardInputError(f"--res: expected a multiple of {stride} of at least 16 pixels, got {self.res}")
        if self.schedule.num_steps < 1:
            raise SardInputError(f"schedule.num_steps: expected at least 1, got {self.schedule.num_steps}")
        return self


_SECTIONS = {"generator": GeneratorConfig, "discriminator": DiscriminatorConfig,
             "schedule": ScheduleConfig, "loss": LossConfig}


def config_from_dict(d: dict, source: str = "config") -> TrainConfig:
    """TrainConfig from a (possibly partial) dict; unknown keys are an error naming the source."""
    known = {f.name for f in fields(TrainConfig)}
    kwargs = {}
    for key, value in d.items():
        if key not in known:
            raise SardInputError(f"{source}: unknown key '{key}'; expected one of {sorted(known)}")
        if key in _SECTIONS:
            cls = _SECTIONS[key]
            sub = {f.name for f in fields(cls)}
            bad = sorted(set(value) - sub)
            if bad:
                raise SardInputError(f"{source}: unknown key(s) {bad} in '{key}'; expected some of {sorted(sub)}")
            value = cls(**value)
        elif key == "betas":
            value = tuple(value)
        kwargs[key] = value
    return TrainConfig(**kwargs)


def load_config_file(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise SardInputError(f"--config {path}: no such file; expected a JSON file of TrainConfig fields")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SardInputError(f"--config {path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise SardInputError(f"--config {path}: expected a JSON object")
    return config_from_dict(d, f"--config {path}")
