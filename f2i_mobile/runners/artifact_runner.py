"""Runners for exported artifacts: one small class per runtime behind `GraphRunner`.

Each loads a graph's artifact on first use (so stage order keeps one graph resident), feeds the
registry's tensor names in the artifact's own layout (NHWC for TFLite images and latents) and
returns the registry's layout. Runtimes are imported when a runner opens, not before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from f2i_mobile.manifest import Artifact, Manifest
from f2i_mobile.runners.base import GraphRunner


class ArtifactRunner(GraphRunner):
    def __init__(self, manifest: Manifest, folder: Path, backend: str, precision: str):
        self.manifest, self.folder = manifest, folder
        self.backend, self.precision = backend, precision
        self.loaded: dict[str, object] = {}

    def artifact(self, graph: str) -> Artifact:
        return self.manifest.artifact(self.backend, graph, self.precision)

    def batch_size(self, graph: str) -> int | None:
        return self.manifest.batch

    def release(self, graph: str) -> None:
        self.loaded.pop(graph, None)

    def close(self) -> None:
        self.loaded.clear()

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph not in self.loaded:
            self.loaded[graph] = self.load(self.folder / self.artifact(graph).path)
        info = self.manifest.graphs[graph]
        layout = self.artifact(graph).io_layout
        args = [_to_layout(np.ascontiguousarray(inputs[t.name], dtype=np.float32),
                           layout.get(t.name)) for t in info.inputs]
        outs = self.execute(self.loaded[graph], args)
        return {t.name: _from_layout(np.asarray(o, dtype=np.float32), layout.get(t.name))
                for t, o in zip(info.outputs, outs)}

    def load(self, path: Path):
        raise NotImplementedError

    def execute(self, handle, args: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


def _to_layout(x: np.ndarray, layout: str | None) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


def _from_layout(x: np.ndarray, layout: str | None) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "NHWC" else x


class ExecuTorchRunner(ArtifactRunner):
    """The ExecuTorch runtime's Python bindings (the same runtime as executor_runner)."""

    def load(self, path):
        from executorch.runtime import Runtime

        return Runtime.get().load_program(str(path)).load_method("forward")

    def execute(self, method, args):
        import torch

        return [o.numpy() for o in method.execute([torch.from_numpy(a) for a in args])]


class TFLiteRunner(ArtifactRunner):
    """The LiteRT interpreter, through the model's serving signature. Full-integer (quantized)
    models take and give int8/int16 tensors: they are (de)quantized here with the model's own
    scale and zero point, as an app feeding an NPU delegate does."""

    def load(self, path):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        signature = interpreter.get_signature_runner("serving_default")
        return signature, signature.get_input_details(), signature.get_output_details()

    def execute(self, handle, args):
        signature, inputs, outputs = handle
        feed = {f"args_{i}": _quantize(a, inputs[f"args_{i}"]) for i, a in enumerate(args)}
        result = signature(**feed)
        return [_dequantize(result[f"output_{i}"], outputs[f"output_{i}"])
                for i in range(len(result))]


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    q = detail["quantization_parameters"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / q["scales"][0]) + q["zero_points"][0],
                   info.min, info.max).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    q = detail["quantization_parameters"]
    return ((y.astype(np.float32) - q["zero_points"][0]) * q["scales"][0]).astype(np.float32)


class ONNXRunner(ArtifactRunner):
    """ONNX Runtime on the CPU execution provider."""

    def load(self, path):
        import onnxruntime as ort

        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, session, args):
        names = [i.name for i in session.get_inputs()]
        return session.run(None, dict(zip(names, args)))


RUNNERS = {"executorch": ExecuTorchRunner, "tflite": TFLiteRunner, "onnx": ONNXRunner}
