"""The exported graphs in use: upscaling through each runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import CLI
from PIL import Image


def _photo(path, height, width, noise=8.0):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], 2)
    image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def _sky(path, height, width):
    """A smooth sky: light blue at the horizon to deep blue above, no texture: where tiles
    normalised on their own would differ most."""
    t = np.linspace(0, 1, height)[:, None, None]
    top, horizon = np.array([40, 90, 200]), np.array([190, 215, 245])
    image = np.broadcast_to(top + (horizon - top) * t, (height, width, 3))
    Image.fromarray(np.round(image).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return {"one_tile": _photo(folder / "one.png", 16, 16),
            "tiles": _photo(folder / "tiles.png", 32, 40),  # 12 tiles of the tiny model
            "sky": _sky(folder / "sky.png", 32, 40)}


@pytest.fixture(scope="module")
def torch_outputs(photos, tiny_checkpoint, tmp_path_factory):
    """The torch path's output of each test photo, the reference every runtime must give
    (computed once per worker, not once per runtime)."""
    folder = tmp_path_factory.mktemp("torch")
    return {name: _upscale([str(photos[name]), "--model", str(tiny_checkpoint)],
                           folder / f"{name}.png") for name in ("one_tile", "tiles")}


def _upscale(args, output):
    """`upscale ARGS` in a subprocess; torch unless ARGS name a backend."""
    backend = [] if "--backend" in args else ["--backend", "torch"]
    r = subprocess.run(CLI + ["upscale", *args, *backend, "-o", str(output)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    # the export's manifest carries the receptive field: no note that seams went unchecked
    assert "not measured" not in r.stderr, r.stderr
    return np.asarray(Image.open(output), dtype=np.float64)


def _psnr(a, b):
    from f2i_mobile.core.fidelity import psnr

    return psnr(a, b, 255.0)


def _check_tiled_like_torch(out, torch_outputs, photos, tmp_path, backend):
    """A photo of many tiles through the export agrees with the torch path at 50 dB or more,
    and on a smooth sky no tile border steps more than the inside of a tile does."""
    from f2i_mobile.core.fidelity import seam_steps
    from f2i_mobile.core.manifest import Manifest
    from f2i_mobile.core.planner import photo_calls

    torch_path = torch_outputs["tiles"]
    got = _upscale([str(photos["tiles"]), "--backend", backend, "--artifacts", str(out)],
                   tmp_path / f"{backend}.png")
    plan, _ = photo_calls(Manifest.load(out), 160, 128)
    assert plan.count >= 6 and got.shape == torch_path.shape == (128, 160, 3)
    assert _psnr(got, torch_path) >= 50
    sky = _upscale([str(photos["sky"]), "--backend", backend, "--artifacts", str(out)],
                   tmp_path / f"sky_{backend}.png")
    border, inside = seam_steps(sky / 255.0, plan)
    assert border <= inside, (border, inside)


def _check_one_tile_like_torch(out, torch_outputs, photos, tmp_path, backend):
    ref = torch_outputs["one_tile"]
    got = _upscale([str(photos["one_tile"]), "--backend", backend, "--artifacts", str(out)],
                   tmp_path / "b1.png")
    assert ref.shape == got.shape == (64, 64, 3)
    assert np.abs(ref - got).max() <= 2  # 8-bit rounding of float differences at ~1e-5


def test_onnx_upscales_like_torch(onnx_export, torch_outputs, photos, tmp_path):
    """The default path's ONNX graphs (the `exported` fixture's, too): one tile and many."""
    _check_one_tile_like_torch(onnx_export[0], torch_outputs, photos, tmp_path, "onnx")
    _check_tiled_like_torch(onnx_export[0], torch_outputs, photos, tmp_path, "onnx")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["executorch", "tflite"])  # onnx: in the quick tier
def test_upscale_through_exported_graphs(exported, torch_outputs, photos, tmp_path, backend):
    """One tile and many: each runtime gives the torch path's output."""
    out, _ = exported
    _check_one_tile_like_torch(out, torch_outputs, photos, tmp_path, backend)
    _check_tiled_like_torch(out, torch_outputs, photos, tmp_path, backend)


def test_upscale_with_a_backend_the_export_lacks_is_one_line(onnx_export, photos, tmp_path):
    out, _ = onnx_export
    r = subprocess.run(CLI + ["upscale", str(photos["tiles"]), "-o", str(tmp_path / "x.png"),
                              "--backend", "onnx", "--artifacts", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_budget_through_exported_graphs_counts_what_the_runtime_holds(onnx_export, photos,
                                                                       tmp_path):
    """`--memory-budget` with an exported backend plans on the runtime's measured memory (each
    graph loaded and run through the runtime), and refuses a budget below it in one line before
    any tile."""
    out, manifest = onnx_export
    measure = ("import json, sys\n"
               "from f2i_mobile.core.manifest import Manifest\n"
               "from f2i_mobile.runners import open_runner\n"
               "from f2i_mobile.tiling.runner_costs import artifact_costs\n"
               "m = Manifest.load(sys.argv[1])\n"
               "costs = artifact_costs(open_runner('onnx', artifacts=sys.argv[1]), m)\n"
               "print(json.dumps({g: vars(c) for g, c in costs.items()}))\n")
    r = subprocess.run([sys.executable, "-c", measure, str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    costs = json.loads(r.stdout)
    assert set(costs) == set(manifest.graphs)
    assert sum(c["weight_bytes"] for c in costs.values()) > 0  # sessions are resident
    for g, c in costs.items():
        assert c["gflops"] == pytest.approx(manifest.graphs[g].flops / manifest.batch / 1e9)
    args = [str(photos["tiles"]), "--backend", "onnx", "--artifacts", str(out)]
    r = subprocess.run(CLI + ["upscale", *args, "-o", str(tmp_path / "p.png"), "--plan",
                              "--memory-budget", "8GiB"], capture_output=True, text=True)
    assert r.returncode == 0 and "peak memory estimate" in r.stdout, r.stderr
    r = subprocess.run(CLI + ["upscale", *args, "-o", str(tmp_path / "x.png"),
                              "--memory-budget", "1MiB"], capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "cannot be met" in r.stderr and not (tmp_path / "x.png").exists()
