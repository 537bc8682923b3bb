"""Graph runners: one per runtime behind `GraphRunner` (see base.py). Importing this package
imports no torch; each runtime's module is imported only when that runner is opened.

`open_runner(backend, artifacts, precision)` opens an export folder (OUT/manifest.json) for one
runtime; graphs are loaded on first use and dropped with `release(graph)`."""

from __future__ import annotations

import importlib
from pathlib import Path

from f2i_mobile.errors import F2IError
from f2i_mobile.runners.base import GraphRunner

# backend -> (module, class) of the runner that runs its artifacts here
RUNNERS = {
    "executorch": ("executorch_runner", "ExecuTorchRunner"),
    "tflite": ("tflite_runner", "TFLiteRunner"),
    "onnx": ("onnx_runner", "ONNXRunner"),
}


def open_runner(backend: str, artifacts: str | Path, precision: str = "fp32") -> GraphRunner:
    from f2i_mobile.manifest import GRAPH_ORDER, Manifest

    manifest = Manifest.load(artifacts)
    have = ", ".join(f"{b}/{p}" for b, p in manifest.variants()) or "none"
    if (backend, precision) not in manifest.variants():
        raise F2IError(f"{artifacts}: no complete {precision} {backend} export (all of "
                       f"{', '.join(GRAPH_ORDER)}); the manifest has: {have}")
    if backend not in RUNNERS:
        raise F2IError(f"no runtime for {backend} artifacts on this machine; runnable here: "
                       f"{', '.join(RUNNERS)}")
    module, cls = RUNNERS[backend]
    runner_cls = getattr(importlib.import_module(f"f2i_mobile.runners.{module}"), cls)
    return runner_cls(artifacts, manifest, precision)


__all__ = ["GraphRunner", "RUNNERS", "open_runner"]
