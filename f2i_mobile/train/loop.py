"""The training loop: one stage, through accelerate (one CPU, one GPU, or `accelerate launch`
over many), with a progress bar, EMA, periodic atomic checkpoints and exact resume.

    OUT/checkpoints/step-0000500/   model/ (a loadable checkpoint), state.pt, trainer.json
    OUT/model/                      the final model (EMA weights where EMA is on)

A stage with a critic (the sr stage's fake score) is two networks with their own AdamW, LR
schedule and gradient clipping: each step updates the stage, then the critic on what the stage
generated, as OSEDiff does.

A checkpoint's `state.pt` holds the whole stage's tensors, the critic's, and each network's
optimizer and LR schedule, plus the EMA state: only tensors and plain containers, so it loads
with `torch.load(weights_only=True)`. Batches and noise are functions of (seed, step, rank), so
nothing else needs saving.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from f2i_mobile.core.atomic import atomic_dir
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.samples import HRImage
from f2i_mobile.models import F2IDiffSR, save_pretrained
from f2i_mobile.train import device
from f2i_mobile.train.config import TrainConfig
from f2i_mobile.train.data import Crops
from f2i_mobile.train.degrade import Degradation
from f2i_mobile.train.stages import Stage, build_stage

CHECKPOINTS = "checkpoints"


GENERATOR, CRITIC = "generator", "critic"


def train(model: F2IDiffSR, cfg: TrainConfig, images: list[HRImage], out: str | Path,
          resume: bool = False, frozen_conditioner: bool = False,
          progress: bool = True, build: Callable[..., Stage] | None = None) -> Path:
    """Train one stage of `model` for `cfg.max_steps` steps; returns OUT/model. `build(model,
    cfg, frozen_conditioner)` makes the stage (default: the core's stages; distillation passes
    its own, which holds the teacher)."""
    out = Path(out)
    # Distillation leaves parameters out of some steps (the U-Net while LiteED learns alone, a
    # heavy block once annealed away): DDP must be told, or it waits for their gradients.
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] \
        if cfg.stage == "distill" else []
    accelerator = Accelerator(mixed_precision=device.mixed_precision(cfg),
                              kwargs_handlers=handlers)
    torch.manual_seed(cfg.seed)
    stage = (build or build_stage)(model, cfg, frozen_conditioner).train()
    nets = {GENERATOR: stage} | ({CRITIC: stage.critic.train()} if stage.critic else {})
    device.tune(nets.values(), accelerator.device, cfg)
    optimizers = {k: device.optimizer(net.trainable(), cfg, accelerator.device)
                  for k, net in nets.items()}
    schedules = {k: get_scheduler("constant_with_warmup", opt, num_warmup_steps=cfg.warmup_steps)
                 for k, opt in optimizers.items()}
    ema = EMAModel(stage.ema_parameters(), decay=cfg.ema_decay) if cfg.ema_decay else None
    start = load_checkpoint(out, nets, optimizers, schedules, ema, cfg) if resume else 0
    if start >= cfg.max_steps:
        raise F2IError(f"{out} is already at step {start}; raise --max-steps to go on")
    prepared = accelerator.prepare(*nets.values(), *optimizers.values())
    wrapped = dict(zip(nets, prepared[:len(nets)]))
    optimizers = dict(zip(optimizers, prepared[len(nets):]))
    data = Crops(images, cfg.crop, cfg.batch, cfg.seed, Degradation(
        replace(cfg.degradation, scale=model.config.scale)), rank=accelerator.process_index,
        config=cfg.data)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=cfg.num_workers,
                                         sampler=range(start, cfg.max_steps))
    bar = tqdm(total=cfg.max_steps, initial=start, desc=f"train {cfg.stage}", unit="step",
               disable=not (progress and accelerator.is_main_process))
    tic, done = time.perf_counter(), 0
    for step, batch in zip(range(start, cfg.max_steps), loader):
        gen = torch.Generator(accelerator.device).manual_seed(
            ((cfg.seed * 1_000_003 + step) * 1024 + accelerator.process_index) % 2**63)
        batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v
                 for k, v in batch.items()}
        loss, logs = wrapped[GENERATOR](batch, gen)
        update(accelerator, loss, nets[GENERATOR], optimizers[GENERATOR],
               schedules[GENERATOR], cfg.grad_clip, frozen=stage.frozen_at(step))
        if CRITIC in wrapped:
            critic_loss, critic_logs = wrapped[CRITIC](*stage.critic_inputs, gen)
            update(accelerator, critic_loss, nets[CRITIC], optimizers[CRITIC], schedules[CRITIC],
                   cfg.grad_clip)
            logs |= critic_logs
        if ema is not None:
            ema.step(stage.ema_parameters())
        done += 1
        rate = done * cfg.batch * accelerator.num_processes / (time.perf_counter() - tic)
        bar.set_postfix(loss=f"{loss.item():.4f}", **{k: f"{v:.4f}" for k, v in logs.items()},
                        samples_s=f"{rate:.1f}")
        bar.update(1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.max_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(out, step + 1, nets, optimizers, schedules, ema, cfg)
    bar.close()
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(stage.ema_parameters())
        save_pretrained(stage.saved_model().eval(), out / "model")
    return out / "model"


def update(accelerator: Accelerator, loss: torch.Tensor, net, optimizer, schedule,
           grad_clip: float, frozen: list | tuple = ()) -> None:
    """One network's backward, gradient clipping (its own norm) and optimizer step; `frozen`
    parameters lose their gradients first, so this step leaves them as they are."""
    accelerator.backward(loss)
    for p in frozen:
        p.grad = None
    if grad_clip:
        accelerator.clip_grad_norm_(net.trainable(), grad_clip)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)


def save_checkpoint(out: Path, step: int, nets: dict, optimizers: dict, schedules: dict, ema,
                    cfg) -> Path:
    folder = out / CHECKPOINTS / f"step-{step:07d}"
    with atomic_dir(folder) as tmp:
        save_pretrained(nets[GENERATOR].saved_model(), tmp / "model")
        torch.save({"nets": {k: net.state_dict() for k, net in nets.items()},
                    "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
                    "schedules": {k: s.state_dict() for k, s in schedules.items()},
                    "ema": ema.state_dict() if ema is not None else {}}, tmp / "state.pt")
        (tmp / "trainer.json").write_text(json.dumps(
            {"step": step, "train": cfg.to_dict()}, indent=2) + "\n")
    old = sorted((out / CHECKPOINTS).glob("step-*"))[:-cfg.keep_checkpoints]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return folder


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(p for p in (out / CHECKPOINTS).glob("step-*")
                   if (p / "trainer.json").is_file())
    return found[-1] if found else None


def load_checkpoint(out: Path, nets: dict, optimizers: dict, schedules: dict, ema,
                    cfg: TrainConfig) -> int:
    folder = latest_checkpoint(out)
    if folder is None:
        raise F2IError(f"--resume: no checkpoint under {out / CHECKPOINTS}")
    meta = json.loads((folder / "trainer.json").read_text())
    if meta["train"]["stage"] != cfg.stage:
        raise F2IError(f"--resume: {folder} is a {meta['train']['stage']!r} run, not {cfg.stage!r}")
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    if set(state.get("optimizers", {})) != set(optimizers):
        raise F2IError(f"--resume: {folder} was written by an older f2i-mobile (one optimizer "
                       f"state, not one per network: {', '.join(optimizers)}); start the run afresh")
    for k, net in nets.items():
        try:
            net.load_state_dict(state["nets"][k])
        except RuntimeError:
            raise F2IError(f"--resume: {folder} does not fit this run's networks (another model "
                           f"config, teacher or student, or annealing switched); resume with "
                           f"the options it was started with") from None
        optimizers[k].load_state_dict(state["optimizers"][k])
        schedules[k].load_state_dict(state["schedules"][k])
    if ema is not None and state["ema"]:
        ema.load_state_dict(state["ema"])
    return int(meta["step"])
