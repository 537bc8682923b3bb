"""The typed recipe of a training run (one stage)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from f2i_mobile.core.contract import DEFAULT_METHOD, METHODS
from f2i_mobile.core.errors import F2IError
from f2i_mobile.models.anneal import SHAPES
from f2i_mobile.models.config import AlignConfig
from f2i_mobile.train.data import DataConfig
from f2i_mobile.train.degrade import DegradationConfig

STAGES = ("vae", "fm", "sr", "distill")


@dataclass(frozen=True)
class DistillConfig:
    """PocketSR distillation (`f2i-mobile distill`): a teacher model -> a student with LiteED and
    light U-Net blocks (the student config's `vae.lite` and `unet.light_blocks`).

    Steps [0, lite_steps): LiteED alone learns the teacher VAE's latent space: its encoder the
    teacher encoder's latents of the same LR input, its decoder the HR crop from the teacher
    VAE's own latent of it (pixel L1 + perceptual) and the teacher decoder's image of the teacher
    U-Net's SR latent. Steps [lite_steps, max_steps): the whole student end to end against the
    teacher's output, latents and features and against HR (the SR losses), while the U-Net's
    heavy blocks anneal into their light ones over `anneal_steps`, starting `anneal_start` steps
    into that phase.
    """

    lite_steps: int = 1000
    anneal: bool = True  # False: the light blocks are trained directly (the ablation)
    anneal_start: int = 0
    anneal_steps: int = 2000
    anneal_shape: str = "cosine"
    # LiteED phase
    encoder_weight: float = 1.0  # MSE to the teacher encoder's latent (scaled by s)
    recon_weight: float = 1.0  # L1 to HR of the decoded teacher latent of HR
    decoder_weight: float = 1.0  # L1 to the teacher decoder's image of the teacher's SR latent
    # end-to-end phase (plus TrainConfig's pixel, colour and perceptual SR losses)
    output_weight: float = 1.0  # L1 to the teacher's SR image
    latent_weight: float = 1.0  # MSE to the teacher's SR latent (scaled by s)
    feature_weight: float = 0.1  # multi-layer feature distillation, mean over the pairs
    local_weight: float = 1.0  # each annealed block's light output to its heavy output
    # (teacher layer, student layer) pairs, dotted names in the F2IDiffSR (`unet.up_blocks.1`,
    # `vae.decoder.up_blocks.0`); empty: every U-Net down, mid and up block and every decoder
    # level (`train.distill.default_feature_layers`).
    feature_layers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.lite_steps < 0 or self.anneal_start < 0 or self.anneal_steps < 0:
            raise F2IError("--lite-steps, --anneal-start and --anneal-steps must be >= 0")
        if self.anneal_shape not in SHAPES:
            raise F2IError(f"annealing shape must be cosine or linear, not {self.anneal_shape!r}")


@dataclass(frozen=True)
class TrainConfig:
    stage: str
    max_steps: int = 2000
    batch: int = 8
    crop: int = 128  # HR crop edge; the LR crop is crop / scale
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # 0 turns EMA off
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    num_workers: int = 0
    # accelerate's (no, fp16, bf16), or auto: bf16 on a CUDA GPU, no on a CPU (train.device)
    mixed_precision: str = "auto"
    compile: bool = False  # torch.compile the U-Net(s) on a GPU (train.device)
    # vae
    kl_weight: float = 1e-6
    # fm: the share of samples trained on null tokens (zeros), as Stable Diffusion drops its
    # captions: the unconditional score that the sr stage's guided real score needs.
    cond_dropout: float = 0.1
    # sr: OSEDiff's losses. The perceptual term uses the conditioner's tokens (no pre-trained
    # LPIPS network is available offline); VSD regularises against the frozen foundation U-Net,
    # guided with OSEDiff's classifier-free guidance scale. The colour term is the MSE of 8x8
    # block means, the low frequencies where a colour cast lives.
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.1
    color_weight: float = 1.0
    vsd_weight: float = 0.01
    vsd_cfg: float = 7.5
    # sr: MSE of the one-step latent (scaled) to the frozen VAE encoder's latent of the HR crop.
    # Off by default, as in OSEDiff. A U-Net fine-tuned whole (faithdiff) drifts out of the
    # latents its frozen decoder knows without it (the paper trains on a latent-space diffusion
    # loss), and an 8-bit decoder loses the range it spends (docs/export.md).
    latent_weight: float = 0.0
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # sr: the method (core.contract.METHODS). faithdiff trains its alignment module alone for
    # `align_steps` steps, then the LQ encoder, the alignment module and the U-Net together:
    # whole, or through adapters of rank `lora_rank` on every layer when it is above 0.
    method: str = DEFAULT_METHOD
    align_steps: int = 0
    lora_rank: int = 0
    align: AlignConfig = field(default_factory=AlignConfig)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise F2IError(f"unknown training stage {self.stage!r}; use one of {', '.join(STAGES)}")
        if self.method not in METHODS:
            raise F2IError(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.method != DEFAULT_METHOD and self.stage != "sr":
            raise F2IError(f"--method {self.method} is a way to train the sr stage, not {self.stage}")
        if self.method == DEFAULT_METHOD and (self.align_steps or self.lora_rank):
            raise F2IError("--align-steps and --lora-rank belong to --method faithdiff")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise F2IError(f"--mixed-precision must be auto, no, fp16 or bf16, not "
                           f"{self.mixed_precision!r}")
        if self.latent_weight < 0:
            raise F2IError("--latent-weight must not be negative")
        if self.latent_weight and self.stage != "sr":
            raise F2IError(f"--latent-weight belongs to the sr stage, not {self.stage}")
        if self.align_steps < 0 or self.lora_rank < 0:
            raise F2IError("--align-steps and --lora-rank must not be negative")
        for name in ("max_steps", "batch", "crop", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise F2IError(f"--{name.replace('_', '-')} must be at least 1")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_train_config(stage: str) -> TrainConfig:
    """Each stage's defaults: the VAE and the from-scratch U-Net learn fast at 2e-4 and 1e-4;
    LoRA in the SR stage takes OSEDiff's 5e-5 scaled up for rank-16 adapters on a small net."""
    return {
        "vae": TrainConfig("vae", learning_rate=2e-4),
        "fm": TrainConfig("fm", learning_rate=2e-4, ema_decay=0.999),
        "sr": TrainConfig("sr", learning_rate=2e-4),
        # distill trains whole networks (not adapters) that start from the teacher's weights
        "distill": TrainConfig("distill", learning_rate=1e-4, vsd_weight=0.0),
    }[stage] if stage in STAGES else TrainConfig(stage)
