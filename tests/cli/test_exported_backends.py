"""The exported graphs in use: upscaling through each runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import CLI
from PIL import Image


def _photo(path, height, width):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], 2)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return {"one_tile": _photo(folder / "one.png", 16, 16),
            "tiles": _photo(folder / "tiles.png", 20, 28)}


def _upscale(args, output):
    r = subprocess.run(CLI + ["upscale", *args, "-o", str(output)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return np.asarray(Image.open(output), dtype=np.float64)


def _tile_normalised_reference(checkpoint, path, overlap):
    """The photo through the same tile plan in torch, each graph normalising per tile as the
    exported graphs do (no image-wide statistics), as 8-bit pixels."""
    from f2i_mobile.core.image import read_image
    from f2i_mobile.models import from_pretrained
    from f2i_mobile.runners.torch_runner import TorchRunner
    from f2i_mobile.upscale import UpscaleOptions, assemble, open_engine, plan_job, run_job

    model = from_pretrained(checkpoint)
    options = UpscaleOptions(overlap=overlap)
    engine = open_engine(None, options, model=model)
    engine.runner = TorchRunner.of_model(model)
    photo = read_image(path)
    job = plan_job(engine, photo, None, options)
    sr = assemble(run_job(engine, job, photo, options), photo, job, options)
    return np.round(np.clip(sr.rgb, 0, 1) * 255), job.plan.count


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["executorch", "tflite", "onnx"])
def test_upscale_through_exported_graphs(exported, tiny_checkpoint, photos, tmp_path, backend):
    """One tile: the exported graphs give torch's output. Several tiles: each runtime gives
    what the same graphs give in torch over the same tile plan."""
    out, _ = exported
    ref = _upscale([str(photos["one_tile"]), "--model", str(tiny_checkpoint)], tmp_path / "t.png")
    got = _upscale([str(photos["one_tile"]), "--backend", backend, "--artifacts", str(out)],
                   tmp_path / "b.png")
    assert ref.shape == got.shape == (64, 64, 3)
    assert np.abs(ref - got).max() <= 2  # 8-bit rounding of float differences at ~1e-5
    tiled = _upscale([str(photos["tiles"]), "--artifacts", str(out), "--overlap", "8",
                      "--backend", backend], tmp_path / "tiled.png")
    want, tiles = _tile_normalised_reference(tiny_checkpoint, photos["tiles"], 8)
    assert tiles > 1 and tiled.shape == want.shape == (80, 112, 3)
    assert np.abs(want - tiled).max() <= 2


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
