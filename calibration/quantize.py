"""Quantize the graphs for a backend and its schemes, write the artifacts and the manifest.

    OUT/calibration/                     the calibration set the artifacts were calibrated on
    OUT/<backend>/<graph>.<scheme>.<ext> one artifact per graph, atomically written
    OUT/manifest.json                    an Artifact per graph, precision = the scheme

Each backend goes through its own tool (schemes.py), on top of the export layer's float lowering,
its manifest and its atomic publishing (`export.pipeline.publish`); `open_quantized` runs the
artifacts with the backend's runtime here (Core ML: the torch graphs with the same compressed
weights). qnn needs the QNN SDK to write its .pte: without it the request fails at once, before
any work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from f2i_mobile.calibration import (
    quant_coreml,
    quant_executorch,
    quant_onnx,
    quant_qnn,
    quant_tflite,
)
from f2i_mobile.calibration.capture import (
    CalibrationSet,
    capture,
    captured_from,
    captured_tile,
    is_calibration_set,
    load_calibration,
)
from f2i_mobile.calibration.schemes import check_scheme
from f2i_mobile.core.contract import (
    BACKENDS,
    GRAPHS,
    SCHEMES,
    GraphSpec,
    Precision,
    parse_backends,
)
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import Artifact, Manifest
from f2i_mobile.core.quiet import quiet_libraries
from f2i_mobile.core.samples import HELD_OUT
from f2i_mobile.export import lowering, vendor
from f2i_mobile.export.common import Lowered
from f2i_mobile.export.pipeline import open_manifest, publish
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.graphs import graph_modules
from f2i_mobile.runners import GraphRunner, open_runner
from f2i_mobile.runners.torch_runner import TorchRunner

CALIBRATION_DIR = "calibration"
CHECK_DIR = "check"  # held-out tiles for quant-check: photos calibration never saw
CHECK_TILES = 8


@dataclass
class QuantRequest:
    backend: str
    scheme: str  # a calibrated scheme (contract.SCHEMES), the w8a8 base of a mixed artifact
    quantizer: str = "pt2e"  # ExecuTorch only: pt2e or nncf
    float_layers: dict[str, list[str]] = field(default_factory=dict)  # graph -> layers kept float

    @property
    def precision(self) -> str:
        if any(self.float_layers.values()):
            return Precision.MIXED
        return self.scheme if self.quantizer == "pt2e" else f"{self.scheme}-{self.quantizer}"


def prepare_calibration(model: F2IDiffSR, out: Path, source: str | Path | None,
                        tile: int | None = None, tiles: int | None = None) -> CalibrationSet:
    """OUT/calibration from a captured set (copied), a folder of images, or the bundled images."""
    target = out / CALIBRATION_DIR
    if source is not None and is_calibration_set(source):
        if Path(source).resolve() != target.resolve():
            shutil.copytree(source, target, dirs_exist_ok=True)
        calib = load_calibration(target)
        if not captured_from(calib, model):
            raise F2IError(f"calibration set {source} was captured with another model (or "
                           f"other weights of this one)")
        return calib
    kwargs = {"tiles": tiles} if tiles else {}
    return capture(model, target, source, tile=tile, **kwargs)


def prepare_check(model: F2IDiffSR, out: Path, tile: int) -> CalibrationSet:
    """OUT/check: tiles of the held-out photos, with the float graphs' tensors, unless one of
    this model and tile is there already."""
    target = out / CHECK_DIR
    if is_calibration_set(target):
        check = load_calibration(target)
        if captured_from(check, model) and check.index["tile"] == tile:
            return check
    return capture(model, target, None, tiles=CHECK_TILES, tile=tile, bundled=HELD_OUT)


def torch_inputs(calib: CalibrationSet, graph: str) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(torch.from_numpy(a) for a in feed.values()) for feed in calib.graph_inputs(graph)]


def quantize_graph(module: torch.nn.Module, spec: GraphSpec, calib: CalibrationSet,
                   request: QuantRequest, path: Path, work: Path) -> Lowered:
    """Write one quantized artifact at `path` (inside the publishing work folder)."""
    inputs = torch_inputs(calib, spec.name)
    if request.backend == "executorch":
        converted = quant_executorch.quantize(module, inputs, request.quantizer,
                                              skip=set(request.float_layers.get(spec.name, ())))
        path.write_bytes(quant_executorch.lower(converted, spec))
        return Lowered(details={"tool": f"{request.quantizer}: XNNPACKQuantizer per-channel "
                                        "symmetric, static activations",
                                "delegate": "XnnpackBackend"})
    if request.backend == "qnn":
        converted = quant_qnn.quantize(module, inputs, request.scheme)
        path.write_bytes(quant_qnn.lower(converted, spec))
        return Lowered(details={"tool": f"pt2e: QnnQuantizer "
                                        f"{quant_qnn.DTYPES[request.scheme].removeprefix('use_')}"
                                        ", per-channel weights, static activations",
                                "delegate": "qnn", "soc": vendor.VENDORS["qnn"].target()})
    if request.backend == "tflite":
        return Lowered(*quant_tflite.quantize(module, spec, inputs, request.scheme, path, work))
    if request.backend == "onnx":
        float_path = work / f"{spec.name}.fp32.onnx"
        if not float_path.exists():  # lowered for an earlier scheme, or seeded (float_export)
            lowering.lowerer("onnx")(module, spec, float_path, "fp32")
        return Lowered(details=quant_onnx.quantize(float_path, inputs, list(spec.input_names),
                                                   path))
    if request.backend == "coreml":
        mlmodel = quant_coreml.convert_float(module, spec, work / f"{spec.name}.fp16.mlpackage")
        return Lowered(details=quant_coreml.compress(mlmodel, request.scheme, path))
    raise F2IError(f"--quant: no quantizer for backend {request.backend!r}")


def check_request(backend: str, scheme: str) -> None:
    """Everything that can refuse (backend, scheme) without work: the pair (schemes.py) and, for
    a vendor NPU, its SDK (one line naming the SDK and its variable)."""
    check_scheme(scheme, backend)
    lowering.check_sdk(BACKENDS[backend])


def check_requests(backends: str | None, schemes: str) -> list[QuantRequest]:
    """The requests of `--quant scheme[,scheme...]`: each scheme on `backends`, or on every
    default backend that takes it, each pair and vendor SDK checked: one line, before any
    work."""
    from f2i_mobile.calibration.schemes import supported_backends

    names = [s.strip() for s in schemes.split(",") if s.strip()]
    if not names:
        raise F2IError(f"--quant: name a scheme ({', '.join(SCHEMES)})")
    requests = []
    for scheme in dict.fromkeys(names):
        for name in ([b.name for b in parse_backends(backends)] if backends
                     else supported_backends(scheme)):
            check_request(name, scheme)
            requests.append(QuantRequest(name, scheme))
    return requests


def quantize_backends(model: F2IDiffSR, out: str | Path, requests: list[QuantRequest],
                      calibration: str | Path | None = None, tile: int | None = None,
                      ) -> list[Artifact]:
    """`quantize_model` for each backend in turn, with all of its requests (its float graphs
    lowered once), on one calibration set (captured for the first, reused by the others)."""
    artifacts = []
    by_backend: dict[str, list[QuantRequest]] = {}
    for request in requests:
        by_backend.setdefault(request.backend, []).append(request)
    for i, group in enumerate(by_backend.values()):
        source = calibration if i == 0 else Path(out) / CALIBRATION_DIR
        artifacts += quantize_model(model, out, group, calibration=source, tile=tile)
    return artifacts


def quantize_model(model: F2IDiffSR, out: str | Path,
                   requests: QuantRequest | Sequence[QuantRequest],
                   calibration: str | Path | None = None, tile: int | None = None,
                   tiles: int | None = None, float_export: str | Path | None = None,
                   ) -> list[Artifact]:
    """Quantize every graph for each request into OUT, calibrated on `calibration`. Requests
    share one work folder, so a backend whose quantizer starts from its float artifact (TFLite,
    ONNX, Core ML) lowers each graph once for all its schemes. `float_export`: an export folder
    of this same model at this tile whose fp32 ONNX or TFLite graphs the quantizers start from
    rather than lowering the graphs again (the float export is most of an ONNX int8 build); by
    default OUT itself (`export --quant` next to a float export)."""
    requests = [requests] if isinstance(requests, QuantRequest) else list(requests)
    for request in requests:
        check_request(request.backend, request.scheme)
        if request.quantizer != "pt2e" and request.backend != "executorch":
            raise F2IError(f"--quantizer {request.quantizer} applies to executorch only")
    quiet_libraries()  # again: importing torch reset the exporters' loggers to WARNING
    out = Path(out)
    if calibration is not None and is_calibration_set(calibration):
        tile = captured_tile(calibration)  # a captured set keeps the tile it was captured at
    tile = tile or model.config.tile
    # An OUT or float export of another model (config or weights) or tile is refused before
    # any capture.
    manifest = open_manifest(out, model, tile)
    seeds = float_graphs(Path(float_export or out), manifest,
                         {r.backend for r in requests} & set(FLOAT_SEEDED))
    calib = prepare_calibration(model, out, calibration, tile, tiles)
    prepare_check(model, out, tile)
    modules = graph_modules(model)
    work = Path(tempfile.mkdtemp(prefix=".quantize.", suffix=".tmp", dir=out))
    artifacts = []
    try:
        link_into(work, seeds)
        for request in requests:
            for graph in tqdm(GRAPHS, desc=f"quantizing {request.backend} {request.precision}",
                              unit="graph"):
                def write(path: Path, graph: str = graph, request=request) -> Lowered:
                    lowered = quantize_graph(modules[graph], manifest.graphs[graph], calib,
                                             request, path, work)
                    lowered.details.update(scheme=request.scheme, calibration=CALIBRATION_DIR,
                                           float_layers=request.float_layers.get(graph, []))
                    return lowered

                artifacts.append(publish(manifest, out, request.backend, graph,
                                         request.precision, write))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return artifacts


# Backends whose quantizer starts from the graph's float artifact, named in the work folder as
# `quantize_graph` lowers it.
FLOAT_SEEDED = {"onnx": ".fp32.onnx", "tflite": ".fp32.tflite"}


def float_graphs(float_export: Path, manifest: Manifest, backends: set[str],
                 ) -> list[tuple[Path, str]]:
    """(file, name in the work folder) of each fp32 graph of `backends` that `float_export`
    holds, named as `quantize_graph` lowers it, ONNX external data files with it (an .onnx
    names those by a relative location, not by its own file name). Refuses an export of
    another model or tile in one line; a folder without an export, or without those backends'
    fp32 graphs, gives none."""
    if not backends or not (float_export / "manifest.json").is_file():
        return []
    exported = Manifest.load(float_export)
    if not exported.model.same_model(manifest.model) or exported.tile != manifest.tile:
        raise F2IError(f"{float_export}: its float graphs are of another model or tile (config "
                       f"{exported.model.config_hash}, weights {exported.model.weights_hash or '?'}"
                       f", tile {exported.tile}), not the one being quantized (config "
                       f"{manifest.model.config_hash}, weights {manifest.model.weights_hash}, "
                       f"tile {manifest.tile})")
    files = []
    for a in exported.artifacts:
        source = float_export / a.path
        if a.precision != "fp32" or a.backend not in backends or not source.is_file():
            continue  # a graph listed but gone is lowered again instead
        files.append((source, f"{a.graph}{FLOAT_SEEDED[a.backend]}"))
        files += [(source.parent / e["name"], e["name"])
                  for e in a.details.get("external_data", [])]
    return files


def link_into(work: Path, files: list[tuple[Path, str]]) -> None:
    for source, name in files:
        try:
            os.link(source, work / name)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, work / name)


def open_quantized(out: str | Path, backend: str, precision: str,
                   model: F2IDiffSR | None = None) -> GraphRunner:
    """A runner over a quantized variant: the backend's runtime here (open_runner), or for Core
    ML, which cannot predict outside macOS, the torch graphs with the same compressed weights."""
    if backend != "coreml":
        return open_runner(backend, out, precision)
    if model is None:
        raise F2IError("Core ML fidelity is measured in torch: pass the model (--model)")
    manifest = Manifest.load(out)
    modules = {g: quant_coreml.compress_torch(m, manifest.artifact(backend, g, precision)
                                              .details["scheme"])
               for g, m in graph_modules(model).items()}
    return TorchRunner(modules, manifest.graphs, precision)
