"""Fidelity of a model on held-out images, the paper's way, with bicubic in the same run, and
the colour cast that PSNR hides.

Protocol (as in OSEDiff/F2IDiff tables): an HR centre crop of 512 (smaller for small images,
kept a multiple of the model's pixel multiple), LR = antialiased bicubic 4x downscale rounded to
8 bits, then PSNR and SSIM on the Y channel (ITU-R BT.601, MATLAB's rgb2ycbcr) after shaving
`scale` pixels at the border. Each image is scored three ways: bicubic upsampling, the model as
it is, and the model with the wavelet colour fix (`tiling.colorfix`, referenced to the LR image
resized as `upscale` resizes it). The cast is `core.fidelity.color_cast` against HR: the largest
per-channel mean difference, in 8-bit levels. LPIPS and DISTS need pre-trained VGG/AlexNet
weights, which cannot be downloaded here; they are reported as unavailable.

The fidelity gate (`gate_failures`): the model's mean PSNR-Y must not fall below bicubic's, and
its mean cast without the colour fix must not exceed `MAX_CAST` levels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from f2i_mobile.core.fidelity import color_cast, score
from f2i_mobile.core.imaging import bicubic_downscale, resize
from f2i_mobile.core.samples import EVAL, HRImage, load_images
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.tiling.colorfix import color_fix

HR_CROP = 512
METHODS = ("bicubic", "model", "model_wavelet")  # the model_wavelet column: with the colour fix
MAX_CAST = 2.0  # 8-bit levels


@dataclass
class Scores:
    psnr: float
    ssim: float
    cast: float


@dataclass
class ImageScore:
    name: str
    hr_size: int
    bicubic: Scores
    model: Scores
    model_wavelet: Scores


def centre_crop(image: np.ndarray, multiple: int) -> np.ndarray:
    h, w = image.shape[:2]
    size = min(HR_CROP, h // multiple * multiple, w // multiple * multiple)
    y, x = (h - size) // 2, (w - size) // 2
    return image[y:y + size, x:x + size]


def scores(out: np.ndarray, hr: np.ndarray, shave: int) -> Scores:
    return Scores(*score(out, hr, shave), color_cast(out, hr))


@torch.no_grad()
def evaluate(model: F2IDiffSR, images: list[HRImage]) -> list[ImageScore]:
    s = model.config.scale
    multiple = max(model.config.pixel_multiple, s)
    results = []
    for image in images:
        hr = centre_crop(image.pixels, multiple)
        lr_image = bicubic_downscale(hr, s)
        lr = torch.from_numpy(lr_image.transpose(2, 0, 1).copy())[None]
        sr = model(lr)[0].permute(1, 2, 0).numpy()
        up = F.interpolate(lr, scale_factor=s, mode="bicubic").clamp(0, 1)[0]
        fixed = color_fix(sr, resize(lr_image, sr.shape[1], sr.shape[0]), "wavelet")
        results.append(ImageScore(image.name, hr.shape[0],
                                  bicubic=scores(up.permute(1, 2, 0).numpy(), hr, s),
                                  model=scores(sr, hr, s), model_wavelet=scores(fixed, hr, s)))
    return results


def eval_images(data: str | None) -> list[HRImage]:
    """A folder of HR images, or for None the bundled evaluation set (`core.samples.EVAL`)."""
    return load_images(data, EVAL)


def means(results: list[ImageScore]) -> dict[str, dict[str, float]]:
    """Each method's mean PSNR-Y, SSIM-Y and cast over the images."""
    return {m: {k: float(np.mean([getattr(getattr(r, m), k) for r in results]))
                for k in ("psnr", "ssim", "cast")} for m in METHODS}


def gate_failures(results: list[ImageScore], max_cast: float = MAX_CAST) -> list[str]:
    """Why the model fails the fidelity gate (empty when it passes): a mean PSNR-Y below
    bicubic's, or a mean colour cast without the colour fix above `max_cast` 8-bit levels."""
    m = means(results)
    failures = []
    if m["model"]["psnr"] < m["bicubic"]["psnr"]:
        failures.append(f"mean PSNR-Y {m['model']['psnr']:.2f} dB is below bicubic's "
                        f"{m['bicubic']['psnr']:.2f} dB")
    if m["model"]["cast"] > max_cast:
        failures.append(f"mean colour cast without the colour fix {m['model']['cast']:.2f} "
                        f"levels exceeds {max_cast:g}")
    return failures


def fidelity_gate(model: F2IDiffSR, images: list[HRImage] | None = None,
                  max_cast: float = MAX_CAST) -> list[str]:
    """Evaluate `model` (default images: the bundled evaluation set) and return why it fails
    the gate; empty when it passes."""
    return gate_failures(evaluate(model, eval_images(None) if images is None else images),
                         max_cast)


def summary(results: list[ImageScore]) -> dict:
    return {"images": [asdict(x) for x in results], "mean": means(results),
            "gate": {"max_cast": MAX_CAST, "failures": gate_failures(results)},
            "lpips": None, "dists": None,
            "note": "LPIPS/DISTS need pre-trained VGG/AlexNet weights, not available offline"}


@torch.no_grad()
def reconstruction_psnr(model: F2IDiffSR, images: list[HRImage]) -> float:
    """Mean PSNR-Y of the VAE's own reconstruction of the HR crops: the ceiling on what the SR
    network can reach through this latent space."""
    multiple = max(model.config.pixel_multiple, model.config.scale)
    values = []
    for image in images:
        hr = centre_crop(image.pixels, multiple)
        x = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None] * 2 - 1
        recon = model.vae.decode(model.vae.encode(x).latent_dist.mean).sample
        out = ((recon[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
        values.append(score(out, hr, model.config.scale)[0])
    return float(np.mean(values))
