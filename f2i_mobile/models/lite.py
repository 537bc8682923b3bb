"""Light modules for distilled (PocketSR-style) students: LiteED and the U-Net's light blocks.

LiteED replaces the AutoencoderKL's encoder and decoder by depthwise-separable residual blocks
with pixel-(un)shuffle resampling, keeping the teacher's latent space (latent channels,
downsampling), so the teacher's U-Net works on its latents unchanged. A light U-Net block
replaces a diffusers ResnetBlock2D with the same interface (in/out channels, time embedding);
a removed attention passes its input through.

Written by hand because diffusers has no depthwise-separable autoencoder or ResNet block. Every
normalisation is a GroupNorm, so the deployment graphs' statistics contract (`models.norms`:
each GroupNorm's statistics measured once per photo and fed to the tile graphs) holds for the
light modules as it does for diffusers' own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKLOutput
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel, Transformer2DModelOutput
from torch import nn

from f2i_mobile.core.errors import F2IError


class SeparableBlock(nn.Module):
    """x + pointwise(SiLU(GroupNorm(depthwise3x3(x)))): 9c + c^2 multiply-adds per pixel, against
    18c^2 for a ResNet block's two 3x3 convolutions. Depthwise 3x3 and 1x1 convolutions are what
    XNNPACK and the phone NPUs run fastest per FLOP."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm = nn.GroupNorm(groups, channels)
        self.pw = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(F.silu(self.norm(self.dw(x))))


class Resample(nn.Module):
    """Change resolution by 2 and width: `pixel_shuffle` (1x1 conv then depth-to-space, or
    space-to-depth then 1x1 conv: no 3x3 at the larger size) or `resize` (nearest + 3x3 conv up,
    stride-2 3x3 conv down)."""

    def __init__(self, c_in: int, c_out: int, up: bool, kind: str):
        super().__init__()
        self.up, self.kind = up, kind
        if kind == "pixel_shuffle":
            self.proj = nn.Conv2d(c_in, c_out * 4, 1) if up else nn.Conv2d(c_in * 4, c_out, 1)
        else:
            self.proj = nn.Conv2d(c_in, c_out, 3, padding=1, stride=1 if up else 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "pixel_shuffle":
            return F.pixel_shuffle(self.proj(x), 2) if self.up else self.proj(F.pixel_unshuffle(x, 2))
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.proj(x)


def _level(channels: int, blocks: int, groups: int) -> nn.Sequential:
    return nn.Sequential(*(SeparableBlock(channels, groups) for _ in range(blocks)))


class LiteEncoder(nn.Module):
    """Image in [-1, 1] -> latent (the posterior mean's place). `down_blocks[i]` ends at level
    i's resolution after its resampling, as in diffusers' Encoder, so feature-distillation
    pairs can name the same layers in teacher and student."""

    def __init__(self, latent_channels: int, channels: tuple[int, ...], blocks: int, groups: int,
                 resample: str):
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        for i, c in enumerate(channels):
            level = _level(c, blocks, groups)
            if i + 1 < len(channels):
                level.append(Resample(c, channels[i + 1], up=False, kind=resample))
            self.down_blocks.append(level)
        self.norm_out = nn.GroupNorm(groups, channels[-1])
        self.conv_out = nn.Conv2d(channels[-1], latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class LiteDecoder(nn.Module):
    """Latent -> image in [-1, 1]; `up_blocks[i]` at the resolution of diffusers' Decoder's."""

    def __init__(self, latent_channels: int, channels: tuple[int, ...], blocks: int, groups: int,
                 resample: str):
        super().__init__()
        widths = tuple(reversed(channels))
        self.conv_in = nn.Conv2d(latent_channels, widths[0], 3, padding=1)
        self.up_blocks = nn.ModuleList()
        for i, c in enumerate(widths):
            level = _level(c, blocks, groups)
            if i + 1 < len(widths):
                level.append(Resample(c, widths[i + 1], up=True, kind=resample))
            self.up_blocks.append(level)
        self.norm_out = nn.GroupNorm(groups, widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class LiteAutoencoder(ModelMixin, ConfigMixin):
    """LiteED with the attributes the one-step network reads from an AutoencoderKL (`encoder`,
    `decoder`, `quant_conv`, `post_quant_conv`, `config.latent_channels`) and its
    `encode`/`decode` (a deterministic posterior: the mean, unit variance), so the stages,
    graphs, evaluation and the checkpoint format (`save_config` + safetensors) take it as is."""

    @register_to_config
    def __init__(self, latent_channels: int = 4, channels: tuple[int, ...] = (16, 32, 64),
                 blocks_per_level: int = 1, norm_num_groups: int = 4,
                 resample: str = "pixel_shuffle", scaling_factor: float = 1.0):
        super().__init__()
        channels = tuple(channels)
        self.encoder = LiteEncoder(latent_channels, channels, blocks_per_level, norm_num_groups,
                                   resample)
        self.decoder = LiteDecoder(latent_channels, channels, blocks_per_level, norm_num_groups,
                                   resample)
        self.quant_conv = None
        self.post_quant_conv = None

    def encode(self, x: torch.Tensor) -> AutoencoderKLOutput:
        mean = self.encoder(x)
        return AutoencoderKLOutput(
            latent_dist=DiagonalGaussianDistribution(torch.cat([mean, torch.zeros_like(mean)], 1)))

    def decode(self, z: torch.Tensor) -> DecoderOutput:
        return DecoderOutput(sample=self.decoder(z))


class LightResBlock(nn.Module):
    """A ResnetBlock2D's light counterpart with its call signature (x, temb): 1x1 in, GroupNorm,
    SiLU, depthwise 3x3, + time embedding, GroupNorm, SiLU, 1x1 out, + shortcut. The output
    projection starts at zero, so a fresh light block is its shortcut: annealing starts from a
    block that passes its input on rather than from noise."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int | None,
                 width: int, groups: int):
        super().__init__()
        groups = math.gcd(groups, width)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.pw_in = nn.Conv2d(in_channels, width, 1)
        self.norm1 = nn.GroupNorm(groups, width)
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.time_proj = nn.Linear(temb_channels, width) if temb_channels else None
        self.norm2 = nn.GroupNorm(groups, width)
        self.pw_out = nn.Conv2d(width, out_channels, 1)
        nn.init.zeros_(self.pw_out.weight)
        nn.init.zeros_(self.pw_out.bias)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) \
            if in_channels != out_channels else None

    @classmethod
    def like(cls, heavy: ResnetBlock2D, width: float) -> LightResBlock:
        temb = heavy.time_emb_proj.in_features if heavy.time_emb_proj is not None else None
        out = heavy.out_channels
        inner = max(heavy.norm1.num_groups, round(out * width))
        block = cls(heavy.in_channels, out, temb, inner, heavy.norm1.num_groups)
        return block.to(heavy.conv1.weight.device)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs,
                ) -> torch.Tensor:
        h = self.dw(F.silu(self.norm1(self.pw_in(x))))
        if self.time_proj is not None and temb is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.pw_out(F.silu(self.norm2(h)))
        return h + (self.shortcut(x) if self.shortcut is not None else x)


class SkipAttention(nn.Module):
    """A removed Transformer2DModel: its input, in the form the diffusers blocks unpack."""

    def forward(self, hidden_states: torch.Tensor, *args, return_dict: bool = True, **kwargs):
        if return_dict:
            return Transformer2DModelOutput(sample=hidden_states)
        return (hidden_states,)


def light_counterpart(heavy: nn.Module, width: float, name: str) -> nn.Module:
    if isinstance(heavy, ResnetBlock2D):
        return LightResBlock.like(heavy, width)
    if isinstance(heavy, Transformer2DModel):
        return SkipAttention()
    raise F2IError(f"U-Net light block {name!r} is a {type(heavy).__name__}; only ResnetBlock2D "
                   f"(made light) and Transformer2DModel (removed) can be named")


def lighten(unet: nn.Module, names: tuple[str, ...], width: float) -> dict[str, nn.Module]:
    """Replace each named module of `unet` by its light counterpart, in place; returns the
    heavy modules that were replaced, by name."""
    heavy = {}
    for name in names:
        try:
            module = unet.get_submodule(name)
        except AttributeError:
            raise F2IError(f"U-Net light block {name!r}: no such module in this U-Net") from None
        heavy[name] = module
        set_submodule(unet, name, light_counterpart(module, width, name))
    return heavy


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
