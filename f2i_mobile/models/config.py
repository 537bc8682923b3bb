"""Typed configs for F2IDiff-SR and the named presets.

A model is fully described by an `F2IConfig`: the conditioner (DINOv2 architecture, or a CLIP text
encoder for the T2IDiff baseline), the VAE (diffusers AutoencoderKL), the U-Net (diffusers
UNet2DConditionModel), the LoRA adapters, and the one-step constants (scale, timestep, noise schedule).

Presets (see `PRESETS`):
- `full`:   SD2.1-sized U-Net, cross-attention 1024, DINOv2-large, SD f8d4 VAE (the paper's F2IDiff).
- `eff`:    Eff-F2IDiff, the U-Net's channels and attention head dims reduced (about half the params).
- `mobile`: the bundled default; <= 10 M parameters in all, <= 100 GFLOPs per 512x512 output tile.
- `tiny`:   for tests; every graph runs in well under a second on a CPU.
- `pocket`: `mobile` distilled (`f2i-mobile distill`): LiteED for the VAE, light blocks in place
            of the U-Net's full-resolution ResNets; <= 30 GFLOPs per 512x512 output tile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from f2i_mobile.core.contract import DEFAULT_METHOD, METHODS
from f2i_mobile.core.errors import F2IError

# OSEDiff's LoRA targets: convolutions and attention projections, no norms.
UNET_LORA_TARGETS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut",
    "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
)
VAE_ENCODER_LORA_TARGETS = (
    "conv", "conv1", "conv2", "conv_in", "conv_shortcut", "conv_out",
    "to_k", "to_q", "to_v", "to_out.0",
)


@dataclass(frozen=True)
class ConditionerConfig:
    """The image (DINOv2) or text (CLIP) encoder whose tokens feed the U-Net's cross-attention."""

    kind: str = "dinov2"  # "dinov2" (F2IDiff) or "text" (T2IDiff baseline)
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    mlp_ratio: int = 4
    patch_size: int = 14
    image_size: int = 224  # the LR tile is resized to this before DINOv2
    vocab_size: int = 49408  # text conditioner only
    max_length: int = 77  # text conditioner only

    @property
    def num_tokens(self) -> int:
        if self.kind == "text":
            return self.max_length
        return (self.image_size // self.patch_size) ** 2 + 1  # patch tokens + CLS


@dataclass(frozen=True)
class LiteEDConfig:
    """LiteED: a light encoder/decoder in place of the AutoencoderKL's, keeping its latent space
    (the same latent channels and downsampling, set by the enclosing `VAEConfig`). One entry of
    `channels` per resolution level, full resolution first, as `block_out_channels`."""

    channels: tuple[int, ...] = (16, 32, 64)
    blocks_per_level: int = 1
    norm_num_groups: int = 4
    # "pixel_shuffle": 1x1 convolution + depth-to-space (decoder), space-to-depth + 1x1 conv
    # (encoder); "resize": nearest upsampling + 3x3 conv, and stride-2 3x3 conv.
    resample: str = "pixel_shuffle"

    def __post_init__(self) -> None:
        if self.resample not in ("pixel_shuffle", "resize"):
            raise F2IError(f"LiteED resample must be 'pixel_shuffle' or 'resize', "
                           f"not {self.resample!r}")
        if any(c % self.norm_num_groups for c in self.channels):
            raise F2IError(f"LiteED channels {self.channels} must be multiples of "
                           f"norm_num_groups {self.norm_num_groups}")


@dataclass(frozen=True)
class VAEConfig:
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215
    mid_block_add_attention: bool = True
    # None: diffusers' AutoencoderKL as above; set: LiteED, same latent space, light modules.
    lite: LiteEDConfig | None = None

    def __post_init__(self) -> None:
        if self.lite is not None and len(self.lite.channels) != len(self.block_out_channels):
            raise F2IError(f"LiteED has {len(self.lite.channels)} levels, the VAE's latent "
                           f"space needs {len(self.block_out_channels)} (block_out_channels)")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass(frozen=True)
class UNetConfig:
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    # diffusers' `attention_head_dim` argument, which (for historical reasons) is the head *count*.
    attention_heads: tuple[int, ...] = (5, 10, 20, 20)
    down_block_types: tuple[str, ...] = (
        "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D",
    )
    up_block_types: tuple[str, ...] = (
        "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
    )
    transformer_layers_per_block: int = 1
    norm_num_groups: int = 32
    use_linear_projection: bool = True
    # True replaces spatial self-attention by a second cross-attention, so the U-Net's receptive
    # field is local (convolutions only) and tiles can blend seamlessly; SD-sized U-Nets keep it off.
    only_cross_attention: bool = False
    # diffusers' cross-attention mid block keeps spatial self-attention whatever
    # `only_cross_attention` says; "UNetMidBlock2D" (ResNets only) keeps the field finite.
    mid_block_type: str = "UNetMidBlock2DCrossAttn"
    # Pruned U-Nets (`f2i-mobile distill`): the named ResnetBlock2D modules (e.g.
    # "up_blocks.2.resnets.0") are replaced by light depthwise-separable blocks whose inner
    # width is `light_width` x their output channels; named Transformer2DModel modules
    # (attentions) are removed. The rest stays diffusers' UNet2DConditionModel.
    light_blocks: tuple[str, ...] = ()
    light_width: float = 1.0

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 4
    alpha: int = 8
    unet_targets: tuple[str, ...] = UNET_LORA_TARGETS
    vae_encoder_targets: tuple[str, ...] = VAE_ENCODER_LORA_TARGETS


@dataclass(frozen=True)
class AlignConfig:
    """FaithDiff's alignment module (method `faithdiff` only; `models.align`): the LQ encoder's
    features and the U-Net's first activation -> `convs` ResNet blocks -> a transformer of
    `blocks` layers -> a zero-initialised 1x1 projection added to that activation."""

    width: int = 0  # channels inside the module; 0: the U-Net's first block width
    convs: int = 2  # ResNet blocks
    blocks: int = 1  # transformer layers
    heads: int = 0  # attention heads; 0: the U-Net's first block's
    # Which LQ encoder features: "penultimate" (FaithDiff: before the latent projection) or
    # "last" (its ablation: the encoder's last layer, the posterior moments).
    features: str = "penultimate"

    def __post_init__(self) -> None:
        if self.features not in ("penultimate", "last"):
            raise F2IError(f"align.features must be 'penultimate' or 'last', not "
                           f"{self.features!r}")
        if min(self.width, self.heads, self.convs, self.blocks) < 0:
            raise F2IError("align: width, heads, convs and blocks must not be negative")


@dataclass(frozen=True)
class F2IConfig:
    name: str
    conditioner: ConditionerConfig = field(default_factory=ConditionerConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    cross_attention_dim: int = 1024
    scale: int = 4
    # The one-step forward runs the U-Net once at this fixed timestep (OSEDiff uses 999).
    timestep: int = 999
    prediction_type: str = "epsilon"  # or "v_prediction"
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    tile: int = 128  # default LR tile edge (a 512x512 output tile at 4x)
    # How the SR stage is trained (core.contract.METHODS); `align` is read for faithdiff only.
    method: str = DEFAULT_METHOD
    align: AlignConfig = field(default_factory=AlignConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise F2IError(f"config {self.name}: method must be one of {', '.join(METHODS)}, "
                           f"not {self.method!r}")
        if self.conditioner.kind not in ("dinov2", "text"):
            raise F2IError(f"config {self.name}: conditioner kind must be 'dinov2' or 'text', "
                           f"not {self.conditioner.kind!r}")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise F2IError(f"config {self.name}: prediction_type must be 'epsilon' or "
                           f"'v_prediction', not {self.prediction_type!r}")
        if not 0 <= self.timestep < self.num_train_timesteps:
            raise F2IError(f"config {self.name}: timestep {self.timestep} is outside "
                           f"[0, {self.num_train_timesteps})")
        if self.scale < 1:
            raise F2IError(f"config {self.name}: scale must be a positive integer")

    @property
    def pixel_multiple(self) -> int:
        """Output sizes must be multiples of this (VAE and U-Net downsampling)."""
        return self.vae.downsample * self.unet.downsample

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.method == DEFAULT_METHOD:
            # An OSEDiff config keeps the dict (and hash) it had before FaithDiff existed, so
            # checkpoints, manifests and caches written then still match.
            del data["method"], data["align"]
        return _drop_unset(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """A stable short hash of the architecture and constants (not the weights)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> F2IConfig:
        return _from_dict(cls, data, "config")

    def replace(self, **changes: Any) -> F2IConfig:
        return dataclasses.replace(self, **changes)


# Fields added after the first release, left out of `to_dict` while they hold their default, so
# that every config written before them keeps its hash (exports, calibration sets and caches
# are keyed by it) and older readers still read it.
_ADDED = {("vae", "lite"): None, ("unet", "light_blocks"): (), ("unet", "light_width"): 1.0}


def _drop_unset(data: dict[str, Any]) -> dict[str, Any]:
    for (part, name), default in _ADDED.items():
        value = data[part][name]
        if value == default or (isinstance(value, list | tuple) and tuple(value) == default):
            del data[part][name]
    return data


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise F2IError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise F2IError(f"{where}: unknown field(s) {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        sub = _NESTED.get((cls, name))
        if sub is not None and value is not None:
            kwargs[name] = _from_dict(sub, value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise F2IError(f"{where}: {exc}") from None


_NESTED = {
    (F2IConfig, "conditioner"): ConditionerConfig,
    (F2IConfig, "vae"): VAEConfig,
    (F2IConfig, "unet"): UNetConfig,
    (F2IConfig, "lora"): LoRAConfig,
    (VAEConfig, "lite"): LiteEDConfig,
    (F2IConfig, "align"): AlignConfig,
}


def _full() -> F2IConfig:
    return F2IConfig(name="full")


def _eff() -> F2IConfig:
    # Eff-F2IDiff: channels 320 -> 224 (x0.7, so about half the conv/linear params) and the
    # attention head dim halved (64 -> 32): the same 224/448/896 widths split into 7/14/28 heads.
    return F2IConfig(
        name="eff",
        unet=UNetConfig(block_out_channels=(224, 448, 896, 896), attention_heads=(7, 14, 28, 28)),
    )


def _mobile() -> F2IConfig:
    # Sized against the budget (<= 10 M params, <= 100 GFLOPs per 512x512 output tile); the
    # widest layers sit at the lowest resolution, since the VAE at full resolution dominates FLOPs.
    # The latent is f4 with 16 channels, not SD's f8 with 4: a VAE this small, trained on a CPU
    # in minutes, reconstructs an f8 latent far below bicubic's fidelity (docs/models.md),
    # and an SR network cannot beat the reconstruction ceiling of its own latent space.
    return F2IConfig(
        name="mobile",
        conditioner=ConditionerConfig(
            hidden_size=128, num_hidden_layers=4, num_attention_heads=4, image_size=112,
        ),
        vae=VAEConfig(
            block_out_channels=(16, 32, 64), layers_per_block=1, latent_channels=16,
            norm_num_groups=8, scaling_factor=0.5, mid_block_add_attention=False,
        ),
        unet=UNetConfig(
            block_out_channels=(64, 96, 128),
            layers_per_block=1,
            attention_heads=(2, 3, 4),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=16,
            only_cross_attention=True,
            mid_block_type="UNetMidBlock2D",
        ),
        lora=LoRAConfig(rank=16, alpha=16),
        cross_attention_dim=128,
        # v-prediction keeps the one-step update well conditioned at t* = 999: z_H = a*z_L - b*v
        # with b ~ 1, where epsilon-prediction divides the U-Net's error by sqrt(abar) ~ 0.07.
        # A small U-Net trained briefly from scratch (the bundled default) needs that.
        prediction_type="v_prediction",
    )


def _tiny() -> F2IConfig:
    return F2IConfig(
        name="tiny",
        conditioner=ConditionerConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
            vocab_size=256, max_length=8,
        ),
        vae=VAEConfig(
            block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
            norm_num_groups=4, scaling_factor=0.5, mid_block_add_attention=False,
        ),
        unet=UNetConfig(
            block_out_channels=(16, 32),
            layers_per_block=1,
            attention_heads=(2, 2),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            norm_num_groups=8,
            only_cross_attention=True,
            mid_block_type="UNetMidBlock2D",
        ),
        lora=LoRAConfig(rank=2, alpha=4),
        cross_attention_dim=32,
        tile=16,
    )


def pocket_of(teacher: F2IConfig) -> F2IConfig:
    """The PocketSR student of a teacher config: the same latent space, conditioner and U-Net
    layout, with LiteED in place of the VAE (depthwise-separable blocks, pixel shuffle, the
    teacher's widths capped at 64) and light blocks in place of the ResNets of the U-Net's
    first down block and last two up blocks, at full and half latent resolution, where its
    per-tile FLOPs are (docs/distill.md has the cost table)."""
    unet = teacher.unet
    n = len(unet.block_out_channels)
    light = [f"down_blocks.0.resnets.{i}" for i in range(unet.layers_per_block)]
    for level in (n - 1, n - 2):  # the last two up blocks: full and half latent resolution
        if level >= 0:
            light += [f"up_blocks.{level}.resnets.{i}" for i in range(unet.layers_per_block + 1)]
    vae = teacher.vae
    groups = max(1, min(vae.norm_num_groups, min(vae.block_out_channels) // 2))
    channels = tuple(_round_to(min(c, 64), groups) for c in vae.block_out_channels)
    lite = LiteEDConfig(channels=channels, blocks_per_level=2, norm_num_groups=groups)
    name = "pocket" if teacher.name == "mobile" else f"{teacher.name}-pocket"
    return dataclasses.replace(
        teacher, name=name, vae=dataclasses.replace(vae, lite=lite),
        unet=dataclasses.replace(unet, light_blocks=tuple(light), light_width=1.0))


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def _pocket() -> F2IConfig:
    return pocket_of(_mobile())


PRESETS = {"full": _full, "eff": _eff, "mobile": _mobile, "tiny": _tiny, "pocket": _pocket}


def preset(name: str) -> F2IConfig:
    """The config of a named preset: full, eff, mobile, tiny or pocket."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise F2IError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
