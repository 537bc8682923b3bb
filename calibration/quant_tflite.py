"""TFLite/LiteRT full-integer quantization: ai_edge_quantizer recipes on the float .tflite.

The float graph is converted with litert-torch, then ai_edge_quantizer calibrates it on the
captured inputs (it runs the LiteRT interpreter over them) and writes a full-integer model:
int8 weights per channel and int8 (w8a8) or int16 (w8a16, TFLite's "16x8") activations, with
integer inputs and outputs as NPU delegates want them.

litert-torch's own PT2EQuantizer offers int8 activations only, so ai_edge_quantizer is the one
tool here that does both schemes. In w8a16 the ADD ops stay in float: TFLite's int16 ADD kernel
with arbitrary (not power-of-two) scales needs the `pot_scale_int16 = false` option, which
ai_edge_quantizer does not set, and the interpreter refuses those models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from f2i_mobile.atomic import atomic_file
from f2i_mobile.quiet import quiet_libraries

SIGNATURE = "serving_default"


def convert_float(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    import litert_torch

    quiet_libraries()
    edge = litert_torch.convert(module.eval(), example)
    with atomic_file(path) as tmp:
        edge.export(str(tmp))


def recipe(scheme: str):
    from ai_edge_quantizer import recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    bits = {"w8a8": 8, "w8a16": 16}[scheme]
    manager = recipe_manager.RecipeManager()
    manager.add_static_config(".*", TFLOperationName.ALL_SUPPORTED, activation_num_bits=bits,
                              weight_num_bits=8)
    if bits == 16:  # see the module docstring
        manager.add_quantization_config(".*", TFLOperationName.ADD,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def quantize(float_path: Path, inputs: Sequence[tuple[torch.Tensor, ...]], scheme: str,
             path: Path) -> dict:
    """Quantize the float .tflite at `float_path` into `path`; returns the artifact's details."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer as aeq

    names = Interpreter(str(float_path)).get_signature_list()[SIGNATURE]["inputs"]
    quantizer = aeq.Quantizer(str(float_path))
    quantizer.load_quantization_recipe(recipe(scheme))
    data = {SIGNATURE: [{n: a.numpy() for n, a in zip(names, args)} for args in inputs]}
    result = quantizer.quantize(quantizer.calibrate(data), enable_progress_report=False)
    with atomic_file(path) as tmp:
        tmp.write_bytes(result.quantized_model)
    return {"tool": "ai_edge_quantizer", "recipe": f"static int8 weights, int{scheme[3:]} "
            "activations" + (", ADD in float" if scheme == "w8a16" else "")}


class TFLiteGraph:
    """One .tflite signature, with float inputs and outputs: integer I/O is (de)quantized here
    with the model's own parameters, as an app feeding an NPU delegate would."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(str(path))
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()

    def __call__(self, *args: np.ndarray) -> list[np.ndarray]:
        feed = {name: _to_tensor(a, self.inputs[name]) for name, a in zip(self.inputs, args)}
        out = self.runner(**feed)
        return [_from_tensor(out[name], self.outputs[name]) for name in self.outputs]


def _to_tensor(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return np.ascontiguousarray(x, dtype=np.float32)
    q = detail["quantization_parameters"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / q["scales"][0]) + q["zero_points"][0],
                   info.min, info.max).astype(detail["dtype"])


def _from_tensor(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    q = detail["quantization_parameters"]
    return ((y.astype(np.float32) - q["zero_points"][0]) * q["scales"][0]).astype(np.float32)
