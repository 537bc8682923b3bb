"""The denoising U-Net: a diffusers UNet2DConditionModel built from `UNetConfig`."""

from __future__ import annotations

from diffusers import UNet2DConditionModel

from f2i_mobile.models.config import UNetConfig
from f2i_mobile.models.lite import lighten


def build_unet(cfg: UNetConfig, latent_channels: int, cross_attention_dim: int,
               ) -> UNet2DConditionModel:
    """diffusers' U-Net; a pruned config's `light_blocks` swapped for their light counterparts
    (such a U-Net's `unet/` folder loads through `load_model`, not diffusers alone)."""
    unet = UNet2DConditionModel(
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=cfg.down_block_types,
        up_block_types=cfg.up_block_types,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=cfg.attention_heads,
        cross_attention_dim=cross_attention_dim,
        transformer_layers_per_block=cfg.transformer_layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        use_linear_projection=cfg.use_linear_projection,
        only_cross_attention=cfg.only_cross_attention,
        mid_block_type=cfg.mid_block_type,
    )
    if cfg.light_blocks:
        lighten(unet, cfg.light_blocks, cfg.light_width)
    return unet
