"""The VAE: a diffusers AutoencoderKL built from `VAEConfig` or loaded from a local folder."""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL

from f2i_mobile.core.errors import F2IError
from f2i_mobile.models.config import VAEConfig
from f2i_mobile.models.lite import LiteAutoencoder


def build_vae(cfg: VAEConfig) -> AutoencoderKL | LiteAutoencoder:
    if cfg.lite is not None:
        lite = cfg.lite
        return LiteAutoencoder(
            latent_channels=cfg.latent_channels, channels=lite.channels,
            blocks_per_level=lite.blocks_per_level, norm_num_groups=lite.norm_num_groups,
            resample=lite.resample, scaling_factor=cfg.scaling_factor)
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        scaling_factor=cfg.scaling_factor,
        mid_block_add_attention=cfg.mid_block_add_attention,
    )


def load_vae(path: str | Path, cfg: VAEConfig) -> AutoencoderKL:
    """Real VAE weights (e.g. Stable Diffusion's f8d4) from a local diffusers folder: either the
    VAE folder itself or a pipeline folder with a `vae/` subfolder."""
    path = Path(path)
    if (path / "vae" / "config.json").is_file():
        path = path / "vae"
    if not (path / "config.json").is_file():
        raise F2IError(
            f"VAE weights not found at {path}: pass a local diffusers AutoencoderKL folder "
            f"(config.json + diffusion_pytorch_model.safetensors), e.g. the vae/ of "
            f"stabilityai/stable-diffusion-2-1-base; the model hub is not used")
    vae = AutoencoderKL.from_pretrained(path, local_files_only=True, use_safetensors=True)
    if vae.config.latent_channels != cfg.latent_channels:
        raise F2IError(f"VAE at {path} has {vae.config.latent_channels} latent channels, the "
                       f"config expects {cfg.latent_channels}")
    return vae
