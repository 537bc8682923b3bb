"""Reading and writing photos: PNG, JPEG and TIFF; 8 or 16 bit; grayscale, RGB, RGBA, palette;
EXIF orientation applied. Every problem with a file is an `F2IError` naming the file.

Pillow validates and decodes; it reduces 16-bit colour to 8 bits, so 16-bit colour PNGs are read
with OpenCV and 16-bit colour TIFFs with tifffile (and written the same way).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from f2i_mobile.core.atomic import atomic_file
from f2i_mobile.core.errors import F2IError

READ_FORMATS = {"PNG", "JPEG", "MPO", "TIFF"}  # MPO: phone JPEGs with an embedded preview
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class Photo:
    """An image as the pipeline sees it: float32 RGB in [0, 1] plus what is needed to write the
    result back in the input's own form."""

    rgb: np.ndarray  # H x W x 3, float32, [0, 1]
    alpha: np.ndarray | None = None  # H x W, float32, [0, 1]
    grayscale: bool = False
    bit_depth: int = 8  # 8 or 16

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def channels(self) -> int:
        """Channels of the output it is written as: gray or RGB, plus alpha."""
        return (1 if self.grayscale else 3) + (self.alpha is not None)

    def with_pixels(self, rgb: np.ndarray, alpha: np.ndarray | None) -> Photo:
        return replace(self, rgb=rgb, alpha=alpha)


def check_output_path(path: str | Path) -> str:
    """The output format for a path, or a one-line error before any work is done."""
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise F2IError(f"{path}: unsupported output extension {path.suffix or '(none)'!r}; "
                       f"use .png, .jpg or .tif")
    if path.is_dir():
        raise F2IError(f"{path}: is a directory")
    return fmt


def read_image(path: str | Path) -> Photo:
    path = Path(path)
    if path.is_dir():
        raise F2IError(f"{path}: is a directory, not an image")
    if not path.is_file():
        raise F2IError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise F2IError(f"{path}: empty file (0 bytes)")
    try:
        with PILImage.open(path) as im:
            return _decode(path, im)
    except F2IError:
        raise
    except UnidentifiedImageError:
        raise F2IError(_unidentified(path)) from None
    except PILImage.DecompressionBombError as exc:
        raise F2IError(f"{path}: image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise F2IError(f"{path}: truncated or corrupt image data ({exc})") from None


MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF",
         b"MM\x00*": "TIFF"}


def _unidentified(path: Path) -> str:
    """Why Pillow could not open a file: not an image at all, or a damaged one of ours."""
    with open(path, "rb") as f:
        head = f.read(24)
    fmt = next((name for magic, name in MAGIC.items() if head.startswith(magic)), None)
    if fmt is None:
        return f"{path}: not an image (PNG, JPEG or TIFF expected)"
    if fmt == "PNG" and len(head) == 24 and (head[16:20] == bytes(4) or head[20:24] == bytes(4)):
        return f"{path}: image has zero size"
    return f"{path}: truncated or corrupt {fmt} data"


def _decode(path: Path, im: PILImage.Image) -> Photo:
    if im.format not in READ_FORMATS:
        raise F2IError(f"{path}: unsupported format {im.format}; PNG, JPEG or TIFF expected")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        im.load()  # decodes everything now, so truncation is caught here
    if im.width == 0 or im.height == 0:
        raise F2IError(f"{path}: image has zero size")
    orientation = im.getexif().get(0x0112, 1)
    if im.mode in ("RGB", "RGBA") and _is_16bit_colour(path, im):
        return _oriented(_read_16bit_colour(path, im), orientation)
    return _from_pil(path, ImageOps.exif_transpose(im))


def _from_pil(path: Path, im: PILImage.Image) -> Photo:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr"):
        im = im.convert("RGB")
    elif mode == "1":
        im = im.convert("L")
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        data = np.asarray(im).astype(np.float32)
        if data.min() < 0 or data.max() > 65535:
            raise F2IError(f"{path}: unsupported 32-bit integer image")
        gray = data / 65535.0
        return Photo(np.repeat(gray[..., None], 3, axis=2), None, True, 16)
    if mode == "L":
        gray = np.asarray(im, dtype=np.float32) / 255.0
        return Photo(np.repeat(gray[..., None], 3, axis=2), None, True, 8)
    if mode == "LA":
        data = np.asarray(im, dtype=np.float32) / 255.0
        return Photo(np.repeat(data[..., :1], 3, axis=2), data[..., 1], True, 8)
    if mode == "RGB":
        return Photo(np.asarray(im, dtype=np.float32) / 255.0)
    if mode == "RGBA":
        data = np.asarray(im, dtype=np.float32) / 255.0
        return Photo(np.ascontiguousarray(data[..., :3]), np.ascontiguousarray(data[..., 3]))
    raise F2IError(f"{path}: unsupported image mode {mode}")


def _is_16bit_colour(path: Path, im: PILImage.Image) -> bool:
    if im.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(25)
        return len(header) == 25 and header[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    return False


def _read_16bit_colour(path: Path, im: PILImage.Image) -> Photo:
    if im.format == "PNG":
        import cv2

        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise F2IError(f"{path}: truncated or corrupt image data")
        data = data[..., [2, 1, 0, 3][: data.shape[2]]]  # BGR(A) -> RGB(A)
    else:
        import tifffile

        try:
            data = tifffile.imread(str(path), key=0)
        except Exception as exc:  # tifffile raises many types for damaged files
            raise F2IError(f"{path}: truncated or corrupt image data ({exc})") from None
    if data.dtype != np.uint16 or data.ndim != 3 or data.shape[2] not in (3, 4):
        raise F2IError(f"{path}: unsupported 16-bit layout {data.dtype} {data.shape}")
    data = data.astype(np.float32) / 65535.0
    alpha = np.ascontiguousarray(data[..., 3]) if data.shape[2] == 4 else None
    return Photo(np.ascontiguousarray(data[..., :3]), alpha, False, 16)


def _oriented(photo: Photo, orientation: int) -> Photo:
    """Apply an EXIF orientation (1-8) to arrays; Pillow's exif_transpose only takes PIL images,
    which cannot hold 16-bit colour."""

    def fix(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
               5: lambda x: np.swapaxes(x, 0, 1), 6: lambda x: np.rot90(x, -1),
               7: lambda x: np.rot90(x, 1)[::-1], 8: lambda x: np.rot90(x, 1)}
        return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a

    return photo.with_pixels(fix(photo.rgb), fix(photo.alpha))


def to_uint(photo: Photo, fmt: str) -> np.ndarray:
    """The photo as an integer array in its output layout: H x W (gray), H x W x 2/3/4."""
    depth = 8 if fmt == "JPEG" else photo.bit_depth
    maxval, dtype = (255.0, np.uint8) if depth == 8 else (65535.0, np.uint16)
    channels = [photo.rgb.mean(axis=2, keepdims=True)] if photo.grayscale else [photo.rgb]
    if photo.alpha is not None and fmt != "JPEG":
        channels.append(photo.alpha[..., None])
    data = np.concatenate(channels, axis=2)  # a new array: scaled and rounded in place, so a
    np.multiply(data, maxval, out=data)      # streamed band costs one float copy, not three
    np.clip(np.rint(data, out=data), 0, maxval, out=data)
    data = data.astype(dtype)
    return data[..., 0] if data.shape[2] == 1 else data


def write_image(path: str | Path, photo: Photo) -> None:
    """Write atomically, in the input's bit depth and channel layout where the format allows
    (JPEG: 8 bit, no alpha)."""
    path = Path(path)
    fmt = check_output_path(path)
    data = to_uint(photo, fmt)
    with atomic_file(path) as tmp:
        if data.dtype == np.uint16 and data.ndim == 3 and fmt == "PNG":
            import cv2

            if not cv2.imwrite(str(tmp), data[..., [2, 1, 0, 3][: data.shape[2]]]):
                raise F2IError(f"{path}: could not write PNG")
        elif data.dtype == np.uint16 and fmt == "TIFF":
            import tifffile

            tifffile.imwrite(str(tmp), data, photometric="minisblack" if data.ndim == 2
                             else "rgb", compression="zlib")
        else:
            image = PILImage.fromarray(data)
            options = {"quality": 95} if fmt == "JPEG" else {}
            if fmt == "TIFF":
                options["compression"] = "tiff_deflate"
            image.save(tmp, format=fmt, **options)
