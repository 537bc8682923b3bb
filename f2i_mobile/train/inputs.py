"""What a training stage needs from its caller, checked before any model or torch import: a
missing `--init` or data folder is one line at once rather than after seconds of imports."""

from __future__ import annotations

from pathlib import Path

from f2i_mobile.core.errors import F2IError


def check_inputs(stage: str, init: str | None, vae: str | None, data: str | None) -> None:
    """sr starts from the fm stage's model; fm from the vae stage's (or real VAE weights); the
    data is a folder of images, or None / 'bundled' for the bundled set."""
    if stage == "sr" and not init:
        raise F2IError("the sr stage needs --init FM_MODEL (the fm stage's OUT/model)")
    if stage == "fm" and not init and vae is None:
        raise F2IError("the fm stage needs --init VAE_MODEL (the vae stage's OUT/model) or "
                       "--vae HF_FOLDER with real VAE weights")
    if data not in (None, "bundled") and not Path(data).is_dir():
        raise F2IError(f"{data}: not a folder")
