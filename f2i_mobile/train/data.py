"""HR training images and the crops cut from them.

A batch is a pure function of (seed, step, rank): `Crops[step]` draws its crops, flips and
degradations from a generator seeded by those three numbers, so a resumed run sees exactly the
batches it would have seen, with no sampler state to save.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from f2i_mobile.errors import F2IError
from f2i_mobile.image import read_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}

# The bundled set: the photographs and textures that ship inside scikit-image (`skimage/data`).
# HELD_OUT is never trained on; `f2i-mobile eval` measures on it. motorcycle_right is the other
# half of the motorcycle_left stereo pair, so it is used for neither.
BUNDLED_TRAIN = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "brick", "grass", "gravel", "moon", "clock", "page", "text", "cell", "colorwheel",
)
HELD_OUT = ("motorcycle_left", "camera", "coins")
BUNDLED = "bundled"  # the --data value that names the bundled set


@dataclass
class HRImage:
    name: str
    pixels: np.ndarray  # H x W x 3 float32 in [0, 1]


def bundled_images(names: tuple[str, ...] = BUNDLED_TRAIN) -> list[HRImage]:
    import skimage.data

    images = []
    for name in names:
        array = getattr(skimage.data, "stereo_motorcycle" if name == "motorcycle_left" else name)()
        if isinstance(array, tuple):
            array = array[0]
        images.append(HRImage(name, _to_rgb_float(np.asarray(array))))
    return images


def folder_images(folder: str | Path) -> list[HRImage]:
    """Every readable image under `folder` (recursive); unreadable ones are skipped with a
    warning that names them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise F2IError(f"--data {folder}: not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file())
    images = []
    for path in tqdm(paths, desc="reading HR images", unit="img", disable=len(paths) < 50):
        try:
            photo = read_image(path)
        except F2IError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        images.append(HRImage(str(path.relative_to(folder)), photo.rgb))
    if not images:
        raise F2IError(f"--data {folder}: no readable PNG, JPEG or TIFF images")
    return images


def load_images(data: str | Path | None) -> list[HRImage]:
    return bundled_images() if data in (None, BUNDLED) else folder_images(data)


def _to_rgb_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    array = array[..., :3]
    scale = 65535.0 if array.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(array, dtype=np.float32) / scale


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size crop with a random flip and 90-degree rotation; images smaller than the
    crop are mirrored up to it."""
    h, w = image.shape[:2]
    if h < size or w < size:
        image = np.pad(image, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)),
                       mode="symmetric")
        h, w = image.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    crop = image[y:y + size, x:x + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(np.rot90(crop, k=int(rng.integers(0, 4))))


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
