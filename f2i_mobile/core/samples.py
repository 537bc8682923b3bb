"""Images to learn, calibrate and evaluate on, and the crops cut from them.

The bundled sets are scikit-image's own photographs and textures (`skimage/data`), split so
that no image is in two of them: `TRAIN` for the training core, `CALIBRATION` (held in, a
subset of TRAIN) for post-training quantization, `HELD_OUT` for `f2i-mobile eval` and the
quantization check. `EVAL`, what `f2i-mobile eval` scores, is HELD_OUT plus generated images
(`core.synthetic`) from a family training never draws (`patches`) and from generators training
never creates. Photos bundled with other packages are never used here. Torch-free.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from f2i_mobile.core import synthetic
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.image import read_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}

# Every colour photograph and texture scikit-image ships without extra downloads, except the
# held-out ones; motorcycle_right is the other half of the motorcycle_left stereo pair: in no
# set. (chelsea is also `cat`; the chessboards, `horse` and the microscopy stacks are left out.)
TRAIN = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "brick", "grass", "gravel", "moon", "clock", "page", "text", "cell", "colorwheel",
    "logo",
)
# Natural colour, faces, fur, stars, stain, fine textures.
CALIBRATION = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "brick", "grass", "gravel", "retina",
)
HELD_OUT = ("motorcycle_left", "camera", "coins")
# Generated held-out images, FAMILY-INDEX (`synthetic.held_out`), from the two families that
# training never draws: strong colour where the held-out photographs are mostly gray. Smooth
# images (gradients, low-frequency noise) are left out: bicubic reconstructs them to ~60 dB,
# past the ceiling of any model that decodes through a VAE, and they would decide a PSNR
# comparison alone.
HELD_OUT_GENERATED = ("patches-0", "patches-1", "scene-0", "scene-1", "scene-2", "scene-3")
EVAL = HELD_OUT + HELD_OUT_GENERATED
BUNDLED = "bundled"  # the --data value that names the bundled training set


@dataclass
class HRImage:
    name: str
    pixels: np.ndarray  # H x W x 3 float32 in [0, 1]


def bundled_images(names: tuple[str, ...] = TRAIN) -> list[HRImage]:
    """scikit-image's images by name, and generated held-out ones by FAMILY-INDEX."""
    import skimage.data

    images = []
    for name in names:
        family, _, index = name.partition("-")
        if family in synthetic.FAMILIES and index.isdigit():
            images.append(HRImage(name, synthetic.held_out(family, int(index))))
            continue
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
        raise F2IError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file())
    images = []
    for path in tqdm(paths, desc="reading images", unit="img", disable=len(paths) < 50):
        try:
            photo = read_image(path)
        except F2IError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        images.append(HRImage(str(path.relative_to(folder)), photo.rgb))
    if not images:
        raise F2IError(f"{folder}: no readable PNG, JPEG or TIFF images")
    return images


def load_images(source: str | Path | None, bundled: tuple[str, ...] = TRAIN) -> list[HRImage]:
    """A folder of images, or the named bundled set for None / 'bundled'."""
    if source is None or source == BUNDLED:
        return bundled_images(bundled)
    return folder_images(source)


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
