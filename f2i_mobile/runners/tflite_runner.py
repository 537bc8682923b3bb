"""The LiteRT interpreter, through the model's serving signature. Full-integer (quantized)
models take and give int8/int16 tensors: they are (de)quantized here with the model's own scale
and zero point, as an app feeding an NPU delegate does."""

from __future__ import annotations

import numpy as np

from f2i_mobile.runners.artifact_runner import ArtifactRunner


class TFLiteRunner(ArtifactRunner):
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


RUNNER = TFLiteRunner
