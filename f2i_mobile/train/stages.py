"""The three training stages. Each is an `nn.Module` whose forward is its loss on one batch, so
accelerate can wrap it whole (DDP sees exactly the parameters the stage trains).

    vae  the autoencoder on HR crops: L1 of the posterior mean's reconstruction + a small KL
    fm   the foundation U-Net from scratch on VAE latents of HR crops, conditioned on the
         conditioner's tokens of the (clean) LR view, or on null tokens (zeros) for a share of
         the samples so that it also learns the unconditional score that guidance needs; the
         conditioner trains with it unless it holds real DINOv2 weights
    sr   the one-step network: LoRA on the U-Net and VAE encoder; pixel + perceptual +
         low-pass colour + VSD (+ the latent term when `latent_weight` is set); its `critic`
         (the fake score) trains with its own optimizer.
         With `--method faithdiff` (`FaithDiffStage`), the same losses train FaithDiff's form:
         the alignment module alone first, then LQ encoder, alignment module and U-Net jointly

A stage's `frozen_at(step)` names trainable parameters that sit out a step (faithdiff's phase
1): they keep requires_grad, so the optimizer and DDP see one fixed set of parameters through
both phases and resume needs nothing but the step, and their gradients are dropped before the
optimizer step (AdamW skips a parameter without a gradient: no update, no weight decay).

A stage's `critic`, where it has one, is a second network trained after each step of the stage
on what that step generated (`critic_inputs`), with its own optimizer, gradient clipping and
loss; it is not a submodule, so that each is wrapped (DDP) and stepped on its own.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from f2i_mobile.core.errors import F2IError
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.lora import (
    add_lora,
    every_layer_lora_config,
    has_lora,
    lora_parameters,
    unet_lora_config,
    vae_encoder_lora_config,
)
from f2i_mobile.models.sr import LatentEncoder
from f2i_mobile.train.config import TrainConfig


def noise_scheduler(model: F2IDiffSR) -> DDPMScheduler:
    c = model.config
    return DDPMScheduler(num_train_timesteps=c.num_train_timesteps, beta_start=c.beta_start,
                         beta_end=c.beta_end, beta_schedule=c.beta_schedule,
                         prediction_type=c.prediction_type)


def lr_view(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The clean LR view of an HR batch (antialiased bicubic), what the conditioner sees in FM."""
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    return F.interpolate(hr, size=size, mode="bicubic", antialias=True).clamp(0, 1)


class Stage(nn.Module):
    name = ""

    def __init__(self, model: F2IDiffSR, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.critic: Critic | None = None
        self.critic_inputs: tuple[torch.Tensor, ...] = ()
        for p in model.parameters():
            p.requires_grad_(False)

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def ema_parameters(self) -> list[nn.Parameter]:
        return self.trainable()

    def saved_model(self) -> F2IDiffSR:
        """The model a checkpoint's `model/` and the run's result hold."""
        return self.model

    def frozen_at(self, step: int) -> list[nn.Parameter]:
        return []

    def forward(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


class VAEStage(Stage):
    name = "vae"

    def __init__(self, model: F2IDiffSR, cfg: TrainConfig):
        super().__init__(model, cfg)
        for p in model.vae.parameters():
            p.requires_grad_(True)

    def forward(self, batch, gen):
        x = batch["hr"] * 2 - 1
        posterior = self.model.vae.encode(x).latent_dist
        # The posterior mean, not a sample: every later stage encodes with the mean, and a small
        # VAE trained briefly learns far faster without unit-variance noise on its latents.
        recon = self.model.vae.decode(posterior.mean).sample
        l1 = (recon - x).abs().mean()
        kl = posterior.kl().mean()
        return l1 + self.cfg.kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}


class FMStage(Stage):
    name = "fm"

    def __init__(self, model: F2IDiffSR, cfg: TrainConfig, train_conditioner: bool = True):
        super().__init__(model, cfg)
        for p in model.unet.parameters():
            p.requires_grad_(True)
        for p in model.conditioner.parameters():
            p.requires_grad_(train_conditioner)
        self.scheduler = noise_scheduler(model)

    def forward(self, batch, gen):
        m, hr = self.model, batch["hr"]
        with torch.no_grad():
            z0 = m.vae.encode(hr * 2 - 1).latent_dist.mean * m.config.vae.scaling_factor
        tokens = condition(m, lr_view(hr, m.config.scale), batch["caption"])
        noise = torch.randn(z0.shape, generator=gen, device=z0.device)
        t = torch.randint(0, m.config.num_train_timesteps, (z0.shape[0],), generator=gen,
                          device=z0.device)
        dropped = torch.rand(z0.shape[0], generator=gen, device=z0.device) < self.cfg.cond_dropout
        tokens = torch.where(dropped.view(-1, 1, 1), torch.zeros_like(tokens), tokens)
        zt = self.scheduler.add_noise(z0, noise, t)
        target = noise if m.config.prediction_type == "epsilon" else \
            self.scheduler.get_velocity(z0, noise, t)
        pred = m.unet(zt, t, encoder_hidden_states=tokens).sample
        loss = F.mse_loss(pred, target)
        return loss, {"mse": loss.item()}


class Critic(nn.Module):
    """A network a stage trains alongside itself: forward(*stage.critic_inputs, gen) -> (loss,
    logs)."""

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class FakeScore(Critic):
    """VSD's fake score: a copy of the foundation U-Net with its own LoRA, trained with the
    diffusion loss on the generator's latents (detached) at its own timestep and noise."""

    def __init__(self, unet: nn.Module, scheduler: DDPMScheduler, prediction_type: str):
        super().__init__()
        self.unet, self.scheduler, self.prediction_type = unet, scheduler, prediction_type

    def x0(self, zt: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return x0_from(self.scheduler, self.prediction_type,
                       self.unet(zt, t, encoder_hidden_states=tokens).sample, zt, t)

    def forward(self, z, tokens, gen):
        z, tokens = z.detach(), tokens.detach()
        n, T = z.shape[0], self.scheduler.config.num_train_timesteps
        noise = torch.randn(z.shape, generator=gen, device=z.device)
        t = torch.randint(0, T, (n,), generator=gen, device=z.device)
        zt = self.scheduler.add_noise(z, noise, t)
        target = noise if self.prediction_type == "epsilon" else \
            self.scheduler.get_velocity(z, noise, t)
        loss = F.mse_loss(self.unet(zt, t, encoder_hidden_states=tokens).sample, target)
        return loss, {"fake": loss.item()}


class SRStage(Stage):
    """OSEDiff's one-step SR training, against the foundation model loaded in `model`.

    The SR adapters are injected into the model's U-Net and VAE encoder; the frozen base U-Net
    (adapters switched off) is the real score, with classifier-free guidance (`vsd_cfg`) between
    the conditioner's tokens and null tokens, and a copy of it with its own adapters, trained on
    the generator's latents, is the fake score of variational score distillation (the critic).
    """

    name = "sr"

    def __init__(self, model: F2IDiffSR, cfg: TrainConfig):
        super().__init__(model, cfg)
        c = model.config
        if has_lora(model.unet) or c.method != "osediff":
            raise F2IError("the sr stage starts from a foundation-model checkpoint (the fm "
                           "stage's output), not one with SR adapters or an alignment module; "
                           "use --resume to continue")
        fake_unet = copy.deepcopy(model.unet)
        # the target of the latent term: the encoder as the decoder knows it, before it trains
        self.hr_encoder = copy.deepcopy(LatentEncoder(nn.Identity(), model.vae)).requires_grad_(
            False) if cfg.latent_weight else None
        self.make_generator(model)
        add_lora(fake_unet, unet_lora_config(c.lora.rank, c.lora.alpha, c.lora.unet_targets))
        for p in lora_parameters(fake_unet):
            p.requires_grad_(True)
        self.scheduler = noise_scheduler(model)
        # Assigned past nn.Module's registration: the fake score is no submodule of the stage.
        object.__setattr__(self, "critic", FakeScore(fake_unet, self.scheduler,
                                                     c.prediction_type))

    def make_generator(self, model: F2IDiffSR) -> None:
        """OSEDiff: adapters on the U-Net and the VAE encoder, the only parameters that train."""
        c = model.config
        add_lora(model.unet, unet_lora_config(c.lora.rank, c.lora.alpha, c.lora.unet_targets))
        add_lora(model.vae, vae_encoder_lora_config(c.lora.rank, c.lora.alpha,
                                                    c.lora.vae_encoder_targets))
        for p in (*lora_parameters(model.unet), *lora_parameters(model.vae)):
            p.requires_grad_(True)

    def ema_parameters(self) -> list[nn.Parameter]:
        return lora_parameters(self.model.unet) + lora_parameters(self.model.vae)

    def forward(self, batch, gen):
        m, cfg, hr, lr = self.model, self.cfg, batch["hr"], batch["lr"]
        stages = m.stages()
        tokens = condition(m, lr, batch["caption"]).detach()
        z_h = m.denoise(lr, tokens)  # unscaled
        sr = stages["decoder"](z_h)
        pixel = F.mse_loss(sr, hr)
        # The low frequencies again on their own: a colour cast is a small per-pixel error but
        # the whole of the low-pass difference.
        color = F.mse_loss(low_pass(sr), low_pass(hr)) if cfg.color_weight else sr.new_zeros(())
        perceptual = F.mse_loss(m.conditioner(sr), m.conditioner(hr).detach()) \
            if cfg.perceptual_weight and m.conditioner.input_kind == "image" else sr.new_zeros(())
        z = z_h * m.config.vae.scaling_factor
        vsd = self.vsd_loss(z, tokens, *self.vsd_draw(z, gen)) if cfg.vsd_weight \
            else z.new_zeros(())
        self.critic_inputs = (z.detach(), tokens)
        loss = cfg.pixel_weight * pixel + cfg.color_weight * color \
            + cfg.perceptual_weight * perceptual + cfg.vsd_weight * vsd
        terms = {"pixel": pixel.item(), "color": color.item(), "perc": perceptual.item(),
                 "vsd": vsd.item()}
        if self.hr_encoder is not None:
            with torch.no_grad():
                target = self.hr_encoder(hr) * m.config.vae.scaling_factor
            latent = F.mse_loss(z, target)
            loss = loss + cfg.latent_weight * latent
            terms["latent"] = latent.item()
        return loss, terms

    def vsd_draw(self, z: torch.Tensor, gen: torch.Generator):
        """VSD's timestep (OSEDiff's 20 .. 980 of 1000) and noise."""
        n, T = z.shape[0], self.model.config.num_train_timesteps
        t = torch.randint(int(0.02 * T), int(0.98 * T), (n,), generator=gen, device=z.device)
        return t, torch.randn(z.shape, generator=gen, device=z.device)

    def vsd_loss(self, z: torch.Tensor, tokens: torch.Tensor, t: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
        """OSEDiff's surrogate: its gradient on z is (x0_fake - x0_real) / w, w the mean
        |z - x0_real| per sample (DMD's normalisation keeps the scale independent of t)."""
        zt = self.scheduler.add_noise(z.detach(), noise, t)
        with torch.no_grad():
            real = self.real_x0(zt, t, tokens)
            fake = self.critic.x0(zt, t, tokens)
            weight = (z.detach() - real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-4)
            grad = (fake - real) / weight
        return F.mse_loss(z, (z - grad).detach())

    def real_x0(self, zt: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The frozen foundation U-Net's x0, guided: uncond + cfg * (cond - uncond), the
        unconditional prediction on null tokens (zeros of the tokens' shape)."""
        with adapters_off(self.model.unet):
            both = self.model.unet(torch.cat([zt, zt]), torch.cat([t, t]),
                                   encoder_hidden_states=torch.cat([torch.zeros_like(tokens),
                                                                    tokens])).sample
        uncond, cond = both.chunk(2)
        pred = uncond + self.cfg.vsd_cfg * (cond - uncond)
        return x0_from(self.scheduler, self.model.config.prediction_type, pred, zt, t)


class FaithDiffStage(SRStage):
    """FaithDiff's recipe in the one-step setting, with OSEDiff's losses (so the two methods
    differ only in what trains): the foundation model gets an alignment module (identity at
    first) fed by the VAE encoder's features, the LQ encoder. Steps below `align_steps` train
    the alignment module alone; then the LQ encoder (VAE encoder and quant_conv), the alignment
    module and the U-Net train jointly, whole or through rank-`lora_rank` adapters on every
    layer. The VAE decoder and the conditioner stay frozen. VSD's real score is a frozen copy
    of the foundation U-Net, since the U-Net itself is fine-tuned."""

    def make_generator(self, model: F2IDiffSR) -> None:
        c, cfg = model.config, self.cfg
        self.real_unet = copy.deepcopy(model.unet).requires_grad_(False)
        model.add_alignment(cfg.align, seed=cfg.seed)
        model.align.requires_grad_(True)
        encoder = (model.vae.encoder, model.vae.quant_conv)
        if cfg.lora_rank:
            add_lora(model.unet, every_layer_lora_config(model.unet, cfg.lora_rank, cfg.lora_rank))
            add_lora(model.vae, vae_encoder_lora_config(cfg.lora_rank, cfg.lora_rank,
                                                        c.lora.vae_encoder_targets))
            joint = lora_parameters(model.unet) + lora_parameters(model.vae)
        else:
            joint = [*model.unet.parameters(),
                     *(p for m in encoder if m is not None for p in m.parameters())]
        for p in joint:
            p.requires_grad_(True)
        self.joint = joint

    def ema_parameters(self) -> list[nn.Parameter]:
        return [*self.model.align.parameters(), *self.joint]

    def frozen_at(self, step: int) -> list[nn.Parameter]:
        """Phase 1 (alignment pre-training): everything but the alignment module sits out."""
        return self.joint if step < self.cfg.align_steps else []

    def real_x0(self, zt, t, tokens):
        both = self.real_unet(torch.cat([zt, zt]), torch.cat([t, t]),
                              encoder_hidden_states=torch.cat([torch.zeros_like(tokens),
                                                               tokens])).sample
        uncond, cond = both.chunk(2)
        pred = uncond + self.cfg.vsd_cfg * (cond - uncond)
        return x0_from(self.scheduler, self.model.config.prediction_type, pred, zt, t)


def x0_from(scheduler: DDPMScheduler, prediction_type: str, pred: torch.Tensor, zt: torch.Tensor,
            t: torch.Tensor) -> torch.Tensor:
    """The clean latent a U-Net's prediction at (zt, t) implies."""
    ab = scheduler.alphas_cumprod.to(zt.device)[t].view(-1, 1, 1, 1)
    if prediction_type == "epsilon":
        return (zt - (1 - ab).sqrt() * pred) / ab.sqrt()
    return ab.sqrt() * zt - (1 - ab).sqrt() * pred


def low_pass(image: torch.Tensor, block: int = 8) -> torch.Tensor:
    """Block means of `block` x `block` pixels: the colour an image has at a coarse scale."""
    return F.avg_pool2d(image, block)


def condition(model: F2IDiffSR, lr: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Tokens for a batch: the LR view for the DINOv2 conditioner; for the T2IDiff baseline's
    text conditioner the image's name stands in for a caption."""
    return model.condition(lr, captions if model.conditioner.input_kind == "text" else None)


def _set_adapters(module: nn.Module, enabled: bool) -> None:
    for layer in module.modules():
        if isinstance(layer, BaseTunerLayer):
            layer.enable_adapters(enabled)


@contextlib.contextmanager
def adapters_off(module: nn.Module):
    _set_adapters(module, False)
    try:
        yield
    finally:
        _set_adapters(module, True)


def build_stage(model: F2IDiffSR, cfg: TrainConfig, frozen_conditioner: bool = False) -> Stage:
    if cfg.stage == "vae":
        return VAEStage(model, cfg)
    if cfg.stage == "fm":
        return FMStage(model, cfg, train_conditioner=not frozen_conditioner)
    if cfg.stage == "distill":
        raise F2IError("the distill stage needs a teacher: run `f2i-mobile distill` "
                       "(f2i_mobile.train.distill.run_distill)")
    return FaithDiffStage(model, cfg) if cfg.method == "faithdiff" else SRStage(model, cfg)
