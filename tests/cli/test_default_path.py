"""`f2i-mobile upscale` without `--backend`: the model's graphs exported to ONNX once into the
user's cache and run by ONNX Runtime, the torch model where that cannot be, and the same output
either way. One export of the tiny checkpoint serves every test here (`default_path`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI, upscale
from PIL import Image

from f2i_mobile.core.contract import AUTO_TILE, GRAPHS
from f2i_mobile.core.fidelity import psnr
from f2i_mobile.core.manifest import Manifest
from f2i_mobile.export.cache import cache_folder, default_options, failure_file, resolve
from f2i_mobile.runners.onnx_runner import runs_unfused

BUILDING = "building the ONNX graphs for tiny once"


def pixels(path):
    return np.asarray(Image.open(path), dtype=np.float64)


def test_first_run_builds_the_graphs_once_and_later_runs_reuse_them(default_path,
                                                                    tiny_checkpoint, tmp_path,
                                                                    monkeypatch):
    """The first run says, in one line, that it builds and where it caches; the cache is an
    export folder keyed by the checkpoint's files, with nothing half-written beside it. A second
    run builds nothing, imports no torch, gives the same image, and agrees with the torch path at
    the same tile at 50 dB or more."""
    first = default_path.stderr.splitlines()
    assert sum(BUILDING in line for line in first) == 1
    assert any(str(default_path.export) in line for line in first if BUILDING in line)
    monkeypatch.setenv("XDG_CACHE_HOME", str(default_path.cache_home))
    assert cache_folder(tiny_checkpoint, 16) == default_path.export  # by content, not by path
    manifest = Manifest.load(default_path.export)
    assert manifest.tile == 16 and ("onnx", "fp32") in manifest.variants()
    assert {a.graph for a in manifest.artifacts} == set(GRAPHS)
    assert not [p.name for p in default_path.export.parent.rglob(".*")]  # no work folders

    again = tmp_path / "again.png"
    run = ("import sys\nfrom f2i_mobile.cli import main\n"
           "code = main(['upscale', *sys.argv[1:]])\n"
           "print('torch imported' if 'torch' in sys.modules else 'torch-free')\n"
           "sys.exit(code)\n")
    r = subprocess.run([sys.executable, "-c", run, str(default_path.photo), "-o", str(again),
                        "--model", str(tiny_checkpoint), "--tile", "16"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert BUILDING not in r.stderr and "torch-free" in r.stdout
    assert np.array_equal(pixels(again), pixels(default_path.output))

    reference = tmp_path / "torch.png"
    r = subprocess.run(CLI + ["upscale", str(default_path.photo), "-o", str(reference),
                              "--model", str(tiny_checkpoint), "--tile", "16",
                              "--backend", "torch"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert pixels(reference).shape == (128, 160, 3)
    assert psnr(pixels(again), pixels(reference), 255.0) >= 50


def test_auto_with_artifacts_runs_the_fastest_runtime_they_hold(onnx_export, default_path,
                                                                tmp_path, capsys):
    out, _ = onnx_export
    code, _, err = upscale([default_path.photo, "-o", tmp_path / "auto.png", "--artifacts", out,
                            "--backend", "auto"], capsys)
    assert code == 0, err
    code, _, err = upscale([default_path.photo, "-o", tmp_path / "onnx.png", "--artifacts", out,
                            "--backend", "onnx"], capsys)
    assert code == 0, err
    assert np.array_equal(pixels(tmp_path / "auto.png"), pixels(tmp_path / "onnx.png"))
    code, _, err = upscale([default_path.photo, "-o", tmp_path / "x.png", "--artifacts", out,
                            "--backend", "auto", "--precision", "w8a8"], capsys)
    assert code == 1 and "no complete w8a8 export" in err and len(err.splitlines()) == 1


def _block_onnxruntime(monkeypatch, tmp_path, tiny_checkpoint):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    return "onnxruntime not installed"


def _unwritable_cache(monkeypatch, tmp_path, tiny_checkpoint):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file" / "cache"))
    return "cannot write"


def _failed_before(monkeypatch, tmp_path, tiny_checkpoint):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    marker = failure_file(cache_folder(tiny_checkpoint, AUTO_TILE))
    marker.parent.mkdir(parents=True)
    marker.write_text("export failed: unsupported operator\n")
    return "unsupported operator; delete"


@pytest.mark.parametrize("why", [_block_onnxruntime, _unwritable_cache, _failed_before])
def test_without_onnx_graphs_the_torch_model_runs_at_the_same_tile(why, tiny_checkpoint,
                                                                   tmp_path, monkeypatch):
    """No ONNX Runtime, a cache that cannot be written, or a model whose export failed before:
    the default path settles on the torch model at its own tile (so the output is the one ONNX
    Runtime would give), with one note saying why, and builds nothing."""
    expected = why(monkeypatch, tmp_path, tiny_checkpoint)
    options, notes = resolve(tiny_checkpoint, default_options())
    assert (options.backend, options.tile, options.artifacts) == ("torch", AUTO_TILE, None)
    assert len(notes) == 1 and expected in notes[0] and "running the torch model" in notes[0]
    assert not [p for p in tmp_path.rglob("exports/*") if p.is_dir()]  # nothing was built


def test_the_torch_fallback_runs_and_says_so_once(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    src = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((9, 13, 3)) * 255).astype(np.uint8)).save(src)
    code, _, err = upscale([src, "-o", tmp_path / "auto.png", "--model", tiny_checkpoint,
                            "--backend", "auto", "--tile", 16], capsys)
    assert code == 0, err
    assert sum("running the torch model" in line for line in err.splitlines()) == 1, err
    code, _, err = upscale([src, "-o", tmp_path / "torch.png", "--model", tiny_checkpoint,
                            "--backend", "torch", "--tile", 16], capsys)
    assert code == 0, err
    assert np.array_equal(pixels(tmp_path / "auto.png"), pixels(tmp_path / "torch.png"))


def test_bad_input_on_the_default_path_fails_before_any_build(tiny_checkpoint, tmp_path,
                                                              monkeypatch, capsys):
    """A broken photo, or a precision the default path does not build, is one line at once: no
    export is started and nothing is cached."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    for args, message in (([broken], "broken.png"), ([good, "--precision", "w8a16"], "--artifacts")):
        code, _, err = upscale([*args, "-o", tmp_path / "o.png", "--model", tiny_checkpoint,
                                "--backend", "auto"], capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o.png").exists()


def test_w8a8_whose_fp32_build_failed_says_so_once_and_remembers_nothing_of_its_own(
        tiny_checkpoint, tmp_path, monkeypatch):
    """The int8 graphs start from the fp32 ones: when those failed to build, the one line says
    that failure once, and no int8 refusal is recorded (mending the fp32 build is enough)."""
    from f2i_mobile.calibration import default_path
    from f2i_mobile.core.errors import F2IError

    _failed_before(monkeypatch, tmp_path, tiny_checkpoint)
    with pytest.raises(F2IError) as info:
        default_path.resolve(tiny_checkpoint, default_options(precision="w8a8"))
    message = str(info.value)
    assert message.count("export failed") == 1 and "unsupported operator" in message, message
    assert [p.name for p in (tmp_path / "cache").rglob("*.failed")] == [
        failure_file(cache_folder(tiny_checkpoint, AUTO_TILE)).name]


@pytest.mark.slow
def test_w8a8_on_the_default_path_is_built_once_and_kept_only_past_the_gate(
        tiny_checkpoint, default_path, tmp_path, monkeypatch, capsys):
    """`--precision w8a8` without artifacts builds the model's int8 ONNX graphs into the cache,
    from its cached fp32 graphs (not exported again), and runs its quantization gate on
    held-out tiles in the same build: graphs that miss it are refused in one line (nothing
    cached but the reason, no output), graphs that pass are kept and reused, and their output
    is near the fp32 default's."""
    from f2i_mobile.calibration import report

    photo = Path(__file__).parents[2] / "examples" / "chelsea_lr.png"  # a photo, not noise
    fp32 = tmp_path / "fp32.png"
    shutil.copytree(default_path.cache_home, tmp_path / "cache")  # its fp32 graphs are built
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, _, err = upscale([photo, "-o", fp32, "--model", tiny_checkpoint, "--tile", 16,
                            "--backend", "auto"], capsys)
    assert code == 0 and "building" not in err, err
    out = tmp_path / "int8.png"
    args = [photo, "-o", out, "--model", tiny_checkpoint, "--tile", 16,
            "--precision", "w8a8", "--backend", "auto"]
    monkeypatch.setitem(report.MIN_PSNR, "w8a8", 200.0)  # no int8 graph is that close
    code, _, err = upscale(args, capsys)
    errors = [line for line in err.splitlines() if "error" in line]  # beside the progress bars
    assert code == 1 and len(errors) == 1 and "miss the quantization gate" in errors[0], err
    assert not out.exists() and "building the ONNX graphs" not in err  # the fp32 ones: cached
    [failed] = (tmp_path / "cache").rglob("*.failed")
    export = failed.with_name(failed.name.removesuffix(".failed"))
    assert not export.exists()  # no graphs kept
    code, _, err = upscale(args, capsys)  # remembered: no second build
    assert code == 1 and "delete" in err and "building" not in err, err

    failed.unlink()
    monkeypatch.setitem(report.MIN_PSNR, "w8a8", 20.0)  # the tiny model is random: a low gate
    code, _, err = upscale(args, capsys)
    assert code == 0 and sum("building the w8a8 ONNX graphs" in line
                             for line in err.splitlines()) == 1, err
    assert ("onnx", "w8a8") in Manifest.load(export).variants()
    first = pixels(out)
    code, _, err = upscale(args, capsys)
    assert code == 0 and "building" not in err and np.array_equal(pixels(out), first)
    # where this CPU's int8 kernels would saturate (x86 without VNNI) the user is told they ran
    # unfused, at float speed, and nowhere else
    assert ("note: int8 QDQ graphs run unfused" in err) == runs_unfused(True), err
    # int8, not the fp32 graphs, and the same picture (the untrained tiny model's int8 error is
    # large: 21 dB here; the gate above is what holds a real model to its target)
    assert not np.array_equal(first, pixels(fp32)) and psnr(first, pixels(fp32), 255.0) > 15
