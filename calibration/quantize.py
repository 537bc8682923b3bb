"""Quantize the four graphs for one backend and scheme, write the artifacts and the manifest.

    OUT/calibration/                    the calibration set the artifacts were calibrated on
    OUT/<backend>/<graph>.<scheme>.<ext> one artifact per graph, atomically written
    OUT/manifest.json                    an Artifact per graph, precision = the scheme

Each backend goes through its own tool (schemes.py), on top of the export layer's float lowering
(export/), its manifest and artifact names; `open_quantized` runs the artifacts with the
backend's runtime here (Core ML: the torch graphs with the same compressed weights). qnn needs
the QNN SDK to write its .pte: without it the request fails at once, before any work.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from calibration import quant_coreml, quant_executorch, quant_onnx, quant_qnn, quant_tflite
from calibration.capture import CalibrationSet, capture, is_calibration_set, load_calibration
from calibration.schemes import check_scheme
from export import onnx as export_onnx
from export import vendor
from export.pipeline import BACKENDS, artifact_name, new_manifest, open_manifest
from f2i_mobile.atomic import atomic_file
from f2i_mobile.errors import F2IError
from f2i_mobile.graphs import GRAPHS, GraphSpec, graph_modules, graph_specs
from f2i_mobile.manifest import Artifact, Manifest, path_size, sha256_path
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.runners import GraphRunner, open_runner
from f2i_mobile.runners.torch_runner import TorchRunner

CALIBRATION_DIR = "calibration"
MIXED = "mixed"  # the precision name of a mixed-precision artifact (sensitivity.py)


@dataclass
class QuantRequest:
    backend: str
    scheme: str  # a scheme of schemes.SCHEMES (the w8a8 base of a mixed artifact)
    quantizer: str = "pt2e"  # ExecuTorch only: pt2e or nncf
    float_layers: dict[str, list[str]] = field(default_factory=dict)  # graph -> layers kept float

    @property
    def precision(self) -> str:
        if any(self.float_layers.values()):
            return MIXED
        return self.scheme if self.quantizer == "pt2e" else f"{self.scheme}-{self.quantizer}"


def prepare_calibration(model: F2IDiffSR, out: Path, source: str | Path | None,
                        tile: int | None = None, tiles: int | None = None) -> CalibrationSet:
    """OUT/calibration from a captured set (copied), a folder of images, or the bundled images."""
    target = out / CALIBRATION_DIR
    if source is not None and is_calibration_set(source):
        if Path(source).resolve() != target.resolve():
            shutil.copytree(source, target, dirs_exist_ok=True)
        calib = load_calibration(target)
        if calib.index["model"]["config_hash"] != model.config.hash():
            raise F2IError(f"calibration set {source} was captured with another model")
        return calib
    kwargs = {"tiles": tiles} if tiles else {}
    return capture(model, target, source, tile=tile, **kwargs)


def torch_inputs(calib: CalibrationSet, graph: str) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(torch.from_numpy(a) for a in feed.values()) for feed in calib.graph_inputs(graph)]


def quantize_graph(module: torch.nn.Module, spec: GraphSpec, calib: CalibrationSet,
                   request: QuantRequest, path: Path, work: Path) -> tuple[dict, dict]:
    """Write one quantized artifact at `path`; returns its (io_layout, details)."""
    inputs = torch_inputs(calib, spec.name)
    if request.backend == "executorch":
        converted = quant_executorch.quantize(module, inputs, request.quantizer,
                                              skip=set(request.float_layers.get(spec.name, ())))
        with atomic_file(path) as tmp:
            tmp.write_bytes(quant_executorch.lower(converted, spec))
        return {}, {"tool": f"{request.quantizer}: XNNPACKQuantizer per-channel symmetric, "
                            "static activations", "delegate": "XnnpackBackend"}
    if request.backend == "qnn":
        return {}, quantize_qnn(module, spec, inputs, request.scheme, path)
    if request.backend == "tflite":
        return quant_tflite.quantize(module, spec, inputs, request.scheme, path, work)
    if request.backend == "onnx":
        float_path = work / f"{spec.name}.fp32.onnx"
        export_onnx.lower(module, spec, float_path, "fp32")
        return {}, quant_onnx.quantize(float_path, inputs, [t.name for t in spec.inputs], path)
    if request.backend == "coreml":
        mlmodel = quant_coreml.convert_float(module, spec, work / f"{spec.name}.fp16.mlpackage")
        return {}, quant_coreml.compress(mlmodel, request.scheme, path)
    raise F2IError(f"unknown backend {request.backend!r}")


def quantize_qnn(module: torch.nn.Module, spec: GraphSpec, inputs: list[tuple[torch.Tensor, ...]],
                 scheme: str, path: Path) -> dict:
    """Quantize for the QNN HTP and write the .pte atomically; the SDK is checked first, so
    that without it nothing is calibrated or written."""
    sdk = vendor.check("qnn")
    converted = quant_qnn.quantize(module, inputs, scheme)
    with atomic_file(path) as tmp:
        tmp.write_bytes(quant_qnn.lower(converted, spec))
    return {"tool": f"pt2e: QnnQuantizer {quant_qnn.DTYPES[scheme].removeprefix('use_')}, "
                    "per-channel weights, static activations",
            "delegate": "qnn", "soc": sdk.target()}


def check_request(backend: str, scheme: str) -> None:
    """Everything that can refuse (backend, scheme) without work: the pair (schemes.py) and, for
    a vendor NPU, its SDK (one line naming the SDK and its variable)."""
    check_scheme(scheme, backend)
    if backend in vendor.VENDORS:
        vendor.check(backend)


def quantize_model(model: F2IDiffSR, out: str | Path, request: QuantRequest,
                   calibration: str | Path | None = None, tile: int | None = None,
                   tiles: int | None = None) -> list[Artifact]:
    """Quantize every graph for `request` into OUT, calibrated on `calibration`."""
    check_request(request.backend, request.scheme)
    if request.quantizer != "pt2e" and request.backend != "executorch":
        raise F2IError(f"--quantizer {request.quantizer} applies to executorch only")
    out = Path(out)
    tile = tile or model.config.tile
    calib = prepare_calibration(model, out, calibration, tile, tiles)
    tile = calib.index["tile"]
    manifest = open_manifest(out, new_manifest(model, tile))
    specs = graph_specs(model.config, tile)
    modules = graph_modules(model)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=out))
    artifacts = []
    try:
        for graph in tqdm(GRAPHS, desc=f"quantizing {request.backend} {request.precision}",
                          unit="graph"):
            rel = (f"{request.backend}/"
                   f"{artifact_name(graph, request.precision, BACKENDS[request.backend].ext)}")
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            io_layout, details = quantize_graph(modules[graph], specs[graph], calib, request,
                                                out / rel, work)
            details.update(scheme=request.scheme, calibration=CALIBRATION_DIR,
                           float_layers=request.float_layers.get(graph, []))
            artifact = Artifact(request.backend, graph, request.precision, rel,
                                path_size(out / rel), sha256_path(out / rel), io_layout, details)
            manifest.add(artifact)
            artifacts.append(artifact)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if artifacts:
            manifest.save(out)
    return artifacts


def open_quantized(out: str | Path, backend: str, precision: str,
                   model: F2IDiffSR | None = None) -> GraphRunner:
    """A runner over a quantized variant: the backend's runtime here (open_runner), or for Core
    ML, which cannot predict outside macOS, the torch graphs with the same compressed weights."""
    if backend != "coreml":
        return open_runner(backend, out, precision)
    if model is None:
        raise F2IError("Core ML fidelity is measured in torch: pass the model (--model)")
    manifest = Manifest.load(out)
    return CompressedTorchRunner(model, {
        g: manifest.artifact(backend, g, precision).details["scheme"] for g in GRAPHS})


class CompressedTorchRunner(TorchRunner):
    """The float graphs with Core ML's weight compression applied in torch
    (quant_coreml.compress_torch): the fidelity an .mlpackage would have, activations in
    float32."""

    def __init__(self, model: F2IDiffSR, schemes: dict[str, str]):
        super().__init__(model)
        self.modules = {g: quant_coreml.compress_torch(m, schemes[g])
                        for g, m in self.modules.items()}
