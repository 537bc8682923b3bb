"""Training batches: crops of HR images (`core.samples`) and their degraded LR views.

A batch is a pure function of (seed, step, rank): `Crops[step]` draws its crops, flips and
degradations from a generator seeded by those three numbers, so a resumed run sees exactly the
batches it would have seen, with no sampler state to save.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.samples import HRImage, random_crop


class Crops(torch.utils.data.Dataset):
    """Index `step` -> the batch of that step: {"hr": B,3,S,S, "lr": B,3,S/scale,S/scale,
    "caption": names}. `degrade` maps (hr crop, rng) -> lr crop."""

    def __init__(self, images: list[HRImage], crop: int, batch: int, seed: int, degrade,
                 rank: int = 0, length: int = 10**9):
        if not images:
            raise F2IError("no training images")
        self.images, self.crop, self.batch, self.seed = images, crop, batch, seed
        self.degrade, self.rank, self.length = degrade, rank, length
        # Larger images are drawn more often, by the square root of their area, so that one big
        # mostly-black scan (retina, hubble) does not dominate a small set.
        sides = np.array([np.sqrt(im.pixels.shape[0] * im.pixels.shape[1]) for im in images])
        self.weights = sides / sides.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step, self.rank])
        hr, lr, names = [], [], []
        for i in rng.choice(len(self.images), size=self.batch, p=self.weights):
            crop = random_crop(self.images[i].pixels, self.crop, rng)
            hr.append(crop)
            lr.append(self.degrade(crop, rng))
            names.append(Path(self.images[i].name).stem)
        return {"hr": _nchw(hr), "lr": _nchw(lr), "caption": names}


def _nchw(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
