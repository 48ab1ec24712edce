"""A model folder: `config.json` (a typed ModelConfig) + `model.safetensors` (the EMA generator),
and optionally `bank/`, its real-mask bank. Read in one place (ModelConfig.read); written by the
trainer (save_model) and by `python -m sard.checkpoint` (ship)."""
from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from sard.io import SardInputError, atomic_write_json, replace_folder
from sard.nets.bounds import out_of_bounds, problems_of
from sard.nets.generator import Generator, GeneratorConfig
from sard.schedule import ScheduleConfig
from sard.store.tensors import file_hash, load_state_checked, load_tensors, read_config, save_tensors
from sard.typed import from_dict

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
BANK_DIR = "bank"                 # a model folder's real-mask bank (sard.masks.write_bank)
MODEL_FORMAT = "sard-generator/1"
SAMPLER_TAGS = {"z_carry": "zc", "refine": "r", "refine_carry": "rc", "part_grain": "pg"}   # ModelConfig's sampling fields, as fingerprints name them
MAX_Z_CARRY = 1e3                 # rho ** (1 / 1000) is 1 to float precision: the same z at every step

# The studio's and sard.export's model when none is named; shipped models lie beside it.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "sard-magnetic-tile"


@dataclass
class ModelConfig:
    """What synthesis needs to rebuild a generator and use it as it was trained. A default is what a
    folder written before that field existed means, so old folders read as they were; the trainer
    writes every field."""
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    defects: list[str] = field(default_factory=list)   # class labels in order; [] = unconditional
    res: int = 64                      # training crop size (native scale)
    fit_crops: float = 0.0             # share of fit crops in training; > 0: large masks paint at their scale
    fit_min_width: float = 0.0         # px: fit crops never thinned a stroke below this
    rcd: bool = True                   # trained (and so sampled) with RCD; False: whole-image DDGAN
    dmg: bool = True
    z_carry: float = 0.0               # the sampler's latent carried across reverse steps (sard.rcd.carry_latent); 0: fresh z
    refine: int = 0                    # native-scale reverse steps after a mask painted at a fit crop's scale (its grain)
    refine_carry: float = 0.0          # how much of the scaled pass's last z the refine pass keeps (1: all); 0: fresh z
    part_grain: float = 0.0            # share of the part's own fine band kept under a mask painted at a fit crop's scale
    split_seed: int = 0                # the data set third it trained on (sard.data.split_defects)
    data: str | None = None            # the data set folder's name
    step: int | None = None
    init: str | None = None            # the model it was fine-tuned from
    train_seconds: float | None = None
    format: str = MODEL_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    def problems(self) -> list[str]:
        return problems_of(out_of_bounds("z_carry", self.z_carry, 0, MAX_Z_CARRY),
                           out_of_bounds("refine", self.refine, 0, self.schedule.num_steps, whole=True),
                           out_of_bounds("refine_carry", self.refine_carry, 0, 1),
                           out_of_bounds("part_grain", self.part_grain, 0, 1))

    @property
    def sampler(self) -> dict:
        """The sampling choices a synthesis depends on besides the weights (SAMPLER_TAGS)."""
        return {k: getattr(self, k) for k in SAMPLER_TAGS}

    @property
    def sampler_tag(self) -> str:
        """The sampler for a fingerprint: e.g. 'zc8-r1'; '' for DDGAN's (every choice 0)."""
        return "-".join(f"{tag}{getattr(self, k):g}" for k, tag in SAMPLER_TAGS.items() if getattr(self, k))

    @classmethod
    def read(cls, folder: str | Path) -> "ModelConfig":
        """The folder's config.json, checked to describe a SARD generator; errors name the file and field."""
        path = Path(folder) / CONFIG_NAME
        raw = read_config(path)
        if raw.get("format") != MODEL_FORMAT or "generator" not in raw:
            raise SardInputError(f"{path}: not a SARD generator config "
                                 f"(expected \"format\": \"{MODEL_FORMAT}\" and a \"generator\" section)")
        return from_dict(cls, raw, str(path))


def synthesis_hash(folder: str | Path, config: ModelConfig) -> str:
    """The weights' hash, tagged with the sampler when it is not DDGAN's: what a model folder's
    syntheses depend on (records and exports keyed on it stay valid when only the sampler changes)."""
    h = file_hash(Path(folder) / WEIGHTS_NAME)
    return f"{h}-{config.sampler_tag}" if config.sampler_tag else h


def sampler_of(hash_: str) -> dict:
    """The sampling choices a synthesis_hash was made with (a choice not tagged: 0, DDGAN's)."""
    found = dict(m.groups() for t in hash_.split("-")[1:] if (m := re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)?)", t)))
    kinds = {f.name: f.type for f in fields(ModelConfig)}   # "int" or "float", as the field is declared
    return {k: (int if kinds[k] == "int" else float)(found.get(tag, "0")) for k, tag in SAMPLER_TAGS.items()}


def resolve_checkpoint(spec: str | Path, flag: str = "--checkpoint") -> Path:
    """A model folder given by path, or by the name of a shipped one (`sard-bottle`)."""
    path = Path(spec)
    if path.is_dir():
        return path
    shipped = DEFAULT_CHECKPOINT.parent
    if len(path.parts) == 1 and (shipped / path).is_dir():
        return shipped / path
    names = sorted(d.name for d in shipped.iterdir() if (d / CONFIG_NAME).is_file()) if shipped.is_dir() else []
    raise SardInputError(f"{flag} {spec}: no such folder and no shipped checkpoint of that name; "
                         f"expected a model folder or one of {names}")


def save_model(folder: str | Path, state: dict[str, torch.Tensor], config: ModelConfig | dict,
               dtype: torch.dtype | None = None) -> None:
    """config.json + model.safetensors (optionally cast, e.g. fp16 for a shipped checkpoint)."""
    folder = Path(folder)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_tensors(folder / WEIGHTS_NAME, state)
    atomic_write_json(folder / CONFIG_NAME, config.to_dict() if isinstance(config, ModelConfig) else config)


def ship(run: str | Path, dest: str | Path, fp16: bool = True) -> Path:
    """Copy what synthesis needs from a training folder: config.json + the EMA generator (fp16 halves it)."""
    run, dest = Path(run), Path(dest)
    if dest.exists() and not dest.is_dir():
        raise SardInputError(f"DEST {dest}: is a file; expected a folder for the model (created if missing)")
    config = ModelConfig.read(run)
    if config.init:      # the run's absolute path names this machine; the shipped model names its parent
        config.init = Path(config.init).name
    state = load_tensors(run / WEIGHTS_NAME)
    load_state_checked(Generator(config.generator), state, run / WEIGHTS_NAME)   # never ship a mismatched pair
    save_model(dest, state, config, dtype=torch.float16 if fp16 else None)
    bank = run / BANK_DIR                  # the real-mask bank (sard.masks.write_bank) travels with the model
    if bank.is_dir():
        tmp = dest / ".bank.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        replace_folder(Path(shutil.copytree(bank, tmp)), dest / BANK_DIR)
    return dest
