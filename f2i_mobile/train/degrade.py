"""Real-ESRGAN's second-order degradation (Wang et al. 2021): HR -> LR, seedable.

    first order:   blur -> resize (relative to HR) -> noise -> JPEG
    second order:  blur -> resize (relative to LR) -> noise
    final step:    [resize to LR + sinc filter, JPEG] in either order; rounded to 8 bits

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
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as OpenCV's and torchvision's gray


@dataclass(frozen=True)
class DegradationOrder:
    """One round of blur -> resize -> noise -> JPEG (the second order's JPEG quality is the final
    step's)."""

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
    """Callable (hr H x W x 3 float32 in [0, 1], rng) -> lr (H/scale x W/scale x 3, on the 8-bit
    grid). The three steps are methods so that each can be checked on its own."""

    def __init__(self, config: DegradationConfig = DegradationConfig()):
        self.config = config

    def __call__(self, hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        if rng.random() < c.p_bicubic:
            return bicubic_downscale(hr, c.scale)
        img = self.first_order(hr, rng)
        img = self.second_order(img, rng, hr.shape[:2])
        return self.final_step(img, rng, hr.shape[:2])

    def first_order(self, hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Blur -> resize (relative to the HR size) -> noise -> JPEG."""
        o = self.config.first
        img = _blur_resize_noise(hr, o, rng, base=hr.shape[:2])
        return _jpeg(img, rng.uniform(*o.jpeg_quality))

    def second_order(self, img: np.ndarray, rng: np.random.Generator,
                     hr_size: tuple[int, int]) -> np.ndarray:
        """Blur -> resize -> noise, without JPEG: the final step's JPEG is this order's, so LR
        sees two JPEG passes, not three. Real-ESRGAN resizes here to (ori_h / scale * factor),
        relative to the LR size, whatever size the first order left."""
        s = self.config.scale
        return _blur_resize_noise(img, self.config.second, rng,
                                  base=(hr_size[0] / s, hr_size[1] / s))

    def final_step(self, img: np.ndarray, rng: np.random.Generator,
                   hr_size: tuple[int, int]) -> np.ndarray:
        """Resize to the LR size + sinc filter, and the second order's JPEG, in either order
        (50/50); rounded to 8 bits either way, as a saved LR image would be."""
        c = self.config
        h, w = hr_size[0] // c.scale, hr_size[1] // c.scale
        sinc = (_sinc_kernel(_kernel_size(rng), rng.uniform(np.pi / 3, np.pi))
                if rng.random() < c.final_sinc_prob else None)
        mode = RESIZE_MODES[rng.integers(3)]
        quality = rng.uniform(*c.second.jpeg_quality)

        def resize_and_sinc(x):
            x = cv2.resize(x, (w, h), interpolation=mode)
            return _filter(x, sinc) if sinc is not None else x

        if rng.random() < 0.5:
            img = _jpeg(resize_and_sinc(img), quality)
        else:
            img = resize_and_sinc(_jpeg(img, quality))
        return (np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def _blur_resize_noise(img: np.ndarray, o: DegradationOrder, rng: np.random.Generator,
                       base: tuple[float, float]) -> np.ndarray:
    """One order without its JPEG; the resize factor scales `base` (h, w), not `img`'s size."""
    if rng.random() < o.blur_prob:
        img = _filter(img, _blur_kernel(o, rng))
    direction = rng.choice(3, p=o.resize_prob)  # up, down, keep
    factor = (rng.uniform(1.0, o.resize_range[1]) if direction == 0
              else rng.uniform(o.resize_range[0], 1.0) if direction == 1 else 1.0)
    mode = RESIZE_MODES[rng.integers(3)]
    size = (max(1, int(base[1] * factor)), max(1, int(base[0] * factor)))  # cv2: (w, h)
    if size != (img.shape[1], img.shape[0]):
        img = cv2.resize(img, size, interpolation=mode)
    return _noise(np.clip(img, 0.0, 1.0), o, rng)


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def _kernel_size(rng: np.random.Generator) -> int:
    return int(rng.integers(3, 11)) * 2 + 1  # odd, 7 .. 21


def shape_beta(beta_range: tuple[float, float], rng: np.random.Generator) -> float:
    """The shape of a generalized or plateau kernel, drawn as Real-ESRGAN draws it: half of the
    time in [lo, 1), half in [1, hi], so that the shapes below 1 (heavy tails) are as common as
    those above, however wide the upper range is."""
    lo, hi = beta_range
    return float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))


def _blur_kernel(o: DegradationOrder, rng: np.random.Generator) -> np.ndarray:
    size = _kernel_size(rng)
    if rng.random() < o.sinc_prob:
        cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        return _sinc_kernel(size, cutoff)
    kind = KERNELS[rng.choice(len(KERNELS), p=o.kernel_prob)]
    aniso = kind.endswith("aniso")
    sx = rng.uniform(*o.blur_sigma)
    sy = rng.uniform(*o.blur_sigma) if aniso else sx
    theta = rng.uniform(-np.pi, np.pi) if aniso else 0.0
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    inv_cov = np.linalg.inv(rot @ np.diag([sx * sx, sy * sy]) @ rot.T)
    r = np.arange(size) - size // 2
    grid = np.stack(np.meshgrid(r, r), axis=-1)
    quad = np.einsum("...i,ij,...j->...", grid, inv_cov, grid)  # x^T Sigma^-1 x
    if kind.startswith("generalized"):
        kernel = np.exp(-0.5 * quad ** shape_beta(o.betag, rng))
    elif kind.startswith("plateau"):
        kernel = 1.0 / (1.0 + quad ** shape_beta(o.betap, rng))
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
    if rng.random() < o.gaussian_noise_prob:
        shape = img.shape[:2] + ((1,) if gray else (3,))
        noise = rng.normal(0.0, rng.uniform(*o.noise_sigma) / 255.0, shape)
    else:
        noise = poisson_noise(img, rng.uniform(*o.poisson_scale), gray, rng)
    return np.clip(img + noise.astype(np.float32), 0.0, 1.0)


def poisson_noise(img: np.ndarray, scale: float, gray: bool,
                  rng: np.random.Generator) -> np.ndarray:
    """Real-ESRGAN's shot noise (BasicSR's generate_poisson_noise): the image (its luma for gray
    noise, then added to every channel) rounded to 8-bit levels, drawn as Poisson counts of
    `levels` photons per unit, where `levels` is the number of distinct 8-bit values it holds
    rounded up to a power of two; the noisy-minus-clean difference times `scale`. H x W x 1 for
    gray noise, H x W x 3 otherwise."""
    base = img @ LUMA[:, None] if gray else img
    base8 = np.round(np.clip(base, 0.0, 1.0) * 255.0)
    distinct = np.count_nonzero(np.bincount(base8.astype(np.int64).ravel(), minlength=256))
    levels = 2.0 ** np.ceil(np.log2(distinct))
    base = base8 / 255.0
    return (rng.poisson(base * levels) / levels - base) * scale


def _jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    bgr = np.round(np.clip(img, 0, 1)[..., ::-1] * 255.0).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
