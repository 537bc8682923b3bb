"""Graph runners: one per runtime behind `GraphRunner` (base.py). Importing this package imports
no torch and no runtime: `open_runner` imports a backend's runner module (and through it the
runtime) when that backend is opened, so a phone-lab machine needs only the runtimes it uses."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from f2i_mobile.core.contract import BACKENDS
from f2i_mobile.core.contract import backend as backend_info
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import Manifest
from f2i_mobile.runners.base import GraphRunner, run_chain

__all__ = ["GraphRunner", "open_runner", "run_chain", "why_not_runnable"]


def why_not_runnable(backend: str) -> str | None:
    """None when this machine can run the backend's artifacts, else why not, in words."""
    b = backend_info(backend)
    if b.runtime is None:
        return f"{backend} artifacts run on {b.runs_on}, not on this machine"
    if importlib.util.find_spec(b.runtime) is None:
        return f"the {b.runtime} Python package is not installed (pip install 'f2i-mobile[export]')"
    return None


def open_runner(backend: str, artifacts: str | Path, precision: str = "fp32") -> GraphRunner:
    """A runner over the exported artifacts in `artifacts` (an `f2i-mobile export` folder)."""
    manifest = Manifest.load(artifacts)
    why = why_not_runnable(backend)
    if why is not None:
        runnable = [b for b in BACKENDS if why_not_runnable(b) is None]
        raise F2IError(f"{why}; runnable here: {', '.join(runnable) or 'none'}")
    if (backend, precision) not in manifest.variants():
        have = ", ".join(f"{b}/{p}" for b, p in manifest.variants()) or "none"
        raise F2IError(f"{artifacts} has no complete {backend}/{precision} export "
                       f"(complete: {have})")
    module = importlib.import_module(f"f2i_mobile.runners.{backend}_runner")
    return module.RUNNER(manifest, Path(artifacts), backend, precision)
