"""python -m sard.train: train the SARD synthesizer on real defect images with masks.

Reads top to bottom: multi-process set-up, configuration, data, models and optimizers, resume, logging
and checkpoints, the loop (the step's phases live in sard.steps), then `_train` running them in that order.
Under `torchrun` it trains with DDP (gloo on the CPU, nccl on CUDA), each rank on its data shard; rank 0 alone writes.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from sard.config import TrainConfig, config_from_dict, load_config_file
from sard.data import Sample, Split, defect_types, list_dataset, split_defects
from sard.data.crops import CropSampler, infer_channels, load_examples
from sard.io import SardInputError, atomic_write_bytes, leftover_temps
from sard.masks import write_bank
from sard.memory import check_fits
from sard.nets.discriminator import texture_gain
from sard.nets.generator import Generator
from sard.fast_step import StepNets, step_nets
from sard.finetune import generator_config_from, transfer_generator
from sard.devices import pick_device
from sard.schedule import Schedule
from sard.store.model_folder import BANK_DIR, ModelConfig, resolve_checkpoint, save_model
from sard.store.tensors import load_state_checked
from sard.store.train_state import (TRAIN_STATE_NAME, load_optimizer, load_train_state, optimizer_tensors,
                                     read_train_meta, save_train_state)
from sard.steps import Batch, GapMeter, Models, build_models, ema_decay, ema_update, read_stats, train_step
from sard.train_samples import SampleGrid
from sard.validate import MAX_THREADS, check_defects, whole_number, writable_folder, write_error


# -- multi-process set-up (one block, nanoGPT style) ----------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> Dist:
    """A process group only when torchrun set RANK; gloo on the CPU, nccl on CUDA."""
    if "RANK" not in os.environ:
        return Dist(device=pick_device(device))
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    return Dist(rank, world, dev)


def replicate(run: Run) -> tuple[nn.Module, nn.Module]:
    """G and D as the loop calls them: wrapped in DDP (gradients averaged across ranks) when there are several."""
    if run.d.world == 1:
        return run.nets.G, run.nets.D
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [run.d.device.index] if run.d.device.type == "cuda" else None
    return DDP(run.nets.G, device_ids=ids), DDP(run.nets.D, device_ids=ids)


def gather_rng_states(rng: torch.Generator, sampler: CropSampler, d: Dist) -> list[dict]:
    """Every rank's random state (training noise, global torch, data sampler), collected on all ranks."""
    mine = {"train": rng.get_state().tolist(), "torch": torch.get_rng_state().tolist(), "data": sampler.state()}
    if d.world == 1:
        return [mine]
    everyone: list = [None] * d.world
    dist.all_gather_object(everyone, mine)
    return everyone


def check_replicas(d: Dist, *modules: nn.Module) -> None:
    """DDP keeps every rank's weights equal; say so loudly if they ever drift."""
    if d.world == 1:
        return
    sums = torch.stack([sum(p.detach().double().sum() for p in m.parameters()) for m in modules]).cpu()
    everyone: list = [None] * d.world
    dist.all_gather_object(everyone, sums.tolist())
    if any(x != everyone[0] for x in everyone):
        raise RuntimeError(f"DDP replicas differ across ranks: {everyone}")


# -- configuration --------------------------------------------------------------------------------
def resolve_run_config(cfg: TrainConfig, out: Path, resume: bool) -> tuple[TrainConfig, bool]:
    """The run's config, and whether the run starts fresh. A resumed run takes the stored config: only
    its length and its log, sample and checkpoint cadence may change."""
    if out.exists() and not out.is_dir():
        raise SardInputError(f"--out {out}: is a file; expected a folder for checkpoints and logs")
    meta = read_train_meta(out) if out.is_dir() else None
    if resume and meta is not None:
        # runs from before fit crops stay at native scale, those from before the width floor without it
        stored = {"fit_crops": 0.0, "fit_min_width": 0.0, **meta["config"]}
        cfg = replace(config_from_dict(stored, str(out / TRAIN_STATE_NAME)), iters=cfg.iters,
                      minutes=cfg.minutes, sample_every=cfg.sample_every, ckpt_every=cfg.ckpt_every,
                      log_every=cfg.log_every, fast=cfg.fast, fast_mode=cfg.fast_mode)
    elif meta is not None:
        raise SardInputError(f"--out {out}: already holds a training checkpoint; pass --resume to continue it "
                             f"or choose another folder (nothing was overwritten)")
    elif not cfg.data:
        raise SardInputError(f"--resume: {out} holds no training checkpoint ({TRAIN_STATE_NAME}); "
                             f"pass --data to start a run there")
    cfg.validate()
    return cfg, meta is None


# -- data -----------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    samples: list[Sample]    # the whole data set (the sample grid takes its normal images from it)
    split: Split
    defects: list[str]
    channels: int
    sampler: CropSampler     # this rank's crops of the synthesizer's third


def load_training_data(cfg: TrainConfig, d: Dist, fresh: bool) -> TrainingData:
    """The synthesizer's third of each defect type, this rank's shard of it. The nets in cfg take the
    data's channels and number of defect types."""
    samples = list_dataset(cfg.data)
    all_defects = defect_types(samples)
    defects = check_defects(cfg.defects or all_defects, all_defects, cfg.data)
    split = split_defects(samples, cfg.split_seed)
    channels = infer_channels(split.synth)
    num_classes = len(defects) if len(defects) > 1 else 0
    if cfg.init and fresh:   # fine-tuning keeps the checkpoint's architecture
        cfg.generator = generator_config_from(Path(cfg.init), channels, num_classes)
    cfg.generator = replace(cfg.generator, image_channels=channels, num_classes=num_classes)
    cfg.discriminator = replace(cfg.discriminator, image_channels=channels, dmg=cfg.dmg,
                                num_classes=cfg.generator.num_classes, num_steps=cfg.schedule.num_steps)
    examples, report = load_examples(split.synth[d.rank::d.world], defects, channels)
    if d.main:
        print(f"[sard.train] {cfg.data}: {report.summary()}", file=sys.stderr)
    if fresh and cfg.discriminator.highpass_input:
        # measured once on every rank alike (the whole synthesizer third), then kept in the run's config
        probe = CropSampler(load_examples(split.synth, defects, channels)[0], cfg.res, seed=cfg.seed)
        cfg.discriminator = replace(cfg.discriminator, highpass_gain=texture_gain(probe.batch(64)[0]))
    sampler = CropSampler(examples, cfg.res, seed=cfg.seed * 1000 + d.rank, whole_images=cfg.whole_images,
                          fit_crops=cfg.fit_crops, fit_min_width=cfg.fit_min_width)
    return TrainingData(samples, split, defects, channels, sampler)


# -- models and optimizers ------------------------------------------------------------------------
@dataclass
class Run:
    """What the loop trains and a checkpoint holds, and where the run starts."""
    cfg: TrainConfig
    out: Path
    d: Dist
    data: TrainingData
    schedule: Schedule
    nets: Models               # G, D and their optimizers
    G_ema: Generator           # G's EMA shadow: the weights synthesis uses
    rng: torch.Generator       # the training noise: step indices, x_t, z
    start: int = 0
    seconds_before: float = 0.0


def build_run(cfg: TrainConfig, out: Path, data: TrainingData, d: Dist, fresh: bool) -> Run:
    """G, D and their optimizers, G under --init starting from the checkpoint's reusable weights, G's EMA
    shadow copied from it, the training noise seeded."""
    schedule = Schedule(cfg.schedule)
    nets = build_models(cfg, d.device)
    if cfg.init and fresh:
        report = transfer_generator(nets.G, Path(cfg.init), data.defects)
        if d.main:
            print(f"[sard.train] --init {cfg.init} (step {report['step']}, {report['channels']} channel(s), "
                  f"types {report['defects']}): {report['loaded']} tensors loaded, adapted: "
                  f"{report['adapted'] or 'none'}; fresh: {report['fresh'] or 'none'}; D starts fresh", file=sys.stderr)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / "init.json", json.dumps(report, indent=2).encode())
    G_ema = copy.deepcopy(nets.G).eval().requires_grad_(False)
    rng = torch.Generator(device=d.device).manual_seed(cfg.seed * 1000 + d.rank)
    return Run(cfg, out, d, data, schedule, nets, G_ema, rng)


# -- resume ---------------------------------------------------------------------------------------
def resume_state(run: Run) -> None:
    """The last checkpoint in run.out: weights, optimizer moments, step, clock and this rank's random states."""
    tensors, meta = load_train_state(run.out)
    src = run.out / meta["file"]
    for prefix, module in (("G.", run.nets.G), ("G_ema.", run.G_ema), ("D.", run.nets.D)):
        load_state_checked(module, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, src)
    load_optimizer(run.nets.opt_g, "opt_g", tensors)
    load_optimizer(run.nets.opt_d, "opt_d", tensors)
    run.start, run.seconds_before = meta["step"], meta.get("train_seconds", 0.0)
    # a rank the checkpoint did not have (resumed on more processes) keeps its seeded states
    states = meta["rng"][run.d.rank] if run.d.rank < len(meta["rng"]) else None
    if states is not None:
        run.rng.set_state(torch.tensor(states["train"], dtype=torch.uint8))
        torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))
        run.data.sampler.set_state(states["data"])
    if run.d.main:
        print(f"[sard.train] resuming {run.out} at step {run.start}", file=sys.stderr)


# -- logging, sample grids, checkpoints -----------------------------------------------------------
def start_logging(run: Run) -> SampleGrid:
    """Rank 0's folder made ready: temp files of a run killed mid-write removed, the log cut back to the
    step we continue from; and the fixed sample grid."""
    run.out.mkdir(parents=True, exist_ok=True)
    for tmp in [*leftover_temps(run.out), *leftover_temps(run.out / "samples")]:
        tmp.unlink(missing_ok=True)
    trim_log(run.out / "log.jsonl", run.start)
    data, cfg = run.data, run.cfg
    return SampleGrid(data.samples, data.split, data.defects, data.channels, cfg.res, seed=cfg.seed)


def trim_log(log_path: Path, step: int) -> None:
    """On resume, forget log lines written after the checkpoint we continue from, and a last line
    a kill cut mid-write (said so); any other unreadable line is an error naming it."""
    if not log_path.is_file():
        return
    lines = [ln for ln in log_path.read_bytes().split(b"\n") if ln.strip()]
    keep = []
    for n, ln in enumerate(lines, 1):
        try:
            rec = json.loads(ln)
            rec_step = rec["step"]
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError):
            if n == len(lines):
                print(f"[sard.train] {log_path}: dropped its last line, cut by a kill mid-write", file=sys.stderr)
                break
            raise SardInputError(f"{log_path}: line {n} is not a JSON log record; expected one per line "
                                 f"(move the file away to start a fresh log)") from None
        if rec_step <= step:
            keep.append(ln)
    atomic_write_bytes(log_path, b"".join(ln + b"\n" for ln in keep))


def model_config(cfg: TrainConfig, defects: list[str], step: int, seconds: float) -> ModelConfig:
    """config.json of the model folder: what synthesis needs to rebuild the EMA generator."""
    return ModelConfig(generator=cfg.generator, schedule=cfg.schedule, defects=list(defects), res=cfg.res,
                       fit_crops=cfg.fit_crops, fit_min_width=cfg.fit_min_width, rcd=cfg.rcd, dmg=cfg.dmg,
                       z_carry=cfg.z_carry, refine=cfg.refine, refine_carry=cfg.refine_carry, part_grain=cfg.part_grain,
                       split_seed=cfg.split_seed,
                       data=Path(cfg.data).name, step=step, init=cfg.init or None,
                       train_seconds=round(seconds, 1))


def save_checkpoint(run: Run, step: int, seconds: float, rng_states: list[dict]) -> None:
    """The train state (G, G_ema, D, both optimizers, every rank's random states) and the model folder."""
    cfg, nets = run.cfg, run.nets
    tensors = {**{f"G.{k}": v for k, v in nets.G.state_dict().items()},
               **{f"G_ema.{k}": v for k, v in run.G_ema.state_dict().items()},
               **{f"D.{k}": v for k, v in nets.D.state_dict().items()},
               **optimizer_tensors("opt_g", nets.opt_g), **optimizer_tensors("opt_d", nets.opt_d)}
    save_train_state(run.out, tensors, {"step": step, "config": cfg.to_dict(), "defects": run.data.defects,
                                        "rng": rng_states, "train_seconds": round(seconds, 1)})
    save_model(run.out, run.G_ema.state_dict(), model_config(cfg, run.data.defects, step, seconds))


def carry_bank(out: Path, data: str) -> None:
    """The model folder carries its real-mask bank (the studio and export work without the data set);
    written once; a bank over the size limit is said and skipped, the run goes on."""
    if (out / BANK_DIR).is_dir():
        return
    try:
        write_bank(out, data)
    except SardInputError as e:
        print(f"[sard.train] no mask bank in {out}: {e}", file=sys.stderr)


# -- the loop -------------------------------------------------------------------------------------
def _out_of_time(seconds: float, budget: float, d: Dist) -> bool:
    """Every rank stops at the same step: rank 0's clock decides."""
    if d.world == 1:
        return seconds >= budget
    over = torch.tensor([float(seconds >= budget)], device=d.device)
    dist.broadcast(over, 0)
    return bool(over.item())


def train_loop(run: Run, train_nets: StepNets, grid: SampleGrid | None, budget: float) -> None:
    """Steps run.start..cfg.iters, or until the --minutes budget: D's and G's steps (sard.steps) through
    train_nets (compiled or not), the EMA, then on their cadence a log line, a sample grid and a checkpoint
    (the last step always has all three)."""
    cfg, d, dev, nets = run.cfg, run.d, run.d.device, run.nets
    amp = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")  # noqa: E731
    log_file = open(run.out / "log.jsonl", "a") if d.main else None
    bar = tqdm(range(run.start, cfg.iters), initial=run.start, total=cfg.iters, disable=not d.main,
               desc="sard.train", unit="step", dynamic_ncols=True)
    t_last = t_start = time.perf_counter()
    gaps = GapMeter(run.schedule.num_steps, dev)
    bank_tried = False          # once per process: a bank too large is said once, not at every checkpoint
    for step in bar:
        x0, m, y = run.data.sampler.batch(cfg.batch)
        b = Batch(x0.to(dev), m.to(dev), y.to(dev))
        train_nets.begin_step()
        stats = train_step(train_nets.G, train_nets.D, nets.opt_g, nets.opt_d, run.schedule, b, run.rng, cfg, step, amp, gaps)
        ema_update(run.G_ema, nets.G, ema_decay(cfg, step))
        done = step + 1
        seconds = run.seconds_before + time.perf_counter() - t_start
        last = done == cfg.iters or _out_of_time(seconds, budget, d)
        if d.main and (done % cfg.log_every == 0 or last):
            now, stats = time.perf_counter(), read_stats(stats)
            gap = gaps.fields(cfg.dmg)
            rec = {"step": done, **{k: round(v, 5) for k, v in stats.items()}, **gap,
                   "sec_per_step": round((now - t_last) / (done % cfg.log_every or cfg.log_every), 4)}
            t_last = now
            log_file.write(json.dumps(rec) + "\n")
            log_file.flush()
            bar.set_postfix(d=f"{stats['d_real'] + stats['d_fake']:.3f}", gap0=f"{gap.get('d_gap_img_0', 0):.2f}",
                            g=f"{stats['g_total']:.3f}", mse=f"{stats['g_mse']:.4f}")
        if d.main and (done % cfg.sample_every == 0 or last):
            grid.save(run.out / "samples" / f"step_{done:08d}.png", run.G_ema, run.schedule, dev, cfg.z_carry)
        if done % cfg.ckpt_every == 0 or last:
            check_replicas(d, nets.G, nets.D)
            rng_states = gather_rng_states(run.rng, run.data.sampler, d)
            if d.main:
                save_checkpoint(run, done, seconds, rng_states)
                if not bank_tried:
                    carry_bank(run.out, cfg.data)
                    bank_tried = True
        if last:
            if d.main and done < cfg.iters:
                print(f"[sard.train] --minutes {cfg.minutes:g} reached at step {done}; checkpoint saved", file=sys.stderr)
            break
    if log_file:
        log_file.close()


# -- the whole run --------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, device: str | None = None, backend: str = "inductor") -> Path:
    """backend: torch.compile's for the fast step (the tests' "aot_eager" on the CPU)."""
    out = Path(cfg.out)
    d = setup_distributed(device)
    result = _train(cfg, out, resume, d, backend)
    if d.world > 1:
        # All ranks tear gloo down together: a rank that destroys while another still writes the last
        # checkpoint was seen to abort under load. On an error no teardown (it could deadlock; exit ends it).
        dist.barrier()
        dist.destroy_process_group()
    return result


def _train(cfg: TrainConfig, out: Path, resume: bool, d: Dist, backend: str) -> Path:
    cfg, fresh = resolve_run_config(cfg, out, resume)
    check_fits(cfg, d.device)
    if d.main:
        writable_folder("--out", out)
    torch.manual_seed(cfg.seed + d.rank)
    data = load_training_data(cfg, d, fresh)
    run = build_run(cfg, out, data, d, fresh)
    if not fresh:
        resume_state(run)
    train_nets = step_nets(*replicate(run), cfg.fast, d.device, cfg.fast_mode, backend)
    if d.main and train_nets.compiled:
        print(f"[sard.train] fast step: G and D compiled ({cfg.fast_mode}); the first steps compile", file=sys.stderr)
    grid = start_logging(run) if d.main else None
    budget = cfg.minutes * 60 if cfg.minutes else float("inf")
    if run.seconds_before >= budget:
        if d.main:
            print(f"[sard.train] {out}: already trained {run.seconds_before / 60:.1f} of --minutes {cfg.minutes:g}; "
                  f"nothing to do (raise --minutes to continue)", file=sys.stderr)
        return out
    train_loop(run, train_nets, grid, budget)
    return out


# -- command line ---------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sard.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", help="data set root (MVTec-AD, BTAD or images/ + masks/ folder)")
    p.add_argument("--out", required=True, help="folder for checkpoints, log.jsonl and sample grids")
    p.add_argument("--iters", type=int, help="total training steps (default 2000)")
    p.add_argument("--res", type=int, help="crop size in pixels (default 64)")
    p.add_argument("--minutes", type=float, help="stop after this many minutes of training (resumes included), "
                                                 "with a checkpoint; --iters still caps the steps")
    p.add_argument("--batch", type=int, help="batch size per process (default 4)")
    p.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--no-rcd", action="store_true", help="ablation: fake samples do not keep the real background")
    p.add_argument("--no-dmg", action="store_true", help="ablation: no mask-guided discriminator branch")
    p.add_argument("--defects", help="comma-separated defect types (default: all)")
    p.add_argument("--seed", type=int)
    p.add_argument("--sample-every", type=int, help="steps between sample grids (default 500)")
    p.add_argument("--ckpt-every", type=int, help="steps between checkpoints (default 500)")
    p.add_argument("--log-every", type=int, help="steps between log lines (default 10)")
    p.add_argument("--whole-images", action="store_true", help="train on whole images resized to --res")
    p.add_argument("--fit-crops", type=float, help="share of crops scaled so the whole mask fits them, for masks "
                                                   "larger than --res (default 0.5; 0: native scale only)")
    p.add_argument("--init", help="fine-tune from this checkpoint (a model folder or a shipped name such as "
                                  "sard-magnetic-tile): its generator's reusable weights, adapted to this data's "
                                  "defect types and gray/RGB; the discriminator starts fresh")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--fast", help="auto, on or off: the compiled step (default auto: on CUDA only)")
    p.add_argument("--fast-mode", help="torch.compile mode of the fast step (default: default)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    cfg = load_config_file(a.config) if a.config else TrainConfig()
    flags = {"data": a.data, "out": a.out, "iters": a.iters, "minutes": a.minutes, "res": a.res, "batch": a.batch,
             "seed": a.seed, "fit_crops": a.fit_crops, "fast": a.fast, "fast_mode": a.fast_mode,
             "sample_every": a.sample_every, "ckpt_every": a.ckpt_every, "log_every": a.log_every}
    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    if a.defects:
        cfg.defects = [s.strip() for s in a.defects.split(",") if s.strip()]
    if a.no_rcd:
        cfg.rcd = False
    if a.no_dmg:
        cfg.dmg = False
    if a.init:
        cfg.init = str(resolve_checkpoint(a.init, "--init").resolve())
    if a.whole_images:
        cfg.whole_images = True
    if not cfg.data and not a.resume:
        raise SardInputError("--data: required (a data set root), unless --resume continues a run in --out")
    return cfg


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
        if a.threads is not None:
            torch.set_num_threads(whole_number("--threads", a.threads, 1, MAX_THREADS))
        train(config_from_args(a), resume=a.resume, device=a.device)
    except SardInputError as e:
        print(f"sard.train: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:   # the disk filled or a folder turned read-only mid-run
        print(f"sard.train: failed: {write_error(e, e.filename or a.out)}; the last complete checkpoint is kept, "
              f"continue with --resume",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sard.train: interrupted; the last checkpoint is kept, continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
