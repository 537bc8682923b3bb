"""F2IDiff-SR models: configs, conditioner, VAE, U-Net, LoRA, the one-step network, checkpoints.

This package imports nothing from export, calibration, android_bench, training or the CLI.
"""

from f2i_mobile.models.checkpoint import (
    build_model,
    from_pretrained,
    load_model,
    save_pretrained,
    weights_hash,
)
from f2i_mobile.models.config import PRESETS, F2IConfig, preset
from f2i_mobile.models.lora import merge_lora
from f2i_mobile.models.sr import BicubicUpsample, F2IDiffSR, OneStep, one_step_constants

__all__ = [
    "BicubicUpsample", "F2IConfig", "F2IDiffSR", "OneStep", "PRESETS", "build_model",
    "from_pretrained", "load_model", "merge_lora", "one_step_constants", "preset", "save_pretrained",
    "weights_hash",
]
