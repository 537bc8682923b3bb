"""Reading and writing photos: PNG, JPEG, TIFF, WebP, HEIC/HEIF and AVIF (WebP and AVIF where
this Pillow reads them, HEIC through pillow-heif); 8 or 16 bit; grayscale, RGB, RGBA, palette;
EXIF orientation applied; the ICC profile carried to outputs that store one. Every problem with
a file is an `F2IError` naming the file.

Pillow validates and decodes; it reduces 16-bit colour to 8 bits, so 16-bit colour PNGs are read
with OpenCV and 16-bit colour TIFFs with tifffile (and written the same way). HEIC is decoded by
libheif, which applies the container's rotation itself (and pillow-heif then resets the EXIF
tag, so nothing is turned twice); Pillow's AVIF and WebP readers leave orientation to EXIF.
"""

from __future__ import annotations

import functools
import struct
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError, features

from f2i_mobile.core.atomic import atomic_file
from f2i_mobile.core.errors import F2IError

# Suffixes a folder run picks up (what is actually read is decided by the file's content).
READ_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif")
# Lossy outputs are written at quality 95, like JPEG has always been here: an SR output is a
# delivered picture, and PNG or TIFF are there for lossless.
QUALITY = 95
MAX_SIDE = {"JPEG": 65535, "WEBP": 16383}  # the formats' own limits, in px a side
NAMES = {"PNG": "PNG", "JPEG": "JPEG", "TIFF": "TIFF", "WEBP": "WebP", "HEIF": "HEIC",
         "AVIF": "AVIF"}


@dataclass
class Photo:
    """An image as the pipeline sees it: float32 RGB in [0, 1] plus what is needed to write the
    result back in the input's own form."""

    rgb: np.ndarray  # H x W x 3, float32, [0, 1]
    alpha: np.ndarray | None = None  # H x W, float32, [0, 1]
    grayscale: bool = False
    bit_depth: int = 8  # 8 or 16
    icc_profile: bytes | None = None  # the input's, when it describes these pixels (gray/RGB)

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


@functools.cache
def heif_support() -> tuple[bool, bool]:
    """(reads, writes) HEIC: pillow-heif's opener registered with Pillow (once per process), and
    whether its libheif carries an HEVC encoder."""
    try:
        import pillow_heif
    except ImportError:
        return False, False
    pillow_heif.register_heif_opener()
    return True, bool(pillow_heif.libheif_info().get("HEIF"))


@functools.cache
def read_formats() -> tuple[str, ...]:
    """Pillow format names read here. MPO: phone JPEGs with an embedded preview."""
    optional = {"WEBP": features.check("webp"), "HEIF": heif_support()[0],
                "AVIF": features.check("avif")}
    return ("PNG", "JPEG", "MPO", "TIFF", *(fmt for fmt, ok in optional.items() if ok))


@functools.cache
def write_formats() -> dict[str, str]:
    """Output extension -> Pillow format name: WebP and HEIC only where they can be encoded."""
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
    if features.check("webp"):
        formats[".webp"] = "WEBP"
    if heif_support()[1]:
        formats.update({".heic": "HEIF", ".heif": "HEIF"})
    return formats


def _read_names() -> str:
    names = [NAMES[f] for f in read_formats() if f != "MPO"]
    return f"{', '.join(names[:-1])} or {names[-1]}"


def check_output_path(path: str | Path, size: tuple[int, int] | None = None) -> str:
    """The output format for a path (and an output of `size`, when known), or a one-line error
    before any work is done."""
    path = Path(path)
    fmt = write_formats().get(path.suffix.lower())
    if fmt is None:
        first: dict[str, str] = {}  # one suffix per format: .png, .jpg, .tif, ...
        for suffix, name in write_formats().items():
            first.setdefault(name, suffix)
        suffixes = list(first.values())
        raise F2IError(f"{path}: unsupported output extension {path.suffix or '(none)'!r}; "
                       f"use {', '.join(suffixes[:-1])} or {suffixes[-1]}")
    if path.is_dir():
        raise F2IError(f"{path}: is a directory")
    limit = MAX_SIDE.get(fmt)
    if size is not None and limit and max(size) > limit:
        raise F2IError(f"{path}: {NAMES[fmt]} holds at most {limit} px a side and this output is "
                       f"{size[0]}x{size[1]}; use .png or .tif")
    return fmt


def read_image(path: str | Path) -> Photo:
    read_formats()  # registers the HEIC opener
    path = Path(path)
    if path.is_dir():
        raise F2IError(f"{path}: is a directory, not an image")
    if not path.is_file():
        raise F2IError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise F2IError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():  # a bomb is refused in one line, not warned about
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                return _decode(path, im)
    except F2IError:
        raise
    except UnidentifiedImageError:
        raise F2IError(_unidentified(path)) from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise F2IError(f"{path}: image too large to decode safely ({exc})") from None
    # libheif reports damage as ValueError, libavif as RuntimeError
    except (OSError, SyntaxError, ValueError, RuntimeError, struct.error) as exc:
        raise F2IError(f"{path}: truncated or corrupt image data ({exc})") from None


MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF",
         b"MM\x00*": "TIFF"}
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _sniff(head: bytes) -> str | None:
    """The format a file's first bytes claim, as Pillow names it."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":  # ISO media: the major brand says which (an MP4 is neither)
        brand = head[8:12]
        return "AVIF" if brand in (b"avif", b"avis") else "HEIF" if brand in HEIF_BRANDS else None
    return next((name for magic, name in MAGIC.items() if head.startswith(magic)), None)


def _unidentified(path: Path) -> str:
    """Why Pillow could not open a file: not an image at all, one this build cannot read, or a
    damaged one of ours."""
    with open(path, "rb") as f:
        head = f.read(24)
    fmt = _sniff(head)
    if fmt is None:
        return f"{path}: not an image ({_read_names()} expected)"
    if fmt not in read_formats():
        return f"{path}: {NAMES[fmt]} cannot be read here (this Pillow has no {NAMES[fmt]} support)"
    if fmt == "PNG" and len(head) == 24 and (head[16:20] == bytes(4) or head[20:24] == bytes(4)):
        return f"{path}: image has zero size"
    return f"{path}: truncated or corrupt {NAMES[fmt]} data"


def _decode(path: Path, im: PILImage.Image) -> Photo:
    if im.format not in read_formats():
        raise F2IError(f"{path}: unsupported format {im.format}; {_read_names()} expected")
    im.load()  # decodes everything now, so truncation is caught here
    if im.width == 0 or im.height == 0:
        raise F2IError(f"{path}: image has zero size")
    orientation = im.getexif().get(0x0112, 1)
    icc = im.info.get("icc_profile")
    if im.mode in ("RGB", "RGBA") and _is_16bit_colour(path, im):
        photo = _oriented(_read_16bit_colour(path, im), orientation)
    else:
        photo = _from_pil(path, ImageOps.exif_transpose(im))
    return replace(photo, icc_profile=_matching_icc(icc, photo.grayscale))


def _matching_icc(icc: bytes | None, gray: bool) -> bytes | None:
    """The profile if it describes gray or RGB pixels as stored: a CMYK JPEG's profile does not
    describe the RGB it is converted to, and a gray profile does not fit an RGB output."""
    space = b"GRAY" if gray else b"RGB "
    return icc if icc and len(icc) >= 128 and icc[16:20] == space else None


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
    depth = 8 if fmt in ("JPEG", "WEBP", "HEIF") else photo.bit_depth
    maxval, dtype = (255.0, np.uint8) if depth == 8 else (65535.0, np.uint16)
    channels = [photo.rgb.mean(axis=2, keepdims=True)] if photo.grayscale else [photo.rgb]
    if photo.alpha is not None and fmt != "JPEG":
        channels.append(photo.alpha[..., None])
    data = np.concatenate(channels, axis=2)  # a new array: scaled and rounded in place, so a
    np.multiply(data, maxval, out=data)      # streamed band costs one float copy, not three
    np.clip(np.rint(data, out=data), 0, maxval, out=data)
    data = data.astype(dtype)
    return data[..., 0] if data.shape[2] == 1 else data


def output_icc(photo: Photo, fmt: str) -> bytes | None:
    """The ICC profile to store in an output of `fmt` (WebP stores gray as RGB)."""
    return _matching_icc(photo.icc_profile, photo.grayscale and fmt != "WEBP")


def save_options(fmt: str, icc: bytes | None) -> dict:
    """Pillow's save options for `fmt`. WebP is lossy at quality 95 (alpha kept lossless), like
    JPEG: lossless WebP of a 4x output is several times larger and slower to encode, and
    lossless outputs are what PNG and TIFF are for."""
    options = {"JPEG": {"quality": QUALITY}, "WEBP": {"quality": QUALITY},
               "HEIF": {"quality": QUALITY}, "TIFF": {"compression": "tiff_deflate"}}.get(fmt, {})
    return {**options, "icc_profile": icc} if icc else options


def png_iccp(icc: bytes) -> bytes:
    """A PNG iCCP chunk holding `icc` (for writers that cannot embed a profile themselves)."""
    body = b"ICC Profile\x00\x00" + zlib.compress(icc)
    return (struct.pack(">I", len(body)) + b"iCCP" + body
            + struct.pack(">I", zlib.crc32(b"iCCP" + body)))


def write_image(path: str | Path, photo: Photo) -> None:
    """Write atomically, in the input's bit depth and channel layout where the format allows
    (JPEG: 8 bit, no alpha; WebP, HEIC: 8 bit), with the input's ICC profile."""
    path = Path(path)
    fmt = check_output_path(path, photo.size)
    data = to_uint(photo, fmt)
    icc = output_icc(photo, fmt)
    with atomic_file(path) as tmp:
        if data.dtype == np.uint16 and data.ndim == 3 and fmt == "PNG":
            import cv2

            ok, png = cv2.imencode(".png", data[..., [2, 1, 0, 3][: data.shape[2]]])
            if not ok:
                raise F2IError(f"{path}: could not write PNG")
            png = png.tobytes()
            if icc:  # right after IHDR (signature 8 + IHDR 25 bytes), before any image data
                png = png[:33] + png_iccp(icc) + png[33:]
            tmp.write_bytes(png)
        elif data.dtype == np.uint16 and fmt == "TIFF":
            import tifffile

            tifffile.imwrite(str(tmp), data, photometric="minisblack" if data.ndim == 2
                             else "rgb", compression="zlib", iccprofile=icc)
        else:
            PILImage.fromarray(data).save(tmp, format=fmt, **save_options(fmt, icc))
