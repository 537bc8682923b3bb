"""Quantize the four graphs for one backend and scheme, write the artifacts and the manifest.

    OUT/calibration/                    the calibration set the artifacts were calibrated on
    OUT/<backend>/<graph>.<scheme>.<ext> one artifact per graph, atomically written
    OUT/manifest.json                    an Artifact per graph, precision = the scheme

Each backend goes through its own tool (schemes.py); `open_quantized` runs the artifacts with the
backend's runtime here (Core ML: the torch graphs with the same compressed weights).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from calibration import quant_coreml, quant_executorch, quant_onnx, quant_tflite
from calibration.capture import CalibrationSet, capture, is_calibration_set, load_calibration
from calibration.schemes import check_scheme
from f2i_mobile.errors import F2IError
from f2i_mobile.graphs import GRAPHS, count_params, graph_modules, graph_specs, one_step_record
from f2i_mobile.manifest import Artifact, GraphInfo, Manifest, TensorInfo, path_size, sha256_path
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.runners.base import GraphRunner

CALIBRATION_DIR = "calibration"
EXTENSIONS = {"executorch": ".pte", "tflite": ".tflite", "coreml": ".mlpackage", "onnx": ".onnx"}
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


def model_manifest(model: F2IDiffSR, out: Path, tile: int) -> Manifest:
    """The export's manifest when there is one, else a new one for this model and tile."""
    try:
        manifest = Manifest.load(out)
    except F2IError:
        manifest = None
    if manifest is not None:
        if manifest.model.get("config_hash") != model.config.hash() or manifest.tile != tile:
            raise F2IError(f"{out}: the export there is of another model or tile")
        return manifest
    specs = graph_specs(model.config, tile)
    params = count_params(model)
    graphs = {name: GraphInfo(
        name=name, description=spec.description, params=params[name],
        inputs=[TensorInfo(t.name, list(t.shape), t.layout, t.description) for t in spec.inputs],
        outputs=[TensorInfo(t.name, list(t.shape), t.layout, t.description)
                 for t in spec.outputs]) for name, spec in specs.items()}
    return Manifest(
        model={"name": model.config.name, "config_hash": model.config.hash(),
               "origin": model.metadata.get("origin", "checkpoint")},
        scale=model.config.scale, tile=tile, output_tile=tile * model.config.scale, batch=1,
        one_step=one_step_record(model.config), graphs=graphs)


def torch_inputs(calib: CalibrationSet, graph: str) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(torch.from_numpy(a) for a in feed.values()) for feed in calib.graph_inputs(graph)]


def quantize_graph(module: torch.nn.Module, graph: str, calib: CalibrationSet,
                   request: QuantRequest, path: Path, work: Path) -> dict:
    """Write one quantized artifact at `path`; returns its manifest details."""
    inputs = torch_inputs(calib, graph)
    names = calib.index["graphs"][graph]["inputs"]
    outputs = calib.index["graphs"][graph]["outputs"]
    if request.backend == "executorch":
        converted = quant_executorch.quantize(module, inputs, request.quantizer,
                                              skip=set(request.float_layers.get(graph, ())))
        from f2i_mobile.atomic import atomic_file

        with atomic_file(path) as tmp:
            tmp.write_bytes(quant_executorch.lower(converted, inputs[0]))
        return {"tool": f"{request.quantizer}: XNNPACKQuantizer per-channel symmetric, static "
                        "activations", "delegate": "XnnpackPartitioner"}
    if request.backend == "tflite":
        return quant_tflite.quantize(module, inputs, request.scheme, path, work)
    if request.backend == "onnx":
        float_path = work / f"{graph}.fp32.onnx"
        quant_onnx.convert_float(module, inputs[0], names, outputs, float_path)
        return quant_onnx.quantize(float_path, inputs, names, path)
    if request.backend == "coreml":
        mlmodel = quant_coreml.convert_float(module, inputs[0], names, path)
        return quant_coreml.compress(mlmodel, request.scheme, path)
    raise F2IError(f"unknown backend {request.backend!r}")


def quantize_model(model: F2IDiffSR, out: str | Path, request: QuantRequest,
                   calibration: str | Path | None = None, tile: int | None = None,
                   tiles: int | None = None) -> list[Artifact]:
    """Quantize every graph for `request` into OUT, calibrated on `calibration`."""
    check_scheme(request.scheme, request.backend)
    if request.quantizer != "pt2e" and request.backend != "executorch":
        raise F2IError(f"--quantizer {request.quantizer} applies to executorch only")
    out = Path(out)
    tile = tile or model.config.tile
    calib = prepare_calibration(model, out, calibration, tile, tiles)
    manifest = model_manifest(model, out, calib.index["tile"])
    modules = graph_modules(model)
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    artifacts = []
    try:
        for graph in tqdm(GRAPHS, desc=f"quantizing {request.backend} {request.precision}",
                          unit="graph"):
            rel = f"{request.backend}/{graph}.{request.precision}{EXTENSIONS[request.backend]}"
            details = quantize_graph(modules[graph], graph, calib, request, out / rel, work)
            details.update(scheme=request.scheme, calibration=CALIBRATION_DIR,
                           float_layers=request.float_layers.get(graph, []))
            artifact = Artifact(request.backend, graph, request.precision, rel,
                                path_size(out / rel), sha256_path(out / rel), details=details)
            manifest.add(artifact)
            artifacts.append(artifact)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if artifacts:
            manifest.save(out)
    return artifacts


class QuantizedRunner(GraphRunner):
    """Runs a quantized variant's artifacts with the backend's runtime here.
    Core ML artifacts cannot run outside macOS: their graphs run in torch with the same
    compressed weights (quant_coreml.compress_torch), which needs the model."""

    def __init__(self, out: str | Path, backend: str, precision: str,
                 model: F2IDiffSR | None = None):
        self.out, self.backend, self.precision = Path(out), backend, precision
        self.manifest = Manifest.load(out)
        self.model = model
        self.graphs: dict = {}

    def _load(self, graph: str):
        artifact = self.manifest.artifact(self.backend, graph, self.precision)
        path = self.out / artifact.path
        if self.backend == "executorch":
            from executorch.runtime import Runtime

            method = Runtime.get().load_program(str(path)).load_method("forward")
            return lambda *args: [o.numpy() for o in method.execute(
                [torch.from_numpy(np.ascontiguousarray(a)) for a in args])]
        if self.backend == "tflite":
            return quant_tflite.TFLiteGraph(path)
        if self.backend == "onnx":
            return quant_onnx.ONNXGraph(path)
        if self.backend == "coreml":
            if self.model is None:
                raise F2IError("Core ML fidelity is measured in torch: pass the model (--model)")
            module = quant_coreml.compress_torch(graph_modules(self.model)[graph],
                                                 artifact.details["scheme"])

            @torch.no_grad()
            def run(*args):
                out = module(*(torch.from_numpy(a) for a in args))
                return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]

            return run
        raise F2IError(f"no runtime here for backend {self.backend}")

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph not in self.graphs:
            self.graphs[graph] = self._load(graph)
        info = self.manifest.graphs[graph]
        outs = self.graphs[graph](*(inputs[t.name] for t in info.inputs))
        return {t.name: o for t, o in zip(info.outputs, outs)}

    def release(self, graph: str) -> None:
        self.graphs.pop(graph, None)

    def close(self) -> None:
        self.graphs.clear()
