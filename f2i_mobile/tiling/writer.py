"""Streaming image writers: the output arrives band by band and goes to disk the same way, so an
output larger than memory is never held whole.

- PNG: pypng, rows handed over already packed (big-endian bytes for 16 bit), so the per-row work
  is numpy's and zlib's; 8 or 16 bit, gray or RGB, with or without alpha.
- TIFF: tifffile, from an iterator of full-width tiles 16 rows high, zlib-compressed.
- JPEG, WebP, HEIC: no streaming encoder exists in Pillow, OpenCV or pillow-heif; the bands are
  gathered and written whole (8 bit; JPEG without alpha), so these outputs must fit in memory
  (the pipeline checks this first).

The input's ICC profile goes into every output: an iCCP chunk in PNG, tifffile's ICC tag in TIFF,
Pillow's `icc_profile` for the rest.

Every write goes to a temporary file renamed into place at the end (`atomic_file`): a failure
leaves no partial output.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from f2i_mobile.core.atomic import atomic_file
from f2i_mobile.core.image import check_output_path, png_iccp, save_options

TIFF_ROWS = 16  # TIFF tiles are multiples of 16 rows
STREAMED = ("PNG", "TIFF")  # formats written band by band; the rest are assembled whole


def write_bands(path: str | Path, width: int, height: int, channels: int, dtype,
                bands: Iterable[np.ndarray], icc_profile: bytes | None = None) -> None:
    """Write `height` rows of `width` x `channels` integers (uint8 or uint16), arriving as
    bands of rows (H x W or H x W x C) from top to bottom, with `icc_profile` if given."""
    path = Path(path)
    fmt = check_output_path(path, (width, height))
    dtype = np.dtype(dtype)
    with atomic_file(path) as tmp:
        if fmt == "PNG":
            _png(tmp, width, height, channels, dtype, bands, icc_profile)
        elif fmt == "TIFF":
            _tiff(tmp, width, height, channels, dtype, bands, icc_profile)
        else:
            _whole(tmp, fmt, bands, icc_profile)


def _rows(bands: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for band in bands:
        yield from band


def _png(tmp: Path, width, height, channels, dtype, bands, icc) -> None:
    import png

    class Writer(png.Writer):
        def write_preamble(self, outfile):  # pypng writes no iCCP itself
            super().write_preamble(outfile)
            if icc:
                outfile.write(png_iccp(icc))

    writer = Writer(width, height, greyscale=channels in (1, 2), alpha=channels in (2, 4),
                    bitdepth=8 * dtype.itemsize, compression=6)
    big = dtype.newbyteorder(">")
    with open(tmp, "wb") as f:
        writer.write_packed(f, (bytearray(row.astype(big, copy=False).tobytes())
                                for row in _rows(bands)))


def _tiff(tmp: Path, width, height, channels, dtype, bands, icc) -> None:
    import tifffile

    tile_w = -(-width // 16) * 16
    shape = (height, width) if channels == 1 else (height, width, channels)

    def tiles() -> Iterator[np.ndarray]:
        buf = np.zeros((TIFF_ROWS, tile_w, *shape[2:]), dtype)
        n = 0
        for row in _rows(bands):
            buf[n, :width] = row
            n += 1
            if n == TIFF_ROWS:
                yield buf
                buf, n = np.zeros_like(buf), 0
        if n:
            yield buf

    extra = {"extrasamples": ["unassalpha"]} if channels in (2, 4) else {}
    tifffile.imwrite(tmp, tiles(), shape=shape, dtype=dtype, tile=(TIFF_ROWS, tile_w),
                     photometric="minisblack" if channels <= 2 else "rgb",
                     compression="zlib", iccprofile=icc, **extra)


def _whole(tmp: Path, fmt: str, bands, icc) -> None:
    from PIL import Image

    data = np.concatenate(list(bands), axis=0)
    Image.fromarray(data).save(tmp, format=fmt, **save_options(fmt, icc))
