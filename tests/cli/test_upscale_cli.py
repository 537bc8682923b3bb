"""`f2i-mobile upscale` and `info`: image formats in and out, sizes, and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from conftest import upscale
from PIL import Image

from f2i_mobile.cli import main
from f2i_mobile.core.image import read_image


def rgb8(h=9, w=13, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


# --- inputs of every supported kind, written by real encoders ---

def write_gray8(p):
    Image.fromarray(rgb8()[..., 0]).save(p)


def write_gray16(p):
    cv2.imwrite(str(p), (np.random.default_rng(1).random((9, 13)) * 65535).astype(np.uint16))


def write_rgb16_png(p):
    cv2.imwrite(str(p), (np.random.default_rng(2).random((9, 13, 3)) * 65535).astype(np.uint16))


def write_rgb16_tiff(p):
    tifffile.imwrite(p, (np.random.default_rng(3).random((9, 13, 3)) * 65535).astype(np.uint16))


def write_rgba(p):
    a = np.dstack([rgb8(), np.full((9, 13), 128, np.uint8)])
    Image.fromarray(a, "RGBA").save(p)


def write_palette(p):
    Image.fromarray(rgb8()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(p)


def write_jpeg(p):
    Image.fromarray(rgb8()).save(p, quality=90)


CASES = {
    # name: (writer, suffix, expected output mode check)
    "gray8.png": (write_gray8, "L"),
    "gray16.png": (write_gray16, "I;16"),
    "rgb16.png": (write_rgb16_png, "rgb16"),
    "rgb16.tif": (write_rgb16_tiff, "rgb16"),
    "rgba.png": (write_rgba, "RGBA"),
    "palette.png": (write_palette, "RGB"),
    "photo.jpg": (write_jpeg, "RGB"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_upscale_keeps_mode_depth_and_is_exactly_4x(name, tmp_path, tiny_checkpoint, capsys):
    writer, mode = CASES[name]
    src = tmp_path / name
    writer(src)
    dst = tmp_path / f"out{src.suffix}"
    code, out, err = upscale([src, "-o", dst, "--model", tiny_checkpoint], capsys)
    assert code == 0, err
    assert "(52x36)" in out
    if mode == "rgb16":
        data = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED) if dst.suffix == ".png" \
            else tifffile.imread(dst)
        assert data.dtype == np.uint16 and data.shape == (36, 52, 3)
    else:
        with Image.open(dst) as im:
            assert im.size == (52, 36)
            assert im.mode == mode


def test_exif_rotation_is_applied(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape 13x9, displayed rotated 90 degrees
    Image.fromarray(rgb8()).save(src, exif=exif)
    assert read_image(src).size == (9, 13)
    code, out, _ = upscale([src, "-o", tmp_path / "o.png", "--model", tiny_checkpoint], capsys)
    assert code == 0 and "(36x52)" in out


def test_sixteen_bit_values_survive_unchanged_scaling(tmp_path):
    """16-bit colour is read at full precision (Pillow alone would cut it to 8 bits)."""
    src = tmp_path / "fine.png"
    data = np.full((4, 4, 3), 1000, np.uint16)
    data[..., 1] = 1001  # differs in the low byte only
    cv2.imwrite(str(src), data[..., ::-1])
    photo = read_image(src)
    assert photo.bit_depth == 16
    assert photo.rgb[0, 0, 1] - photo.rgb[0, 0, 0] == pytest.approx(1 / 65535, rel=1e-3)


def test_default_model_pads_odd_sizes(tmp_path, capsys):
    """The bundled default (mobile) needs multiples of 8 LR px; odd sizes are padded and cropped."""
    src = tmp_path / "odd.png"
    Image.fromarray(rgb8(9, 13)).save(src)
    code, out, err = upscale([src, "-o", tmp_path / "o.png"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (52, 36)


def test_other_scales_resize_the_model_output(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(rgb8()).save(src)
    code, out, _ = upscale([src, "-o", tmp_path / "o.png", "--model", tiny_checkpoint,
                            "--scale", "2"], capsys)
    assert code == 0 and "(26x18)" in out


# --- bad input: one line, non-zero, no output file ---

def make_bad(kind, tmp_path):
    p = tmp_path / {"gif": "anim.gif", "dir": "folder.png"}.get(kind, f"{kind}.png")
    if kind == "text":
        p.write_text("this is not an image\n")
    elif kind == "truncated":
        Image.fromarray(rgb8(64, 64)).save(p)
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "float_tiff":
        p = tmp_path / "float.tif"
        Image.fromarray(np.random.rand(8, 8).astype(np.float32), "F").save(p)
    elif kind == "gif":
        Image.fromarray(rgb8()).save(p)
    elif kind == "dir":
        p.mkdir()
    elif kind == "zero_height":  # a well-formed PNG header that claims 13 x 0 pixels
        Image.fromarray(rgb8()).save(p)
        data = bytearray(p.read_bytes())
        data[20:24] = (0).to_bytes(4, "big")
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's CRC
        p.write_bytes(bytes(data))
    return p


BAD = {
    "text": "not an image",
    "truncated": "truncated or corrupt",
    "empty": "empty file",
    "float_tiff": "unsupported image mode F",
    "gif": "unsupported format GIF",
    "dir": "is a directory",
    "missing": "no such file",
    "zero_height": "truncated or corrupt|zero size",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(kind, tmp_path, tiny_checkpoint, capsys):
    src = make_bad(kind, tmp_path) if kind != "missing" else tmp_path / "absent.png"
    dst = tmp_path / "out.png"
    code, out, err = upscale([src, "-o", dst, "--model", tiny_checkpoint], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("f2i-mobile: error: ") and str(src) in lines[0]
    assert re.search(BAD[kind], lines[0]), lines[0]
    assert not dst.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.png")]


def test_bad_output_extension_is_refused_before_work(tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(rgb8()).save(src)
    code, _, err = upscale([src, "-o", tmp_path / "out.gif"], capsys)
    assert code == 1 and "unsupported output extension" in err


def test_bad_model_folder_is_one_line(tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(rgb8()).save(src)
    code, _, err = upscale([src, "-o", tmp_path / "o.png", "--model", tmp_path], capsys)
    assert code == 1 and "not an f2i-mobile checkpoint" in err and len(err.splitlines()) == 1


def test_console_script_exits_nonzero_without_traceback(tmp_path):
    src = make_bad("truncated", tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "f2i_mobile.cli", "upscale", str(src), "-o", str(tmp_path / "o.png")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("f2i-mobile: error:")
    assert not (tmp_path / "o.png").exists()


def test_info_reports_graphs_and_budget(tiny_checkpoint, capsys):
    assert main(["info", "--model", str(tiny_checkpoint), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    graphs = report["graphs"]
    assert list(graphs) == ["conditioner", "statistics", "encoder", "unet", "decoder"]
    # the statistics pass runs the tile graphs' own weights, once per photo
    assert graphs["statistics"]["params"] == sum(graphs[g]["params"]
                                                 for g in ("encoder", "unet", "decoder"))
    assert report["total_params"] == sum(g["params"] for n, g in graphs.items()
                                         if n != "statistics")
    assert all(g["gflops_per_tile"] > 0 for g in graphs.values())
    assert graphs["decoder"]["outputs"]["sr"] == [1, 3, 64, 64]
    assert graphs["decoder"]["inputs"]["decoder_stats"][0] == 1


def test_info_on_a_preset_counts_without_weights(capsys):
    assert main(["info", "--preset", "eff"]) == 0
    text = capsys.readouterr().out
    assert "preset 'eff'" in text and "no weights" in text
    assert all(g in text for g in ("conditioner", "statistics", "encoder", "unet", "decoder"))
    # the SD VAE's mid-block attention GroupNorm takes the photo's statistics too
    assert "decoder_stats" in text


def test_outputs_get_ordinary_permissions(tmp_path, tiny_checkpoint, capsys):
    import os
    import stat

    src = tmp_path / "in.png"
    Image.fromarray(rgb8()).save(src)
    old = os.umask(0o022)
    try:
        upscale([src, "-o", tmp_path / "o.png", "--model", tiny_checkpoint], capsys)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.png").stat().st_mode) == 0o644
    assert stat.S_IMODE(tiny_checkpoint.stat().st_mode) & 0o055  # checkpoint folders readable
