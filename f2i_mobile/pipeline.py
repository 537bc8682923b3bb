"""The float reference pipeline: a photo through the torch model, whole image.

The LR image is padded (reflect) to a size the VAE and U-Net accept, run once, and the result
cropped back; alpha is upscaled bicubically beside it. `--scale` other than the model's own is
reached Real-ESRGAN's way: run at the model's scale, then resize.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from f2i_mobile.errors import F2IError
from f2i_mobile.image import Photo
from f2i_mobile.models import F2IDiffSR, build_model, from_pretrained, preset

BUNDLED_MODEL = Path(__file__).parent / "weights" / "mobile"
# Until the tiler runs large photos, a whole-image run is refused past this many output pixels
# (about 3 GiB of activations for the mobile model) rather than being killed for memory.
MAX_WHOLE_OUTPUT_PIXELS = 2048 * 2048


def load_model(path: str | Path | None) -> F2IDiffSR:
    """A checkpoint folder, or the bundled default when `path` is None."""
    if path is not None:
        return from_pretrained(path)
    if BUNDLED_MODEL.is_dir():
        return from_pretrained(BUNDLED_MODEL)
    return build_model(preset("mobile"), seed=0, metadata={
        "origin": "no bundled checkpoint yet: an untrained mobile model built from its config "
                  "with seed 0"})


def lr_multiple(model: F2IDiffSR) -> int:
    """LR sizes must be multiples of this so that scale * size fits the VAE and U-Net."""
    m = model.config.pixel_multiple
    return m // math.gcd(m, model.config.scale)


def pad_reflect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad H x W (x C) at the bottom/right to height x width, mirroring the border (numpy's
    reflect repeats the mirror for pads longer than the image; a 1-pixel edge is repeated)."""
    pads = [(0, height - image.shape[0]), (0, width - image.shape[1])]
    pads += [(0, 0)] * (image.ndim - 2)
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"
    return np.pad(image, pads, mode=mode)


@torch.no_grad()
def upscale_rgb(model: F2IDiffSR, rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 float32 in [0, 1] -> (scale H) x (scale W) x 3, the whole image in one pass."""
    h, w = rgb.shape[:2]
    s = model.config.scale
    if h * w * s * s > MAX_WHOLE_OUTPUT_PIXELS:
        raise F2IError(f"input {w}x{h} gives a {w * s}x{h * s} output, more than the "
                       f"{MAX_WHOLE_OUTPUT_PIXELS / 1e6:.1f} MP this pipeline runs whole")
    m = lr_multiple(model)
    padded = pad_reflect(rgb, -(-h // m) * m, -(-w // m) * m)
    lr = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]
    sr = model(lr)[0].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(sr[: h * s, : w * s])


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    shrink = width < image.shape[1]
    out = cv2.resize(image, (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def output_size(photo: Photo, scale: float) -> tuple[int, int]:
    if not 0 < scale <= 16:
        raise F2IError(f"--scale must be in (0, 16], not {scale}")
    w, h = photo.size
    return max(1, round(w * scale)), max(1, round(h * scale))


def upscale_photo(model: F2IDiffSR, photo: Photo, scale: float | None = None) -> Photo:
    scale = float(scale or model.config.scale)
    width, height = output_size(photo, scale)
    rgb = upscale_rgb(model, photo.rgb)
    if rgb.shape[:2] != (height, width):
        rgb = resize(rgb, width, height)
    alpha = None if photo.alpha is None else resize(photo.alpha, width, height)
    return photo.with_pixels(rgb, alpha)
