"""Real-ESRGAN's second-order degradation (Wang et al. 2021): HR -> LR, seedable.

    (blur -> resize -> noise -> JPEG) twice, then resize to the LR size and a sinc filter,
    with the final JPEG before or after that resize.

The filtering, resizing and JPEG are OpenCV's. The blur kernels themselves (generalized Gaussian,
plateau and sinc kernels) are generated here: the only library that ships them is BasicSR, which
is unmaintained and does not import with current torchvision. Ranges and probabilities default
to the paper's `train_realesrgan_x4plus` recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.special import j1

from f2i_mobile.core.imaging import bicubic_downscale

RESIZE_MODES = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
           "plateau_aniso")


@dataclass(frozen=True)
class DegradationOrder:
    """One round of blur -> resize -> noise -> JPEG."""

    blur_prob: float = 1.0
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian shape
    betap: tuple[float, float] = (1.0, 2.0)  # plateau shape
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)  # in 8-bit levels
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_quality: tuple[float, float] = (30.0, 95.0)


@dataclass(frozen=True)
class DegradationConfig:
    scale: int = 4
    # Probability of a plain bicubic downscale instead of the whole pipeline: a fidelity-oriented
    # recipe (PSNR against bicubic-degraded test sets) mixes in clean LR.
    p_bicubic: float = 0.0
    first: DegradationOrder = field(default_factory=DegradationOrder)
    second: DegradationOrder = field(default_factory=lambda: DegradationOrder(
        blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_prob=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2), noise_sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5)))
    final_sinc_prob: float = 0.8


class Degradation:
    """Callable (hr H x W x 3 float32 in [0, 1], rng) -> lr (H/scale x W/scale x 3)."""

    def __init__(self, config: DegradationConfig = DegradationConfig()):
        self.config = config

    def __call__(self, hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        h, w = hr.shape[0] // c.scale, hr.shape[1] // c.scale
        if rng.random() < c.p_bicubic:
            return bicubic_downscale(hr, c.scale)
        img = _order(hr, c.first, rng, scale_from=hr.shape[:2])
        img = _order(img, c.second, rng, scale_from=hr.shape[:2])
        sinc = (_sinc_kernel(int(rng.integers(3, 11)) * 2 + 1, rng.uniform(np.pi / 3, np.pi))
                if rng.random() < c.final_sinc_prob else None)

        def resize_and_sinc(x):
            x = cv2.resize(x, (w, h), interpolation=RESIZE_MODES[rng.integers(3)])
            return _filter(x, sinc) if sinc is not None else x

        if rng.random() < 0.5:
            img = _jpeg(resize_and_sinc(img), rng.uniform(*c.second.jpeg_quality))
        else:
            img = resize_and_sinc(_jpeg(img, rng.uniform(*c.second.jpeg_quality)))
        return np.clip(img, 0.0, 1.0).astype(np.float32)


def _order(img: np.ndarray, o: DegradationOrder, rng: np.random.Generator,
           scale_from: tuple[int, int]) -> np.ndarray:
    if rng.random() < o.blur_prob:
        img = _filter(img, _blur_kernel(o, rng))
    mode = rng.choice(3, p=o.resize_prob)
    factor = (rng.uniform(1.0, o.resize_range[1]) if mode == 0
              else rng.uniform(o.resize_range[0], 1.0) if mode == 1 else 1.0)
    if factor != 1.0:
        size = (max(1, round(img.shape[1] * factor)), max(1, round(img.shape[0] * factor)))
        img = cv2.resize(img, size, interpolation=RESIZE_MODES[rng.integers(3)])
    img = _noise(np.clip(img, 0, 1), o, rng)
    return _jpeg(img, rng.uniform(*o.jpeg_quality))


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def _blur_kernel(o: DegradationOrder, rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(3, 11)) * 2 + 1  # 7 .. 21
    if rng.random() < o.sinc_prob:
        cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        return _sinc_kernel(size, cutoff)
    kind = KERNELS[rng.choice(len(KERNELS), p=o.kernel_prob)]
    sx = rng.uniform(*o.blur_sigma)
    sy = sx if kind.endswith("iso") and not kind.endswith("aniso") else rng.uniform(*o.blur_sigma)
    theta = rng.uniform(-np.pi, np.pi) if kind.endswith("aniso") else 0.0
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    inv_cov = np.linalg.inv(rot @ np.diag([sx * sx, sy * sy]) @ rot.T)
    r = np.arange(size) - size // 2
    grid = np.stack(np.meshgrid(r, r), axis=-1)
    quad = np.einsum("...i,ij,...j->...", grid, inv_cov, grid)  # x^T Sigma^-1 x
    if kind.startswith("generalized"):
        kernel = np.exp(-0.5 * quad ** rng.uniform(*o.betag))
    elif kind.startswith("plateau"):
        kernel = 1.0 / (1.0 + quad ** rng.uniform(*o.betap))
    else:
        kernel = np.exp(-0.5 * quad)
    return kernel / kernel.sum()


def _sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """The ideal circular low-pass of `cutoff` rad/pixel, windowed to size x size (a jinc)."""
    r = np.arange(size) - size // 2
    radius = np.hypot(*np.meshgrid(r, r))
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * j1(cutoff * radius) / (2 * np.pi * radius)
    kernel[size // 2, size // 2] = cutoff ** 2 / (4 * np.pi)
    return kernel / kernel.sum()


def _noise(img: np.ndarray, o: DegradationOrder, rng: np.random.Generator) -> np.ndarray:
    gray = rng.random() < o.gray_noise_prob
    shape = img.shape[:2] + ((1,) if gray else (3,))
    if rng.random() < o.gaussian_noise_prob:
        noise = rng.normal(0.0, rng.uniform(*o.noise_sigma) / 255.0, shape)
    else:
        # Poisson (shot) noise at 8-bit photon counts, scaled as Real-ESRGAN scales it.
        base = img.mean(axis=2, keepdims=True) if gray else img
        noise = (rng.poisson(base * 255.0) / 255.0 - base) * rng.uniform(*o.poisson_scale)
    return np.clip(img + noise.astype(np.float32), 0.0, 1.0)


def _jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    bgr = (np.clip(img, 0, 1)[..., ::-1] * 255.0 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
