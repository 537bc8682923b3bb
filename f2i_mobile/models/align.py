"""FaithDiff's alignment module: LQ encoder features -> an addition to the U-Net's first activation.

    x   = conv3x3(features) + conv1x1(h)            h: the U-Net's conv_in output
    x   = ResNet blocks (convs) -> transformer (blocks layers, diffusers Transformer2DModel)
    out = h + proj(x)                               proj: 1x1 convolution, zero-initialised

The LQ encoder is the VAE's own encoder, fine-tuned (it also gives the latent the U-Net starts
from, so one encoder pass serves both). Its features are the activation before its last
convolution (`penultimate`: the encoder's widest channels at latent resolution) or the posterior
moments that convolution makes (`last`, FaithDiff's ablation).

`proj` starts at zero, so a fresh module is the identity on `h`: the foundation U-Net's
behaviour is untouched when alignment training starts, and the module only moves it as far as
training asks (the ControlNet trick). The 1x1 projection is FaithDiff's final linear layer,
applied per position.

The transformer attends to the conditioner's tokens only when the U-Net does
(`UNetConfig.only_cross_attention`, the small presets): spatial self-attention would make every
latent pixel of a tile depend on the whole tile, and tiles could not agree in their overlaps.

Hand-written (from diffusers blocks) because no library ships FaithDiff's alignment module.
"""

from __future__ import annotations

import contextlib

import torch
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from f2i_mobile.core.errors import F2IError
from f2i_mobile.models.config import F2IConfig


def feature_channels(config: F2IConfig) -> int:
    """Channels of the LQ features the encoder graph gives for this config."""
    if config.align.features == "penultimate":
        return config.vae.block_out_channels[-1]
    return 2 * config.vae.latent_channels  # the posterior moments: mean and log-variance


class AlignmentModule(nn.Module):
    def __init__(self, config: F2IConfig):
        super().__init__()
        a, u = config.align, config.unet
        embed = u.block_out_channels[0]  # conv_in's output channels
        width = a.width or embed
        heads = a.heads or u.attention_heads[0]
        groups = u.norm_num_groups
        if width % heads or width % groups:
            raise F2IError(f"align.width {width} must be a multiple of its {heads} heads and of "
                           f"the U-Net's {groups} norm groups")
        self.feature_in = nn.Conv2d(feature_channels(config), width, 3, padding=1)
        self.latent_in = nn.Conv2d(embed, width, 1)
        self.convs = nn.ModuleList(
            ResnetBlock2D(in_channels=width, out_channels=width, temb_channels=None,
                          groups=groups) for _ in range(a.convs))
        self.transformer = Transformer2DModel(
            num_attention_heads=heads, attention_head_dim=width // heads, in_channels=width,
            num_layers=a.blocks, cross_attention_dim=config.cross_attention_dim,
            norm_num_groups=groups, use_linear_projection=True,
            only_cross_attention=u.only_cross_attention) if a.blocks else None
        self.proj = nn.Conv2d(width, embed, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, features: torch.Tensor, tokens: torch.Tensor,
                ) -> torch.Tensor:
        x = self.feature_in(features) + self.latent_in(h)
        for block in self.convs:
            x = block(x, None)
        if self.transformer is not None:
            x = self.transformer(x, encoder_hidden_states=tokens, return_dict=False)[0]
        return h + self.proj(x)


@contextlib.contextmanager
def aligned(unet: nn.Module, align: AlignmentModule, features: torch.Tensor,
            tokens: torch.Tensor):
    """While inside, the U-Net's conv_in output goes through the alignment module. A forward
    hook, not a replaced conv_in: the U-Net keeps its diffusers module tree and weight names
    (its folder loads in diffusers as it is, LoRA targets stay where peft put them), and
    torch.export traces through the hook like through any Python in forward."""
    handle = unet.conv_in.register_forward_hook(
        lambda module, args, output: align(output, features, tokens))
    try:
        yield
    finally:
        handle.remove()
