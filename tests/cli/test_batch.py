"""`f2i-mobile upscale` on several photos: a folder or several files into an output folder, one
model for the set, a broken photo reported while the rest run, resuming with --skip-existing,
and what would spoil the whole set refused before any work."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import upscale
from PIL import Image

from f2i_mobile import upscale as upscale_mod
from f2i_mobile.core.image import heif_support
from f2i_mobile.upscale import UpscaleOptions, upscale_many

heif_support()  # so Pillow writes HEIC here


def photo(path, seed=0, fmt=None):
    rgb = (np.random.default_rng(seed).random((9, 13, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(path, format=fmt, quality=95)
    return path


def errors(err: str) -> list[str]:
    """The error lines of stderr (the progress bar shares it)."""
    return [line for line in err.replace("\r", "\n").splitlines() if "error" in line]


def no_leftovers(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_folder_with_a_broken_photo_writes_the_rest_and_exits_1(tmp_path, tiny_checkpoint,
                                                                 capsys):
    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    photo(src / "a.png", 0)
    photo(src / "b.jpg", 1)
    photo(src / "c.heic", 2, "HEIF")
    (src / "d.heic").write_bytes((src / "c.heic").read_bytes()[:300])  # truncated
    (src / "notes.txt").write_text("not a photo, not picked up")
    code, stdout, err = upscale([src, "-o", out, "--model", tiny_checkpoint], capsys)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    for name in ("a", "b", "c"):
        with Image.open(out / f"{name}.png") as im:
            assert im.size == (52, 36)
    [line] = errors(err)
    assert line.startswith(f"f2i-mobile: error: {src / 'd.heic'}: truncated or corrupt")
    assert "4 photos" in stdout and "3 written, 0 skipped (output exists), 1 failed" in stdout
    assert no_leftovers(out)


def test_several_files_into_a_folder_with_one_bar_for_the_set(tmp_path, tiny_checkpoint, capsys):
    a, b = photo(tmp_path / "a.png", 0), photo(tmp_path / "b.jpg", 1)
    out = tmp_path / "new" / "out"  # created
    code, stdout, err = upscale([a, b, "-o", out, "--format", "webp", "--model",
                                 tiny_checkpoint], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.webp", "b.webp"]
    with Image.open(out / "b.webp") as im:
        assert im.format == "WEBP" and im.size == (52, 36)
    assert "2 written, 0 skipped (output exists), 0 failed" in stdout
    assert "photos:" in err and "tiles:" not in err  # the set's bar, no per-photo tile bars


def test_a_single_file_into_an_existing_folder(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = upscale([photo(tmp_path / "a.jpg"), "-o", out, "--model",
                                 tiny_checkpoint], capsys)
    assert code == 0, err
    assert [p.name for p in out.iterdir()] == ["a.png"]


def test_skip_existing_leaves_finished_outputs_alone(tmp_path, tiny_checkpoint, capsys):
    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    photo(src / "a.png", 0)
    photo(src / "b.png", 1)
    done = out / "a.png"
    done.write_bytes(b"finished earlier")  # not an image: rewriting it would show
    os.utime(done, ns=(10**18, 10**18))
    code, stdout, err = upscale([src, "-o", out, "--model", tiny_checkpoint, "--skip-existing"],
                                capsys)
    assert code == 0, err
    assert done.read_bytes() == b"finished earlier" and done.stat().st_mtime_ns == 10**18
    with Image.open(out / "b.png") as im:
        assert im.size == (52, 36)
    assert "1 written, 1 skipped (output exists), 0 failed" in stdout


def test_a_finished_set_resumes_without_loading_the_model(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    photo(src / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"done")
    code, stdout, err = upscale([src, "-o", tmp_path / "out", "--skip-existing", "--model",
                                 tmp_path / "no-such-model"], capsys)
    assert code == 0, err
    assert "0 written, 1 skipped" in stdout


def test_the_model_is_opened_once_for_the_set(tmp_path, tiny_checkpoint, monkeypatch):
    opened = []

    def counting(*args, **kwargs):
        opened.append(1)
        return open_engine(*args, **kwargs)

    open_engine = upscale_mod.open_engine
    monkeypatch.setattr(upscale_mod, "open_engine", counting)
    inputs = [photo(tmp_path / f"{n}.png", n) for n in range(3)] + [tmp_path / "missing.png"]
    results = list(upscale_many(inputs, tmp_path / "out", tiny_checkpoint, UpscaleOptions()))
    assert len(opened) == 1
    assert [r.status for r in results] == ["written"] * 3 + ["failed"]
    assert [r.output.name for r in results] == ["0.png", "1.png", "2.png", "missing.png"]
    assert results[0].size == (13, 9) and results[0].job.out_size == (52, 36)
    assert results[3].error == f"{tmp_path / 'missing.png'}: no such file"


def refusal(kind, tmp_path):
    """Arguments for a set that cannot run as asked."""
    a = photo(tmp_path / "a.png")
    if kind == "shared name":
        return [a, photo(tmp_path / "a.jpg"), "-o", tmp_path / "out"], "would be written for both"
    if kind == "overwrites input":
        return [a, photo(tmp_path / "b.png"), "-o", tmp_path], "its output would overwrite it"
    if kind == "-o a file name":
        return [a, photo(tmp_path / "b.png"), "-o", tmp_path / "x.png"], "-o names a folder"
    if kind == "empty folder":
        (tmp_path / "empty").mkdir()
        return [tmp_path / "empty", "-o", tmp_path / "out"], "no images in this folder"
    return [tmp_path, "-o", tmp_path / "out", "--plan"], "--plan takes one INPUT"


@pytest.mark.parametrize("kind", ["shared name", "overwrites input", "-o a file name",
                                  "empty folder", "plan"])
def test_what_would_spoil_the_set_is_refused_before_any_work(kind, tmp_path, capsys):
    args, reason = refusal(kind, tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = upscale(args + ["--model", tmp_path / "no-such-model"], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and reason in lines[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, no folder


def test_skip_existing_with_one_file(tmp_path, capsys):
    done = tmp_path / "a_x4.png"
    done.write_bytes(b"finished earlier")
    code, stdout, err = upscale([photo(tmp_path / "a.png"), "-o", done, "--skip-existing",
                                 "--model", tmp_path / "no-such-model"], capsys)
    assert code == 0, err
    assert "skipped" in stdout and done.read_bytes() == b"finished earlier"
