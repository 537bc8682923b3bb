"""The exported graphs in use: upscaling through each runtime, and the host bench over them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

CLI = [sys.executable, "-m", "f2i_mobile.cli"]


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


@pytest.mark.parametrize("backend", ["executorch", "tflite", "onnx"])
def test_upscale_through_exported_graphs(exported, tiny_checkpoint, photos, tmp_path, backend):
    """One tile: the exported graphs give torch's output. Several tiles: every runtime gives the
    same output (exported graphs normalise per tile; torch uses image-wide statistics)."""
    out, _ = exported
    ref = _upscale([str(photos["one_tile"]), "--model", str(tiny_checkpoint)], tmp_path / "t.png")
    got = _upscale([str(photos["one_tile"]), "--backend", backend, "--artifacts", str(out)],
                   tmp_path / "b.png")
    assert ref.shape == got.shape == (64, 64, 3)
    assert np.abs(ref - got).max() <= 2  # 8-bit rounding of float differences at ~1e-5
    args = [str(photos["tiles"]), "--artifacts", str(out), "--overlap", "8"]
    onnx = _upscale(args + ["--backend", "onnx"], tmp_path / "onnx.png")
    tiled = _upscale(args + ["--backend", backend], tmp_path / "tiled.png")
    assert tiled.shape == (80, 112, 3)
    assert np.abs(onnx - tiled).max() <= 2


def test_upscale_with_a_backend_the_export_lacks_is_one_line(exported, photos, tmp_path):
    out, _ = exported
    r = subprocess.run(CLI + ["upscale", str(photos["tiles"]), "-o", str(tmp_path / "x.png"),
                              "--backend", "onnx", "--artifacts", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_host_bench_runs_every_runnable_backend(exported, tmp_path):
    out, _ = exported
    report = tmp_path / "bench.json"
    r = subprocess.run(CLI + ["bench", "--artifacts", str(out), "--host", "--runs", "3",
                              "--warmup", "1", "--json", str(report)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = json.loads(report.read_text())
    text = json.dumps(data)
    for backend in ("executorch", "tflite", "onnx"):
        assert backend in text
    records = [rec for rec in _records(data) if rec.get("graph") in
               ("conditioner", "encoder", "unet", "decoder")]
    # Core ML was exported but cannot predict off macOS: skipped with the reason, never timed.
    assert "coreml" not in {rec.get("backend") for rec in records}
    assert any(s["backend"] == "coreml" and "macOS" in s["reason"] for s in data["skipped"])
    assert len(records) >= 12
    for rec in records:
        assert rec["runs"] == 3 and rec["min_ms"] <= rec["median_ms"] <= rec["max_ms"]
    assert report.with_suffix(".csv").is_file()
    with open(report.with_suffix(".csv")) as f:
        assert len(list(csv.DictReader(f))) >= 12
    png = report.with_suffix(".png")
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def _records(data) -> list[dict]:
    """Every dict in the report that looks like a per-graph timing record."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            if "median_ms" in x:
                found.append(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(data)
    return found


def test_budget_through_exported_graphs_counts_what_the_runtime_holds(exported, photos,
                                                                       tmp_path):
    """`--memory-budget` with an exported backend plans on the runtime's measured memory (each
    graph loaded and run through the runtime), and refuses a budget below it in one line before
    any tile."""
    out, manifest = exported
    measure = ("import json, sys\n"
               "from f2i_mobile.manifest import Manifest\n"
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
