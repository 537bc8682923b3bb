"""`f2i-mobile upscale` with HEIC, WebP and AVIF in, WebP and HEIC out, EXIF orientation, the ICC
profile carried from input to output, and broken or impossible files refused in one line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile
from conftest import upscale
from PIL import Image, ImageCms, features

from f2i_mobile.core import image as image_io
from f2i_mobile.core.image import heif_support, read_image

heif_support()  # registers pillow-heif's opener, so these tests can write HEIC with Pillow
needs_webp = pytest.mark.skipif(not features.check("webp"), reason="this Pillow has no WebP")
needs_avif = pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF")
needs_heic_out = pytest.mark.skipif(not heif_support()[1], reason="libheif has no HEVC encoder")
FORMATS = {"heic": ("HEIF", []), "webp": ("WEBP", [needs_webp]), "avif": ("AVIF", [needs_avif])}
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def smooth(h=9, w=13) -> np.ndarray:
    """A gradient: lossy codecs keep it within a few levels, so decoded pixels can be checked."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x * 255 / (w - 1), y * 255 / (h - 1), np.full((h, w), 128)]).astype(np.uint8)


def halves(h=9, w=13) -> np.ndarray:
    """Dark left half, bright right half: shows which way a photo was turned."""
    a = np.full((h, w, 3), 30, np.uint8)
    a[:, w // 2 + 1:] = 220
    return a


def save(array: np.ndarray, path, fmt: str, **options) -> None:
    Image.fromarray(array).save(path, format=fmt, quality=95, **options)


def no_leftovers(folder) -> bool:
    """No work folders of atomic writes remain."""
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("ext", [pytest.param(e, marks=m) for e, (_, m) in FORMATS.items()])
def test_heic_webp_avif_inputs_are_decoded_and_upscaled(ext, tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / f"in.{ext}"
    save(smooth(), src, FORMATS[ext][0])
    photo = read_image(src)
    assert photo.size == (13, 9) and photo.bit_depth == 8 and not photo.grayscale
    # the picture, not just its size: 4:2:0 chroma costs HEIC ~8 levels on this steep gradient;
    # a flipped one is off by ~45
    assert np.abs(photo.rgb * 255 - smooth()).mean() < 12
    dst = tmp_path / "out.png"
    code, out, err = upscale([src, "-o", dst, "--model", tiny_checkpoint], capsys)
    assert code == 0, err
    assert "(13x9)" in out and "(52x36)" in out
    with Image.open(dst) as im:
        assert im.size == (52, 36) and im.mode == "RGB"


@needs_webp
def test_webp_output_is_lossy_quality_95_and_keeps_alpha(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(np.dstack([smooth(), np.full((9, 13), 100, np.uint8)]), "RGBA").save(src)
    dst = tmp_path / "out.webp"
    code, out, err = upscale([src, "-o", dst, "--model", tiny_checkpoint], capsys)
    assert code == 0, err
    data = dst.read_bytes()
    assert b"VP8 " in data and b"VP8L" not in data  # a lossy bitstream, as documented
    with Image.open(dst) as im:
        assert im.format == "WEBP" and im.size == (52, 36) and im.mode == "RGBA"
        assert abs(int(np.asarray(im)[..., 3].mean()) - 100) <= 1  # alpha kept (JPEG drops it)


@needs_heic_out
def test_heic_output(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(smooth()).save(src)
    code, _, err = upscale([src, "-o", tmp_path / "out.heic", "--model", tiny_checkpoint], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out.heic") as im:
        assert im.format == "HEIF" and im.size == (52, 36)


def test_heic_output_refused_in_one_line_where_libheif_cannot_encode(tmp_path, capsys,
                                                                      monkeypatch):
    src = tmp_path / "in.png"
    Image.fromarray(smooth()).save(src)
    monkeypatch.setattr(image_io, "heif_support", lambda: (True, False))
    image_io.write_formats.cache_clear()
    try:
        code, _, err = upscale([src, "-o", tmp_path / "out.heic"], capsys)
    finally:
        image_io.write_formats.cache_clear()
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "unsupported output extension '.heic'; use .png, .jpg, .tif" in err
    assert not (tmp_path / "out.heic").exists()


@pytest.mark.parametrize("ext", ["heic", pytest.param("webp", marks=needs_webp)])
def test_exif_orientation_is_applied(ext, tmp_path, tiny_checkpoint, capsys):
    """Stored 13 wide, tagged 'rotate 90 degrees clockwise' (6): read 9 wide, the dark left half
    on top. A HEIC carries the turn in its container (libheif applies it, pillow-heif resets
    the tag), a WebP in EXIF alone: either way it is applied exactly once."""
    src = tmp_path / f"turned.{ext}"
    exif = Image.Exif()
    exif[0x0112] = 6
    save(halves(), src, FORMATS[ext][0], exif=exif.tobytes())
    gray = read_image(src).rgb.mean(axis=(1, 2))
    assert gray.shape == (13,)
    assert gray[:5].mean() < 0.3 < 0.7 < gray[-5:].mean()
    code, out, err = upscale([src, "-o", tmp_path / "o.png", "--model", tiny_checkpoint], capsys)
    assert code == 0 and "(36x52)" in out, err


@pytest.mark.parametrize("out_ext", ["png", "tif", "jpg", pytest.param("webp", marks=needs_webp),
                                     pytest.param("heic", marks=needs_heic_out)])
def test_icc_profile_is_carried_from_a_heic_to_the_output(out_ext, tmp_path, tiny_checkpoint,
                                                          capsys):
    src = tmp_path / "in.heic"
    save(smooth(), src, "HEIF", icc_profile=SRGB)
    assert read_image(src).icc_profile == SRGB
    dst = tmp_path / f"out.{out_ext}"
    code, _, err = upscale([src, "-o", dst, "--model", tiny_checkpoint], capsys)
    assert code == 0, err
    with Image.open(dst) as im:
        assert im.info.get("icc_profile") == SRGB


def test_icc_profile_is_carried_into_a_sixteen_bit_png(tmp_path, tiny_checkpoint, capsys):
    """16-bit colour is read by tifffile and written by OpenCV, which know no ICC: the profile
    is taken from the TIFF's tag and written as the PNG's iCCP chunk."""
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, (smooth().astype(np.uint16) * 257), iccprofile=SRGB)
    dst = tmp_path / "out.png"
    code, _, err = upscale([src, "-o", dst, "--model", tiny_checkpoint, "--scale", "2"], capsys)
    assert code == 0, err
    with Image.open(dst) as im:
        assert im.info.get("icc_profile") == SRGB and im.size == (26, 18)
    assert cv2.imread(str(dst), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # still 16 bit


def test_a_profile_of_another_colour_space_is_dropped(tmp_path):
    """A CMYK JPEG is converted to RGB; its CMYK profile would misdescribe those pixels."""
    src = tmp_path / "cmyk.jpg"
    cmyk_profile = SRGB[:16] + b"CMYK" + SRGB[20:]
    Image.fromarray(smooth()).convert("CMYK").save(src, icc_profile=cmyk_profile)
    photo = read_image(src)
    assert photo.size == (13, 9) and photo.icc_profile is None


@pytest.mark.parametrize("cut", ["header", "half"])
def test_broken_heic_is_one_line_and_writes_nothing(cut, tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "broken.heic"
    save(smooth(64, 64), src, "HEIF")
    data = src.read_bytes()
    src.write_bytes(data[:20] if cut == "header" else data[: len(data) // 2])
    dst = tmp_path / "out.png"
    code, _, err = upscale([src, "-o", dst, "--model", tiny_checkpoint], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"f2i-mobile: error: {src}: truncated or corrupt")
    assert not dst.exists() and no_leftovers(tmp_path)


@needs_webp
def test_webp_too_large_is_refused_before_any_tile(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "wide.png"
    Image.fromarray(np.zeros((2, 4100, 3), np.uint8)).save(src)  # 16400 px wide at 4x
    code, _, err = upscale([src, "-o", tmp_path / "out.webp", "--model", tiny_checkpoint], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "WebP holds at most 16383 px a side and this output is 16400x8" in err
    assert not (tmp_path / "out.webp").exists()
