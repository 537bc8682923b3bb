"""The host bench over a real export: every runtime here timed through the worker process."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
from conftest import CLI


@pytest.mark.slow
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
