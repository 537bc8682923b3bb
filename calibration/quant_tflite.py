"""TFLite/LiteRT integer quantization, with integer model inputs and outputs for NPU delegates.

- w8a8: litert-torch's PT2EQuantizer (per-channel int8 weights, static int8 activations) on the
  torch.export'ed graph, calibrated on the captured inputs, converted by litert-torch. Like
  XNNPACK's quantizer it annotates convolutions, linears and adds and leaves normalization in
  float.
- w8a16 (TFLite's "16x8"): ai_edge_quantizer's static recipe with int16 activations on the float
  .tflite, calibrated by running the LiteRT interpreter over the captured inputs. litert-torch's
  PT2E path has no int16 activations (its converter rejects the int16 graph: mixed operand types
  at the first SUB). ai_edge_quantizer quantizes every op, GroupNorm's decomposition included,
  and that costs fidelity; the report shows how much. The ADD ops stay in float: TFLite's int16
  ADD kernel with arbitrary (not power-of-two) scales needs `pot_scale_int16 = false`, which
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


def quantize(module: nn.Module, inputs: Sequence[tuple[torch.Tensor, ...]], scheme: str,
             path: Path, work: Path) -> dict:
    """Write the quantized .tflite at `path`; returns the artifact's details."""
    if scheme == "w8a8":
        return quantize_pt2e(module, inputs, path)
    float_path = work / f"{path.stem}.fp32.tflite"
    convert_float(module, inputs[0], float_path)
    return quantize_recipe(float_path, inputs, scheme, path)


def quantize_pt2e(module: nn.Module, inputs: Sequence[tuple[torch.Tensor, ...]],
                  path: Path) -> dict:
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quiet_libraries()
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(module.eval(), inputs[0]).module(), quantizer)
    with torch.no_grad():
        for args in inputs:
            prepared(*args)
    converted = convert_pt2e(prepared, fold_quantize=False)
    edge = litert_torch.convert(converted, inputs[0],
                                quant_config=QuantConfig(pt2e_quantizer=quantizer))
    with atomic_file(path) as tmp:
        edge.export(str(tmp))
    return {"tool": "litert_torch PT2EQuantizer", "recipe": "per-channel int8 weights, static "
            "int8 activations; normalization in float"}


def quantize_recipe(float_path: Path, inputs: Sequence[tuple[torch.Tensor, ...]], scheme: str,
                    path: Path) -> dict:
    """Quantize the float .tflite at `float_path` with ai_edge_quantizer into `path`."""
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
