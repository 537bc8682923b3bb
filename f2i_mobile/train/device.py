"""What a training run does on a CUDA GPU beyond moving there: bf16 autocast by default, TF32
for what stays in fp32, cuDNN's autotuner, a fused AdamW, and `torch.compile` of the U-Net when
asked. Attention is diffusers' default there already, SDPA (flash attention). On a CPU all of
this is left out (and `--compile` is an error).

Not channels_last: measured on an H200 (`benchmarks/gpu.py`, eff foundation training at 512
px, batch 32), it took 68.7 samples/s down to 56.6. The networks' GroupNorms normalise each
group over H, W and its channels, which a channels-last tensor holds strided; the SR graphs on
a GPU keep it, where the tiler's GroupNorms are per-channel multiply-adds (`models.norms`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from f2i_mobile.core.errors import F2IError
from f2i_mobile.train.config import TrainConfig


def mixed_precision(cfg: TrainConfig) -> str:
    """accelerate's mixed precision for this run: `auto` is bf16 where a CUDA GPU takes it."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    gpu = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if gpu else "no"


def tune(nets: Iterable[nn.Module], device: torch.device, cfg: TrainConfig) -> None:
    """Lay the networks out for `device` (before accelerate wraps them). `--compile` off a GPU
    is refused rather than ignored: it would compile nothing the user asked for."""
    if device.type != "cuda":
        if cfg.compile:
            raise F2IError(f"--compile compiles the U-Net for a CUDA GPU; this run is on the "
                           f"{device.type} (no CUDA GPU here)")
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True  # one crop size all run long: pick the fastest convs
    if cfg.compile:
        for net in nets:
            for unet in unets(net):
                unet.compile(dynamic=False)


def unets(net: nn.Module) -> list[nn.Module]:
    """The diffusers U-Nets inside `net`: most of a step's time, one fixed shape each."""
    from diffusers import UNet2DConditionModel

    return [m for m in net.modules() if isinstance(m, UNet2DConditionModel)]


def optimizer(params: list[nn.Parameter], cfg: TrainConfig, device: torch.device,
              ) -> torch.optim.AdamW:
    """AdamW; fused into one kernel on a GPU (the foreach default launches one per tensor)."""
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                             fused=device.type == "cuda")
