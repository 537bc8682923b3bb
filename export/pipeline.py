"""`f2i-mobile export`: the model's four graphs -> OUT/<backend>/<graph>.<ext> + OUT/manifest.json.

Every artifact is lowered inside a hidden work folder next to its final place and renamed into
place only when complete, and the manifest is rewritten (atomically) after each one: a crash or
a kill leaves complete artifacts listed in the manifest and, at worst, a hidden `.work-*` folder
that the next export into OUT sweeps away. A failing graph is reported with its backend and
reason; the others still export, and the command exits non-zero at the end (`--fail-fast`
stops at the first failure instead).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from export import coreml, executorch, onnx, tflite, vendor
from export.common import PRECISIONS, Lowered
from f2i_mobile.errors import F2IError
from f2i_mobile.graphs import GRAPHS, count_flops, count_params, graph_modules, graph_specs
from f2i_mobile.graphs import one_step_record
from f2i_mobile.manifest import Artifact, GraphInfo, Manifest, TensorInfo, path_size, sha256_path
from f2i_mobile.models import F2IDiffSR


@dataclass(frozen=True)
class Backend:
    name: str
    ext: str
    runnable: bool  # a runtime on this machine can run it (parity)
    lower: Callable[..., Lowered]
    check: Callable[[], object] = lambda: None  # SDK check, before any work


BACKENDS = {
    "executorch": Backend("executorch", executorch.EXT, executorch.RUNNABLE, executorch.lower),
    "tflite": Backend("tflite", tflite.EXT, tflite.RUNNABLE, tflite.lower),
    "coreml": Backend("coreml", coreml.EXT, coreml.RUNNABLE, coreml.lower),
    "onnx": Backend("onnx", onnx.EXT, onnx.RUNNABLE, onnx.lower),
    **{name: Backend(name, vendor.EXT, vendor.RUNNABLE, vendor.lower_for(name),
                     lambda name=name: vendor.check(name)) for name in vendor.VENDORS},
}
DEFAULT_BACKENDS = ("executorch", "tflite", "coreml", "onnx")


@dataclass
class Failure:
    backend: str
    graph: str
    reason: str

    def __str__(self) -> str:
        return f"{self.backend}/{self.graph}: {self.reason}"


def parse_backends(text: str | None) -> list[Backend]:
    """Names -> backends, each vendor SDK checked now, before any export work."""
    names = [n.strip() for n in (text or ",".join(DEFAULT_BACKENDS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise F2IError(f"unknown backend(s) {', '.join(unknown) or '(none)'}; choose from "
                       f"{', '.join(BACKENDS)}")
    for name in names:
        BACKENDS[name].check()
    return [BACKENDS[n] for n in dict.fromkeys(names)]


def artifact_name(graph: str, precision: str, ext: str) -> str:
    return f"{graph}.{ext}" if precision == "fp32" else f"{graph}.{precision}.{ext}"


def new_manifest(model: F2IDiffSR, tile: int, batch: int = 1) -> Manifest:
    config = model.config
    specs = graph_specs(config, tile, batch)
    params, flops = count_params(model), count_flops(model, tile)

    def infos(tensors):
        return [TensorInfo(t.name, list(t.shape), t.layout, t.description, t.dtype)
                for t in tensors]

    graphs = {name: GraphInfo(name, s.description, infos(s.inputs), infos(s.outputs),
                              params[name], flops[name] * batch) for name, s in specs.items()}
    return Manifest(
        model={"name": config.name, "config_hash": config.hash(),
               "origin": model.metadata.get("origin", ""), "config": config.to_dict()},
        scale=config.scale, tile=tile, output_tile=tile * config.scale, batch=batch,
        one_step=one_step_record(config), graphs=graphs)


def open_manifest(out: Path, fresh: Manifest) -> Manifest:
    """The manifest already in OUT (to add to) if it is of the same model and tile."""
    if not (out / "manifest.json").is_file():
        return fresh
    old = Manifest.load(out)
    if (old.model.get("config_hash"), old.tile, old.batch) != \
            (fresh.model["config_hash"], fresh.tile, fresh.batch):
        raise F2IError(f"{out} holds an export of another model or tile (config "
                       f"{old.model.get('config_hash')}, tile {old.tile}); use a new --out")
    old.model = fresh.model
    return old


def sweep(folder: Path) -> None:
    """Remove work folders a killed export left behind."""
    for stale in folder.glob(".work-*"):
        shutil.rmtree(stale, ignore_errors=True)


def lower_one(backend: Backend, module, spec, final: Path, precision: str) -> Lowered:
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=final.parent))
    try:
        lowered = backend.lower(module, spec, work / final.name, precision)
        if final.is_dir():  # a .mlpackage being replaced: move the old one aside first
            trash = Path(tempfile.mkdtemp(prefix=".work-", dir=final.parent))
            os.replace(final, trash / final.name)
        for extra in lowered.details.get("external_data", []):  # in place before its graph
            os.replace(work / extra["name"], final.parent / extra["name"])
        os.replace(work / final.name, final)
        return lowered
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for stale in final.parent.glob(".work-*"):
            shutil.rmtree(stale, ignore_errors=True)


def export_model(model: F2IDiffSR, out: str | Path, backends: list[Backend], tile: int | None = None,
                 precision: str = "fp32", fail_fast: bool = False,
                 progress: bool = True) -> tuple[Manifest, list[Failure]]:
    if precision not in PRECISIONS:
        raise F2IError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    out = Path(out)
    tile = tile or model.config.tile
    specs = graph_specs(model.config, tile)
    manifest = open_manifest(out, new_manifest(model, tile))
    out.mkdir(parents=True, exist_ok=True)
    modules = graph_modules(model)
    failures: list[Failure] = []
    jobs = [(b, g) for b in backends for g in GRAPHS]
    bar = tqdm(jobs, desc="export", unit="graph", disable=not progress)
    for backend, graph in bar:
        bar.set_description(f"export {backend.name}/{graph}")
        sweep(out / backend.name)
        final = out / backend.name / artifact_name(graph, precision, backend.ext)
        try:
            lowered = lower_one(backend, modules[graph], specs[graph], final, precision)
        except Exception as exc:  # any backend's failure is reported, not raised
            failures.append(Failure(backend.name, graph, _reason(exc)))
            bar.write(f"failed: {failures[-1]}")
            if fail_fast:
                break
            continue
        manifest.add(Artifact(backend.name, graph, precision, final.relative_to(out).as_posix(),
                              path_size(final), sha256_path(final), lowered.io_layout,
                              lowered.details))
        manifest.save(out)
    bar.close()
    manifest.save(out)
    return manifest, failures


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
