"""Pixel operations shared by the tiler, calibration, evaluation and training: resizing,
padding, the test sets' bicubic degradation, layout changes. Images are H x W x C float32 in
[0, 1]; OpenCV and Pillow do the filtering. Torch-free."""

from __future__ import annotations

import cv2
import numpy as np


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area when shrinking, bicubic when enlarging (OpenCV), clipped to [0, 1]."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrink = width < image.shape[1]
    out = cv2.resize(image, (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def pad_reflect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad H x W (x C) at the bottom/right to height x width, mirroring the border (numpy's
    reflect repeats the mirror for pads longer than the image; a 1-pixel edge is repeated)."""
    pads = [(0, height - image.shape[0]), (0, width - image.shape[1])]
    pads += [(0, 0)] * (image.ndim - 2)
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"
    return np.pad(image, pads, mode=mode)


def to_nchw(images: list[np.ndarray]) -> np.ndarray:
    """H x W x C images -> one N x C x H x W float32 array."""
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2), dtype=np.float32)


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The test sets' degradation: antialiased bicubic (Pillow's, like MATLAB's imresize),
    rounded to 8 bits as a saved LR image would be."""
    from PIL import Image

    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(hr[..., i]), mode="F")
                           .resize((w, h), Image.BICUBIC)) for i in range(hr.shape[2])]
    return (np.round(np.clip(np.stack(channels, axis=2), 0, 1) * 255) / 255).astype(np.float32)
