"""`f2i-mobile train STAGE`: pick the starting model for a stage, train it, finish it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.samples import load_images
from f2i_mobile.models import (
    F2IConfig,
    F2IDiffSR,
    build_model,
    from_pretrained,
    load_model,
    preset,
)
from f2i_mobile.models.checkpoint import save_pretrained
from f2i_mobile.train.config import TrainConfig
from f2i_mobile.train.data import Crops
from f2i_mobile.train.degrade import Degradation, DegradationConfig
from f2i_mobile.train.inputs import check_inputs
from f2i_mobile.train.loop import train


def model_config(preset_name: str | None, config_file: str | None) -> F2IConfig:
    if config_file:
        try:
            data = json.loads(Path(config_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise F2IError(f"--config {config_file}: {exc}") from None
        return F2IConfig.from_dict(data.get("config", data))
    return preset(preset_name or "mobile")


def starting_model(cfg: TrainConfig, config: F2IConfig, init: str | None,
                   dinov2: str | None, vae: str | None) -> F2IDiffSR:
    """vae: a fresh model (or real VAE weights); fm: a fresh U-Net and conditioner of `config`
    with the VAE (weights, latent scale) of the vae stage's output; sr: the fm stage's output
    (`run_stage` has checked that the stage has what it starts from)."""
    if cfg.stage == "fm" and init:
        trained = load_model(init)
        model = build_model(replace(config, vae=trained.config.vae), seed=cfg.seed, lora=False,
                            dinov2=dinov2)
        model.vae.load_state_dict(trained.vae.state_dict())
        return model
    if init:
        return load_model(init)
    return build_model(config, seed=cfg.seed, lora=False, dinov2=dinov2, vae=vae)


@torch.no_grad()
def fit_latent_scale(model: F2IDiffSR, images, cfg: TrainConfig, batches: int = 8) -> F2IDiffSR:
    """Set the VAE scaling factor to 1/std of its latents, as Stable Diffusion did, so that the
    diffusion stages see unit-variance latents."""
    data = Crops(images, cfg.crop, cfg.batch, cfg.seed + 1, Degradation(DegradationConfig()),
                 config=cfg.data)
    latents = torch.cat([model.vae.encode(data[i]["hr"] * 2 - 1).latent_dist.mean
                         for i in range(batches)])
    factor = round(1.0 / float(latents.std()), 5)
    model.config = replace(model.config, vae=replace(model.config.vae, scaling_factor=factor))
    model.one_step = replace(model.one_step, scaling_factor=factor)
    return model


def run_stage(cfg: TrainConfig, out: str, data: str | None = None, preset_name: str | None = None,
              config_file: str | None = None, init: str | None = None, resume: bool = False,
              dinov2: str | None = None, vae: str | None = None, progress: bool = True) -> Path:
    check_inputs(cfg.stage, init, vae, data)
    config = model_config(preset_name, config_file)
    model = starting_model(cfg, config, init, dinov2, vae)
    images = load_images(data)
    frozen = dinov2 is not None or model.metadata.get("dinov2") == "real"
    if dinov2 is not None:
        model.metadata["dinov2"] = "real"
    method = f" --method {cfg.method}" if cfg.stage == "sr" else ""
    model.metadata["origin"] = (f"f2i-mobile train {cfg.stage}{method}: {cfg.max_steps} steps"
                                + (f" ({cfg.align_steps} aligning)" if cfg.align_steps else "")
                                + f", seed {cfg.seed}, data {data or 'bundled'}")
    final = train(model, cfg, images, out, resume=resume, frozen_conditioner=frozen,
                  progress=progress)
    if cfg.stage == "vae" and vae is None:
        model = fit_latent_scale(from_pretrained(final), images, cfg)
        save_pretrained(model, final)
    return final
