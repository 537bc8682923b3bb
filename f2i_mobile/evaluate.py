"""Fidelity of a model on held-out images, the paper's way, with bicubic in the same run.

Protocol (as in OSEDiff/F2IDiff tables): an HR centre crop of 512 (smaller for small images,
kept a multiple of the model's pixel multiple), LR = antialiased bicubic 4x downscale rounded to
8 bits, then PSNR and SSIM on the Y channel (ITU-R BT.601, MATLAB's rgb2ycbcr) after shaving
`scale` pixels at the border. LPIPS and DISTS need pre-trained VGG/AlexNet weights, which cannot
be downloaded here; they are reported as unavailable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from f2i_mobile.core.fidelity import score
from f2i_mobile.core.imaging import bicubic_downscale
from f2i_mobile.core.samples import HELD_OUT, HRImage, load_images
from f2i_mobile.models import F2IDiffSR

HR_CROP = 512


@dataclass
class ImageScore:
    name: str
    hr_size: int
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float


def centre_crop(image: np.ndarray, multiple: int) -> np.ndarray:
    h, w = image.shape[:2]
    size = min(HR_CROP, h // multiple * multiple, w // multiple * multiple)
    y, x = (h - size) // 2, (w - size) // 2
    return image[y:y + size, x:x + size]


@torch.no_grad()
def evaluate(model: F2IDiffSR, images: list[HRImage]) -> list[ImageScore]:
    s = model.config.scale
    multiple = max(model.config.pixel_multiple, s)
    scores = []
    for image in images:
        hr = centre_crop(image.pixels, multiple)
        lr = torch.from_numpy(bicubic_downscale(hr, s).transpose(2, 0, 1).copy())[None]
        sr = model(lr)[0].permute(1, 2, 0).numpy()
        up = F.interpolate(lr, scale_factor=s, mode="bicubic").clamp(0, 1)[0]
        psnr, ssim = score(sr, hr, s)
        bpsnr, bssim = score(up.permute(1, 2, 0).numpy(), hr, s)
        scores.append(ImageScore(image.name, hr.shape[0], psnr, ssim, bpsnr, bssim))
    return scores


def eval_images(data: str | None) -> list[HRImage]:
    return load_images(data, HELD_OUT)


def summary(scores: list[ImageScore]) -> dict:
    mean = {k: float(np.mean([getattr(x, k) for x in scores]))
            for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}
    return {"images": [asdict(x) for x in scores], "mean": mean,
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
