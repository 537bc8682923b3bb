"""Training batches: crops of HR images (`core.samples`) and of generated ones
(`core.synthetic`), colour-augmented, and their degraded LR views.

    source   a photo (drawn by the square root of its area) or, with `synthetic_prob`, an image
             generated on the spot from one of the training families
    crop     a square of crop * k pixels, k in `scale_range`, area-resized to the crop size (the
             same content at several scales), randomly flipped and rotated by 90 degrees
    colour   hue, saturation, gamma, per-channel gain (white balance) and channel order, each
             with its own probability, applied to the HR crop; LR is degraded from that crop
    LR       `degrade(hr, rng)`

A batch is a pure function of (seed, step, rank): `Crops[step]` draws everything from a
generator seeded by those three numbers, so a resumed run sees exactly the batches it would have
seen, with no sampler state to save.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from f2i_mobile.core import synthetic
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.samples import HRImage, random_crop


@dataclass(frozen=True)
class ColorAugment:
    """Colour changes of the HR crop. A model trained on a few photographs learns their colours
    as a prior; these make the LR input the only place colour can come from."""

    hue_prob: float = 0.3
    hue_degrees: float = 180.0  # shift drawn in [-hue_degrees, hue_degrees]
    saturation_prob: float = 0.3
    saturation: tuple[float, float] = (0.5, 1.5)
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.4)
    white_balance_prob: float = 0.3
    channel_gain: tuple[float, float] = (0.8, 1.2)
    permute_prob: float = 0.1


@dataclass(frozen=True)
class DataConfig:
    synthetic_prob: float = 0.25  # share of crops cut from generated images
    scale_range: tuple[float, float] = (1.0, 2.0)  # source pixels per crop pixel
    color: ColorAugment = field(default_factory=ColorAugment)


def augment_color(image: np.ndarray, c: ColorAugment, rng: np.random.Generator) -> np.ndarray:
    """H x W x 3 float32 in [0, 1] -> the same with changed colours, drawn from `rng` (every
    draw is made whether or not it is used, so one change never shifts another's numbers)."""
    hue = rng.uniform(-c.hue_degrees, c.hue_degrees) if rng.random() < c.hue_prob else 0.0
    sat = rng.uniform(*c.saturation) if rng.random() < c.saturation_prob else 1.0
    gamma = rng.uniform(*c.gamma) if rng.random() < c.gamma_prob else 1.0
    gains = rng.uniform(*c.channel_gain, size=3) if rng.random() < c.white_balance_prob \
        else np.ones(3)
    order = rng.permutation(3) if rng.random() < c.permute_prob else np.arange(3)
    out = np.ascontiguousarray(image, dtype=np.float32)
    if hue or sat != 1.0:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # float: H in degrees, S and V in [0, 1]
        hsv[..., 0] = (hsv[..., 0] + hue) % 360.0
        hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0.0, 1.0)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    out = np.clip(out, 0.0, 1.0) ** gamma * gains.astype(np.float32)
    return np.ascontiguousarray(np.clip(out[..., order], 0.0, 1.0), dtype=np.float32)


class Crops(torch.utils.data.Dataset):
    """Index `step` -> the batch of that step: {"hr": B,3,S,S, "lr": B,3,S/scale,S/scale,
    "caption": names}. `degrade` maps (hr crop, rng) -> lr crop."""

    def __init__(self, images: list[HRImage], crop: int, batch: int, seed: int, degrade,
                 rank: int = 0, length: int = 10**9, config: DataConfig = DataConfig()):
        if not images:
            raise F2IError("no training images")
        self.images, self.crop, self.batch, self.seed = images, crop, batch, seed
        self.degrade, self.rank, self.length, self.config = degrade, rank, length, config
        # Larger images are drawn more often, by the square root of their area, so that one big
        # mostly-black scan (retina, hubble) does not dominate a small set.
        sides = np.array([np.sqrt(im.pixels.shape[0] * im.pixels.shape[1]) for im in images])
        self.weights = sides / sides.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step, self.rank])
        hr, lr, names = [], [], []
        for _ in range(self.batch):
            crop, name = self.hr_crop(rng)
            crop = augment_color(crop, self.config.color, rng)
            hr.append(crop)
            lr.append(self.degrade(crop, rng))
            names.append(name)
        return {"hr": _nchw(hr), "lr": _nchw(lr), "caption": names}

    def hr_crop(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """One crop at a random scale, flip and rotation, and the name of its source."""
        k = rng.uniform(*self.config.scale_range)
        if rng.random() < self.config.synthetic_prob:
            family = synthetic.TRAINING_FAMILIES[rng.integers(len(synthetic.TRAINING_FAMILIES))]
            side = round(self.crop * k)
            source, name = synthetic.generate(family, side, rng), family
        else:
            image = self.images[rng.choice(len(self.images), p=self.weights)]
            h, w = image.pixels.shape[:2]
            side = max(self.crop, min(round(self.crop * k), h, w))
            source, name = image.pixels, Path(image.name).stem
        crop = random_crop(source, side, rng)
        if side != self.crop:
            crop = cv2.resize(crop, (self.crop, self.crop), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(crop, dtype=np.float32), name


def _nchw(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
