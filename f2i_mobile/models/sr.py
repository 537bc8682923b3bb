"""The one-step SR network (OSEDiff form).

    x_up = bicubic(x_LR, scale)                 BicubicUpsample
    z_L  = E_lora(2 x_up - 1) * s               encode (VAE encoder mean, scaled)
    eps  = U_lora(z_L, t*, c),  c = cond(x_LR)  condition, predict
    z_H  = c_z * z_L + c_p * eps                OneStep.update (the DDPM x0 formula at t*)
    x_SR = (D(z_H / s) + 1) / 2                 decode

For epsilon prediction c_z = 1/sqrt(abar_t*), c_p = -sqrt(1 - abar_t*)/sqrt(abar_t*); for
v-prediction c_z = sqrt(abar_t*), c_p = -sqrt(1 - abar_t*).

Images are NCHW float in [0, 1]; the VAE works in [-1, 1] internally.

The `faithdiff` method (`F2IConfig.method`) keeps this form and adds FaithDiff's alignment:
the encoder also gives its LQ features f (`FeatureEncoder`), and inside the U-Net the first
convolution's output h becomes `align(h, f, c)` (`AlignedDenoiser`, `models.align`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from torch import nn

from f2i_mobile.core.errors import F2IError
from f2i_mobile.models.align import AlignmentModule, aligned
from f2i_mobile.models.conditioner import Conditioner
from f2i_mobile.models.config import AlignConfig, F2IConfig


@dataclass(frozen=True)
class OneStep:
    """The constants of the one-step update, `z_H = c_z * z_L + c_p * pred`."""

    timestep: int
    alpha_bar: float
    prediction_type: str
    scaling_factor: float

    @property
    def c_z(self) -> float:
        a = math.sqrt(self.alpha_bar)
        return 1.0 / a if self.prediction_type == "epsilon" else a

    @property
    def c_p(self) -> float:
        a, b = math.sqrt(self.alpha_bar), math.sqrt(1.0 - self.alpha_bar)
        return -b / a if self.prediction_type == "epsilon" else -b

    def update(self, z_l: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return self.c_z * z_l + self.c_p * pred


def one_step_constants(config: F2IConfig) -> OneStep:
    # The noise schedule comes from diffusers, so alpha_bar matches training exactly. Built on
    # the CPU even under a meta-device context (FLOP counting of the big presets).
    with torch.device("cpu"):
        scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type,
        )
    return OneStep(
        timestep=config.timestep,
        alpha_bar=float(scheduler.alphas_cumprod[config.timestep]),
        prediction_type=config.prediction_type,
        scaling_factor=config.vae.scaling_factor,
    )


def _cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys' cubic convolution weights for taps at -1, 0, 1, 2 around a point t in [0, 1);
    a = -0.75 is the coefficient torch's (and OpenCV's) bicubic uses."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


class BicubicUpsample(nn.Module):
    """Exactly `F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)`, written
    as replicate-pad + a fixed grouped 5x5 convolution (one output channel per phase) + pixel
    shuffle. Hand-written because bicubic resize has no lowering on several mobile backends,
    while pad/conv/depth-to-space run everywhere, including NPU delegates."""

    def __init__(self, scale: int, channels: int = 3):
        super().__init__()
        self.scale, self.channels = scale, channels
        taps = torch.zeros(scale, 5, dtype=torch.float64)  # phase r, tap offset -2..2
        for r in range(scale):
            x = (r + 0.5) / scale - 0.5  # source position of output s*k + r, relative to k
            base = math.floor(x)
            for j, w in enumerate(_cubic_weights(x - base)):
                taps[r, base - 1 + j + 2] += w
        kernel = torch.einsum("ri,cj->rcij", taps, taps).reshape(scale * scale, 1, 5, 5)
        self.register_buffer("kernel", kernel.repeat(channels, 1, 1, 1).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")
        x = F.conv2d(x, self.kernel, groups=self.channels)
        return F.pixel_shuffle(x, self.scale)


class OneStepUpdate(nn.Module):
    """`z_H / s` from `z_L` and the U-Net's prediction. Its own module so a quantizer can leave it
    in float: at t* = 999 it multiplies the U-Net's error by |c_p| ~ 14.6."""

    def __init__(self, one_step: OneStep):
        super().__init__()
        self.one_step = one_step

    def forward(self, z_l: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return self.one_step.update(z_l, pred) / self.one_step.scaling_factor


class LatentEncoder(nn.Module):
    """Stage `encoder`: LR in [0, 1] -> unscaled VAE latent (posterior mean) of bicubic(LR)."""

    def __init__(self, upsample: BicubicUpsample, vae: AutoencoderKL):
        super().__init__()
        self.upsample, self.encoder, self.quant_conv = upsample, vae.encoder, vae.quant_conv
        self.latent_channels = vae.config.latent_channels

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x_up = self.upsample(lr).clamp(0.0, 1.0)
        moments = self.encoder(x_up * 2.0 - 1.0)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        return moments[:, : self.latent_channels]


class FeatureEncoder(LatentEncoder):
    """Stage `encoder` of faithdiff: the latent, and the LQ features the alignment module takes:
    the input of the encoder's last convolution (`penultimate`), or the posterior moments
    (`last`). Caught by a pre-hook on that convolution, so the diffusers encoder runs as is."""

    def __init__(self, upsample: BicubicUpsample, vae: AutoencoderKL, features: str):
        super().__init__(upsample, vae)
        self.features = features

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        caught: list[torch.Tensor] = []
        layer = self.quant_conv if self.features == "last" and self.quant_conv is not None \
            else self.encoder.conv_out
        if self.features == "penultimate":
            handle = layer.register_forward_pre_hook(lambda m, args: caught.append(args[0]))
        else:
            handle = layer.register_forward_hook(lambda m, args, out: caught.append(out))
        try:
            latent = super().forward(lr)
        finally:
            handle.remove()
        return latent, caught[0]


class OneStepDenoiser(nn.Module):
    """Stage `unet`: unscaled LR latent + tokens -> unscaled SR latent. Holds every diffusion
    constant: the scaling factor, the fixed timestep t* and the one-step update."""

    def __init__(self, unet: UNet2DConditionModel, one_step: OneStep):
        super().__init__()
        self.unet, self.update = unet, OneStepUpdate(one_step)
        self.s, self.timestep = one_step.scaling_factor, one_step.timestep

    def predict(self, z: torch.Tensor, t: int, tokens: torch.Tensor) -> torch.Tensor:
        return self.unet(z, t, encoder_hidden_states=tokens).sample

    def forward(self, latent: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        z_l = latent * self.s
        return self.update(z_l, self.predict(z_l, self.timestep, tokens))


class AlignedDenoiser(OneStepDenoiser):
    """Stage `unet` of faithdiff: as `OneStepDenoiser`, with the LQ features aligned into the
    U-Net's first activation; the alignment module is part of this graph."""

    def __init__(self, unet: UNet2DConditionModel, align: AlignmentModule, one_step: OneStep):
        super().__init__(unet, one_step)
        self.align = align

    def predict(self, z: torch.Tensor, t: int, features: torch.Tensor, tokens: torch.Tensor,
                ) -> torch.Tensor:
        with aligned(self.unet, self.align, features, tokens):
            return super().predict(z, t, tokens)

    def forward(self, latent: torch.Tensor, features: torch.Tensor, tokens: torch.Tensor,
                ) -> torch.Tensor:
        z_l = latent * self.s
        return self.update(z_l, self.predict(z_l, self.timestep, features, tokens))


class MultiStepDenoiser(nn.Module):
    """Stage `unet` sampled in `steps` U-Net calls (host only, `upscale --steps N`): the LR
    latent taken as the noisy latent at t* (as the one step takes it), then diffusers' DDIM
    with trailing spacing from t* to 0, deterministic (eta 0), so tiles agree. With one step
    DDIM's update is the one-step formula. `on_step(i)` is told each call's index (the graph
    gives each call its own GroupNorm statistics)."""

    def __init__(self, inner: OneStepDenoiser, config: F2IConfig, steps: int):
        super().__init__()
        if config.timestep != config.num_train_timesteps - 1:
            raise F2IError(f"--steps {steps} samples from the last timestep; this model's one "
                           f"step is at t* = {config.timestep}")
        self.inner, self.steps = inner, steps
        self.scheduler = DDIMScheduler(
            num_train_timesteps=config.num_train_timesteps, beta_start=config.beta_start,
            beta_end=config.beta_end, beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type, timestep_spacing="trailing",
            clip_sample=False, set_alpha_to_one=True)
        self.scheduler.set_timesteps(steps)
        self.on_step = _no_step

    def forward(self, latent: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        z = latent * self.inner.s
        for i, t in enumerate(self.scheduler.timesteps):
            self.on_step(i)
            pred = self.inner.predict(z, int(t), *rest)
            z = self.scheduler.step(pred, t, z).prev_sample
        return z / self.inner.s


def _no_step(index: int) -> None:
    pass


class LatentDecoder(nn.Module):
    """Stage `decoder`: unscaled SR latent -> SR image in [0, 1]."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.post_quant_conv, self.decoder = vae.post_quant_conv, vae.decoder

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            latent = self.post_quant_conv(latent)
        return (self.decoder(latent).clamp(-1.0, 1.0) + 1.0) / 2.0


STAGES = ("conditioner", "encoder", "unet", "decoder")


class F2IDiffSR(nn.Module):
    """F2IDiff-SR / Eff-F2IDiff-SR: LR image in [0, 1] -> SR image in [0, 1], one U-Net step.

    The parameters live in `conditioner`, `vae`, `unet` and, for faithdiff, `align` (what
    training and checkpoints see); `stages()` views them as the graphs that export, calibration
    and the tiler run.
    """

    def __init__(self, config: F2IConfig, conditioner: Conditioner, vae: AutoencoderKL,
                 unet: UNet2DConditionModel, metadata: dict | None = None,
                 align: AlignmentModule | None = None):
        super().__init__()
        self.config = config
        self.conditioner = conditioner
        self.vae = vae
        self.unet = unet
        if config.method == "faithdiff" and align is None:
            align = AlignmentModule(config)
        self.align = align if config.method == "faithdiff" else None
        self.upsample = BicubicUpsample(config.scale)
        self.one_step = one_step_constants(config)
        self.metadata = dict(metadata or {})

    def add_alignment(self, align: AlignConfig, seed: int = 0) -> F2IDiffSR:
        """Make this (OSEDiff-form) model a faithdiff one: the config records the method and
        the alignment module, which starts as the identity on the U-Net (zero output)."""
        if self.align is not None:
            raise F2IError("the model already has an alignment module (method faithdiff)")
        self.config = replace(self.config, method="faithdiff", align=align)
        device = next(self.unet.parameters()).device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.align = AlignmentModule(self.config).to(device)
        return self

    def stages(self, steps: int = 1) -> dict[str, nn.Module]:
        """The four stages as modules sharing this model's parameters (built on demand, so they
        follow LoRA merges and weight loads); `steps` above 1 samples the U-Net in that many
        calls (`MultiStepDenoiser`), the one step otherwise."""
        if steps < 1:
            raise F2IError(f"--steps must be at least 1, not {steps}")
        if self.align is None:
            encoder = LatentEncoder(self.upsample, self.vae)
            unet = OneStepDenoiser(self.unet, self.one_step)
        else:
            encoder = FeatureEncoder(self.upsample, self.vae, self.config.align.features)
            unet = AlignedDenoiser(self.unet, self.align, self.one_step)
        if steps > 1:
            unet = MultiStepDenoiser(unet, self.config, steps)
        return {"conditioner": self.conditioner, "encoder": encoder, "unet": unet,
                "decoder": LatentDecoder(self.vae)}

    def denoise(self, lr: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """LR -> the unscaled SR latent: encoder and U-Net wired by the method's signatures."""
        stages = self.stages()
        encoded = stages["encoder"](lr)
        encoded = encoded if isinstance(encoded, tuple) else (encoded,)
        return stages["unet"](*encoded, tokens)

    def condition(self, lr: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        if self.conditioner.input_kind == "text":
            prompts = prompts if prompts is not None else [""] * lr.shape[0]
            return self.conditioner(self.conditioner.tokenize(prompts).to(lr.device))
        return self.conditioner(lr)

    def check_size(self, height: int, width: int) -> None:
        multiple = self.config.pixel_multiple
        if (height * self.config.scale) % multiple or (width * self.config.scale) % multiple:
            raise F2IError(
                f"input {width}x{height} at {self.config.scale}x is not a multiple of {multiple} "
                f"pixels; pad the LR image first (the pipeline does this)")

    def forward(self, lr: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        self.check_size(lr.shape[-2], lr.shape[-1])
        tokens = self.condition(lr, prompts)
        return LatentDecoder(self.vae)(self.denoise(lr, tokens))
