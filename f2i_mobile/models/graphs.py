"""The graphs of a model: their specs (the contract's `GraphSpec` with this config's shapes),
their modules (LoRA merged, GroupNorm statistics as inputs), the one-step record, parameters and
FLOPs.

`t` is the LR tile edge. The bicubic upsample sits inside `encoder`; the scaling factor, the fixed
timestep and the one-step update sit inside `unet` alone; latents between graphs are unscaled.
`statistics` runs encoder, U-Net and decoder once per photo on a view of the whole photo and
gives each its GroupNorm statistics (`models.norms`); the tile graphs take them as inputs.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from f2i_mobile.core.contract import FEATURES, GRAPHS, GraphSpec, TensorSpec, graph_io
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import OneStepRecord
from f2i_mobile.models.align import feature_channels
from f2i_mobile.models.config import F2IConfig
from f2i_mobile.models.lora import merge_lora
from f2i_mobile.models.norms import NormSlot, Statistics, WithStats, bind_norms
from f2i_mobile.models.sr import F2IDiffSR, one_step_constants

NORMALIZED = ("encoder", "unet", "decoder")  # the graphs whose GroupNorms take statistics


def graph_specs(config: F2IConfig, tile: int | None = None, batch: int = 1, steps: int = 1,
                ) -> dict[str, GraphSpec]:
    """The graphs' static I/O for an LR tile edge `tile` (default: the config's); `steps`
    above 1 is the host's multi-step U-Net, whose statistics hold one block per call."""
    if config.conditioner.kind != "dinov2":
        raise F2IError("only the DINOv2 conditioner is exported; the text conditioner is the "
                       "T2IDiff training baseline")
    tile = tile or config.tile
    out = tile * config.scale
    if out % config.pixel_multiple:
        raise F2IError(f"tile {tile} at {config.scale}x gives {out} px, not a multiple of "
                       f"{config.pixel_multiple}; choose a tile that is a multiple of "
                       f"{max(1, config.pixel_multiple // config.scale)}")
    c, h = config.vae.latent_channels, out // config.vae.downsample
    tensors = {t.name: t for t in (
        TensorSpec("lr", (batch, 3, tile, tile), "NCHW",
                   "LR tile, RGB in [0, 1] (statistics: the whole photo resized to one tile)",
                   values="unit"),
        TensorSpec("tokens", (batch, config.conditioner.num_tokens, config.cross_attention_dim),
                   "NLC", "conditioner tokens (CLS + patches), projected to cross-attention width"),
        TensorSpec("latent", (batch, c, h, h), "NCHW",
                   "unscaled VAE latent (posterior mean) of bicubic-upsampled LR"),
        TensorSpec(FEATURES, (batch, feature_channels(config), h, h), "NCHW",
                   f"the LQ encoder's {config.align.features}-layer features (faithdiff), "
                   "which the U-Net graph's alignment module takes"),
        TensorSpec("latent_sr", (batch, c, h, h), "NCHW", "unscaled SR latent z_H / s"),
        TensorSpec("sr", (batch, 3, out, out), "NCHW", "SR tile, RGB in [0, 1]", values="unit"),
        *(TensorSpec(f"{g}_stats", (batch, (steps if g == "unet" else 1)
                                    * sum(2 * n.groups for n in slots)), "NC",
                     f"the {g}'s GroupNorm statistics: per norm, G means then G "
                     "variances (manifest tiling.statistics)", values="positive")
          for g, slots in norm_layout(config).items()))}
    aligned = config.method == "faithdiff"
    descriptions = {
        "conditioner": "resize LR to the DINOv2 input, DINOv2, linear projection",
        "statistics": "once per photo: encoder, U-Net and decoder on the whole photo resized to "
                      "one tile, each GroupNorm's statistics recorded",
        "encoder": "bicubic upsample, VAE encoder (LoRA merged), posterior mean"
                   + (", and the LQ features" if aligned else ""),
        "unet": "scale by s, U-Net (LoRA merged) at fixed t*"
                + (" with the alignment module on its first activation" if aligned else "")
                + ", one-step update, unscale",
        "decoder": "VAE decoder, clamp, map [-1, 1] to [0, 1]",
    }
    return {g: GraphSpec(g, descriptions[g], tuple(tensors[n] for n in inputs),
                         tuple(tensors[n] for n in outputs))
            for g, (inputs, outputs) in graph_io(config.method).items()}


@functools.cache
def norm_layout(config: F2IConfig) -> dict[str, tuple[NormSlot, ...]]:
    """Each normalized graph's GroupNorms in packing order (built on the meta device: no
    weights are allocated)."""
    from f2i_mobile.models.checkpoint import build_model

    with torch.device("meta"):
        stages = build_model(config, lora=False).stages()
    return {g: tuple(bind_norms(stages[g]).norms) for g in NORMALIZED}


def example_inputs(spec: GraphSpec, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The spec's example inputs as tensors, in input order."""
    return tuple(torch.from_numpy(a) for a in spec.examples(seed).values())


ATTENTION = ("explicit", "sdpa")


def graph_modules(model: F2IDiffSR, steps: int = 1, attention: str = "explicit",
                  ) -> dict[str, nn.Module]:
    """The graphs as plain eval modules: a copy of the model with every LoRA adapter merged
    (peft merge), so the exported graphs carry no adapter ops, and GroupNorm statistics taken
    as inputs by the tile graphs and measured by `statistics`. `steps` above 1: the U-Net
    sampled in that many calls (host only, never exported). `attention`: the U-Net's and VAE's
    attention as the exporters want it (`set_attention`), or through
    scaled_dot_product_attention (`sdpa`: flash attention on a GPU, the same numbers)."""
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, not {attention!r}")
    merged = copy.deepcopy(model).eval()
    merge_lora(merged.unet)
    merge_lora(merged.vae)
    set_attention(merged, attention)
    for p in merged.parameters():
        p.requires_grad_(False)
    stages = merged.stages(steps)
    slots = {g: bind_norms(stages[g]) for g in NORMALIZED}
    if steps > 1:
        slots["unet"].steps = steps
        stages["unet"].on_step = slots["unet"].at_step
    graphs = {"conditioner": stages["conditioner"],
              "statistics": Statistics(*(stages[g] for g in NORMALIZED), slots),
              **{g: WithStats(stages[g], slots[g]) for g in NORMALIZED}}
    return {name: graphs[name].eval() for name in GRAPHS}


def set_attention(model: F2IDiffSR, attention: str) -> None:
    """`explicit`: the U-Net's and VAE's attention as matmul, softmax, matmul (diffusers'
    `AttnProcessor`), not SDPA (`AttnProcessor2_0`, `sdpa`): the same numbers, but SDPA
    decomposes on export into a "safe" softmax with mask ops (eq, any, where, full_like) that
    XNNPACK does not take, so every attention cut the ExecuTorch graph into more delegate
    partitions with portable kernels between them (bundled U-Net: 52 partitions, 28 without;
    fp32 706 -> 603 ms per tile, docs/export.md). The conditioner keeps SDPA: transformers'
    eager attention builds a mask with `where`, which Core ML's converter refuses, and the
    conditioner runs once per photo, not per tile."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    for part in (model.unet, model.vae):
        if getattr(part, "attn_processors", None):  # LiteED (pocket) has no attention
            part.set_attn_processor(AttnProcessor() if attention == "explicit"
                                    else AttnProcessor2_0())


def one_step_record(config: F2IConfig) -> OneStepRecord:
    """The one-step constants as the manifest writes them, and which graph owns them."""
    step = one_step_constants(config)
    return OneStepRecord(
        graph="unet", timestep=step.timestep, alpha_bar=step.alpha_bar,
        prediction_type=step.prediction_type, scaling_factor=step.scaling_factor,
        c_z=step.c_z, c_p=step.c_p,
        formula="latent_sr = (c_z * (latent * s) + c_p * unet(latent * s, t*, tokens)) / s"
        if config.method == "osediff" else
        "latent_sr = (c_z * (latent * s) + c_p * unet(latent * s, t*, tokens; conv_in output h "
        "-> align(h, lq_features, tokens))) / s")


def count_params(model: F2IDiffSR) -> dict[str, int]:
    """Parameters per graph, counting LoRA as merged (adapter matrices excluded); the
    statistics pass holds the encoder's, U-Net's and decoder's."""
    stages = model.stages()
    params = {name: sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n)
              for name, module in stages.items()}
    return {name: sum(params[g] for g in NORMALIZED) if name == "statistics" else params[name]
            for name in GRAPHS}


@torch.no_grad()
def count_flops(model: F2IDiffSR, tile: int | None = None) -> dict[str, int]:
    """FLOPs (2 x multiply-adds, torch's FLOP counter) per graph for one tile, of the graphs as
    exported (LoRA merged); works on a model on the meta device, so the big presets are counted
    without allocating their weights."""
    specs = graph_specs(model.config, tile)
    device = next(model.parameters()).device
    stages = graph_modules(model)
    flops = {}
    for name in GRAPHS:
        inputs = [x.to(device) for x in example_inputs(specs[name])]
        with FlopCounterMode(display=False) as counter:
            stages[name](*inputs)
        flops[name] = counter.get_total_flops()
    return flops


def described_specs(model: F2IDiffSR, tile: int | None = None, batch: int = 1,
                    ) -> dict[str, GraphSpec]:
    """`graph_specs` with each graph's parameters and FLOPs (per call at this batch) filled in:
    what the manifest records."""
    from dataclasses import replace

    params, flops = count_params(model), count_flops(model, tile)
    return {name: replace(spec, params=params[name], flops=flops[name] * batch)
            for name, spec in graph_specs(model.config, tile, batch).items()}
