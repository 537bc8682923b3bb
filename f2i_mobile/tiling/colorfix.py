"""Colour alignment of an SR result to its LR input (OSEDiff's fixes).

One-step diffusion SR drifts in colour; both fixes take the colour from `reference`, the LR input
resized to the output size:
- `adain`: per-channel mean and standard deviation of the SR image set to the reference's.
- `wavelet`: the SR image's high frequencies plus the reference's low frequencies, split by a
  5-level a-trous wavelet ([1, 2, 1] / 4 per axis, dilation 2^i), filtered with OpenCV.

Applied per tile (before blending) by the scheduler, or to the whole output by the pipeline when
the output is held in memory. Images are H x W x 3 float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np

from f2i_mobile.core.errors import F2IError

METHODS = ("none", "adain", "wavelet")
LEVELS = 5


def adain(image: np.ndarray, reference: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mu, sd = image.mean(axis=(0, 1)), image.std(axis=(0, 1))
    mu_r, sd_r = reference.mean(axis=(0, 1)), reference.std(axis=(0, 1))
    return (image - mu) / (sd + eps) * sd_r + mu_r


def low_frequency(image: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """The a-trous wavelet's coarsest approximation: [1, 2, 1] / 4 smoothing, separable, with
    the taps 2^i apart at level i (OpenCV's separable filter, reflected borders)."""
    import cv2

    low = np.ascontiguousarray(image, dtype=np.float32)
    for i in range(levels):
        d = 2 ** i
        kernel = np.zeros(2 * d + 1, np.float32)
        kernel[[0, d, 2 * d]] = (0.25, 0.5, 0.25)
        low = cv2.sepFilter2D(low, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
    return low


def wavelet(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`image - low(image) + low(reference)`, with one filtering instead of two: the filter is
    linear (it runs once per output pixel of every tile)."""
    return image - low_frequency(image - reference)


def color_fix(image: np.ndarray, reference: np.ndarray, method: str) -> np.ndarray:
    if method == "none":
        return image
    if method not in METHODS:
        raise F2IError(f"--color-fix must be one of {', '.join(METHODS)}, not {method!r}")
    out = adain(image, reference) if method == "adain" else wavelet(image, reference)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
