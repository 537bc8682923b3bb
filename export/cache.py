"""`f2i-mobile upscale`'s default path (`--backend auto`): the fastest faithful runtime here, on
the model's graphs built for it once.

On a CPU that is ONNX Runtime on the fp32 graphs (benchmarks/default_path.py measures it against
torch and the other runtimes). The first time a checkpoint runs, `resolve` exports its graphs to
ONNX with the one exporter there is (`pipeline.export_model`) into the user's cache,

    $XDG_CACHE_HOME/f2i-mobile/exports/<model>-<key>/     (or ~/.cache/f2i-mobile/...)
        manifest.json, onnx/<graph>.onnx                   an ordinary export folder

printing one line first, and every later run reuses them, without importing torch. The key is a
digest of the checkpoint's files (names and contents), the tile, and the versions of what shapes
the export (f2i-mobile, torch, onnx, onnxscript, the manifest schema): a retrained checkpoint or
an upgrade builds again. The folder appears whole or not at all (`core.atomic`), so a run killed
mid-build leaves nothing to reuse by mistake.

The default path runs LR tiles of `AUTO_TILE` px (or the model's own tile, when larger): with
the same seam-safe overlap, larger tiles compute fewer pixels twice, and ONNX Runtime ran the
whole photo fastest at this size (benchmarks/onnx_tiles.py). Where ONNX Runtime or the exporter
is missing, or the build fails (the reason is kept beside the cache folder, so a failing model
is not exported again on every run), the torch model runs instead, at the same tile, with a
one-line note: the default output is the same whichever runtime computes it.

An explicit `--backend` never comes here; `--backend auto --artifacts OUT` picks the fastest
runtime of those OUT holds that run here (`PREFERENCE`). `cached_graphs` also builds other
precisions with a build function of the caller's: `--precision w8a8` comes through
`f2i_mobile.calibration.default_path`, which quantizes (a layer above this one).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from f2i_mobile.core.atomic import atomic_dir
from f2i_mobile.core.contract import AUTO, AUTO_TILE, TORCH
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import FORMAT as MANIFEST_FORMAT
from f2i_mobile.core.manifest import MANIFEST, Manifest, sha256_path
from f2i_mobile.core.model_files import config_header, model_folder
from f2i_mobile.runners import why_not_runnable
from f2i_mobile.tiling.cache import cache_dir
from f2i_mobile.upscale import UpscaleOptions

if TYPE_CHECKING:
    from f2i_mobile.models import F2IDiffSR

BACKEND, PRECISION = "onnx", "fp32"  # what the default path builds and runs
# Exported runtimes, fastest first on this CPU at fp32 (ONNX Runtime, ExecuTorch XNNPACK, LiteRT).
PREFERENCE = ("onnx", "executorch", "tflite")
# What the export needs besides torch, and what runs its graphs.
BUILD_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
VERSIONED = ("f2i-mobile", "torch", "onnx", "onnxscript")
BUILD_TIME = "1 to 5 min on 2 CPU cores for the bundled model, by CPU"


class BuildFailed(Exception):
    """The graphs could not be built (this time, or an earlier time: see `failure_file`)."""


def default_options(**fields) -> UpscaleOptions:
    """Options for the default path, as `f2i-mobile upscale` without `--backend` runs it."""
    return UpscaleOptions(backend=AUTO, resolve=resolve, **fields)


def resolve(model_path: str | Path | None, options: UpscaleOptions,
            ) -> tuple[UpscaleOptions, list[str]]:
    """`options` with backend auto made concrete (backend, artifacts, tile), and notes on the
    choice for the user (a fallback to torch and why). Builds the cached graphs the first time."""
    if options.backend != AUTO:
        return options, []
    if options.artifacts is not None:
        return replace(options, backend=fastest_in(options.artifacts, options.precision)), []
    if options.precision != PRECISION:
        raise F2IError(f"--precision {options.precision} runs an export's graphs: give --backend "
                       f"and --artifacts OUT (the default path builds {PRECISION} graphs, and "
                       f"w8a8 ones through f2i_mobile.calibration.default_path)")
    folder = model_folder(model_path)
    header = config_header(folder)
    tile = options.tile or auto_tile(int(header["config"]["tile"]))
    on_torch = replace(options, backend=TORCH, tile=tile)
    missing = missing_packages()
    if missing:
        return on_torch, [f"note: {', '.join(missing)} not installed (pip install "
                          f"{' '.join(missing)}: the faster ONNX Runtime path); running the "
                          f"torch model"]
    try:
        out = cached_graphs(folder, tile, progress=options.progress)
    except BuildFailed as exc:
        return on_torch, [f"note: no ONNX graphs for this model ({exc}); running the torch model"]
    return replace(options, backend=BACKEND, artifacts=str(out), tile=tile), []


def auto_tile(model_tile: int) -> int:
    return max(model_tile, AUTO_TILE)


def missing_packages() -> list[str]:
    """What the default path's ONNX build needs and this environment lacks."""
    return [p for p in BUILD_PACKAGES if importlib.util.find_spec(p) is None]


def fastest_in(artifacts: str | Path, precision: str) -> str:
    """The first backend of `PREFERENCE` that OUT holds at `precision` and that runs here."""
    variants = Manifest.load(artifacts).variants()
    for backend in PREFERENCE:
        if (backend, precision) in variants and why_not_runnable(backend) is None:
            return backend
    have = ", ".join(f"{b}/{p}" for b, p in variants) or "none"
    runnable = ", ".join(b for b in PREFERENCE if why_not_runnable(b) is None) or "none"
    raise F2IError(f"{artifacts}: no complete {precision} export that runs here (complete: "
                   f"{have}; runnable here: {runnable})")


def cache_folder(folder: Path, tile: int, precision: str = PRECISION) -> Path:
    """Where the graphs of the checkpoint in `folder` at `tile` and `precision` are cached."""
    digest = hashlib.sha256(sha256_path(folder).encode())
    for part in (f"tile={tile}", f"precision={precision}", MANIFEST_FORMAT,
                 *(f"{p}={_version(p)}" for p in VERSIONED)):
        digest.update(part.encode() + b"\0")
    name = config_header(folder)["config"].get("name", "model")
    return cache_dir() / "exports" / f"{name}-{digest.hexdigest()[:16]}"


def failure_file(out: Path) -> Path:
    return out.with_name(out.name + ".failed")


Build = Callable[["F2IDiffSR", Path, int, bool], None]  # (model, work folder, tile, progress)


def cached_graphs(folder: Path, tile: int, progress: bool = False, precision: str = PRECISION,
                  build: Build | None = None, build_time: str = BUILD_TIME) -> Path:
    """The cached export of the checkpoint in `folder` at `tile` and `precision`, built now by
    `build` (default: the fp32 ONNX export) if there is none. Raises BuildFailed, with the
    reason, when it cannot be built (now or before)."""
    out = cache_folder(folder, tile, precision)
    if _complete(out, precision):
        return out
    failed = failure_file(out)
    if failed.is_file():
        raise BuildFailed(f"{failed.read_text().strip()}; delete {failed} to try again")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only home, say: try again next time
        raise BuildFailed(f"cannot write {out.parent}: {exc.strerror or exc}") from None
    name = out.name.rsplit("-", 1)[0]
    if progress:
        graphs = "ONNX graphs" if precision == PRECISION else f"{precision} ONNX graphs"
        print(f"building the {graphs} for {name} once ({build_time}), cached in {out}",
              file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        _build(folder, out, tile, progress, precision, build or export_onnx)
    except _AlreadyBuilt:
        pass
    except OSError as exc:  # a full disk, say: try again next time
        raise BuildFailed(f"cannot write {out.parent}: {exc.strerror or exc}") from None
    except BuildFailed:  # a build this one starts from (int8 from fp32) failed and said why
        raise
    except Exception as exc:
        reason = f"export failed: {' '.join(str(exc).split())[:300] or type(exc).__name__}"
        try:
            failed.write_text(reason + "\n")
        except OSError:
            pass
        raise BuildFailed(reason) from None
    if progress:
        print(f"built in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return out


class _AlreadyBuilt(Exception):
    """Another process finished the same build first: keep its folder, drop this one."""


def _build(folder: Path, out: Path, tile: int, progress: bool, precision: str,
           build: Build) -> None:
    from f2i_mobile.models import from_pretrained

    model = from_pretrained(folder)
    with atomic_dir(out) as work:
        build(model, work, tile, progress)
        if _complete(out, precision):
            raise _AlreadyBuilt


def export_onnx(model: F2IDiffSR, work: Path, tile: int, progress: bool) -> None:
    """The default build: the model's fp32 ONNX graphs into `work`."""
    from f2i_mobile.export.lowering import check_backends
    from f2i_mobile.export.pipeline import export_model

    _, failures = export_model(model, work, check_backends(BACKEND), tile, PRECISION,
                               fail_fast=True, progress=progress)
    if failures:
        raise RuntimeError("; ".join(str(f) for f in failures))


def _complete(out: Path, precision: str = PRECISION) -> bool:
    if not (out / MANIFEST).is_file():
        return False
    try:
        return (BACKEND, precision) in Manifest.load(out).variants()
    except F2IError:  # unreadable: built again, in its place
        return False


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"
