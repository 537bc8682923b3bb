"""Graph runners: one per runtime behind `GraphRunner` (see base.py). Importing this package
imports no torch; each runtime's module is imported only when that runner is opened."""

from __future__ import annotations

from pathlib import Path

from f2i_mobile.errors import F2IError
from f2i_mobile.runners.base import GraphRunner

__all__ = ["GraphRunner", "open_runner", "RUNNABLE_BACKENDS"]

RUNNABLE_BACKENDS = ("executorch", "tflite", "onnx")


def open_runner(backend: str, artifacts: str | Path, precision: str = "fp32") -> GraphRunner:
    """A runner over the exported artifacts in `artifacts` (an `f2i-mobile export` folder)."""
    from f2i_mobile.manifest import Manifest
    from f2i_mobile.runners.artifact_runner import RUNNERS

    manifest = Manifest.load(artifacts)
    if backend not in RUNNERS:
        raise F2IError(f"backend {backend!r} cannot run on this machine; runnable here: "
                       f"{', '.join(RUNNERS)}")
    if (backend, precision) not in manifest.variants():
        have = ", ".join(f"{b}/{p}" for b, p in manifest.variants()) or "none"
        raise F2IError(f"{artifacts} has no complete {backend}/{precision} export "
                       f"(complete: {have})")
    return RUNNERS[backend](manifest, Path(artifacts), backend, precision)
