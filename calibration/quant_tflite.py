"""TFLite/LiteRT integer quantization: ai_edge_quantizer's static recipes on the float .tflite.

The float graph is the export layer's (export/tflite.py: litert-torch, NHWC image and latent I/O);
ai_edge_quantizer calibrates it by running the LiteRT interpreter over the captured inputs and
writes an integer model: per-channel int8 weights and int8 (w8a8) or int16 (w8a16, TFLite's
"16x8") activations, GroupNorm in float (below), with integer model inputs and outputs as NPU
delegates want them (the export's runner (de)quantizes them with the model's own parameters).

Why not litert-torch's PT2EQuantizer: it offers int8 activations only (with int16 specs its
converter rejects the graph: mixed operand types at the first SUB), and on the U-Net it annotates
the fixed timestep's int64 constant, which no observer can measure.

GroupNorm stays in float in both schemes, as PT2E quantizers leave it: litert-torch lowers it to
RESHAPE, MEAN, SUB, MUL (square), MEAN, ADD, RSQRT, MUL, and rounding each of those to 8 or 16
bits compounds (a square's range is the input range squared). On the bundled decoder alone
(RGB PSNR against the float .tflite, 3 tiles) GroupNorm in float took w8a16 from 32.4 to 48.0 dB
and w8a8 from 31.3 to 38.6 dB; no single op type explained it (leaving any one of CONV_2D, MUL,
SUB or LOGISTIC in float moved the decoder by at most 1.1 dB). The convolutions, linears,
attention, SiLU and resizes stay integer.

In w8a16 the ADD ops stay in float: TFLite's int16 ADD kernel with arbitrary (not power-of-two)
scales needs `pot_scale_int16 = false`, which ai_edge_quantizer does not set, and the
interpreter refuses those models. RSQRT (of the normalizations' variance) stays in float too: an
int16 variance rounds to zero on flat tiles and the int16 RSQRT kernel then refuses to run.
MEAN (the normalizations' statistics) stays in float as well: with it in int16 the mobile
encoder alone measured 33.3 dB against float, with it in float 46.7 dB (leaving MUL, SUB,
LOGISTIC or CONV_2D in float instead changed nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.export import tflite as export_tflite
from f2i_mobile.export.common import nhwc_layout

SIGNATURE = "serving_default"
# The ops litert-torch lowered from a torch GroupNorm: their output tensors are named after the
# module path ("...torch.nn.modules.normalization.GroupNorm_norm1;5").
GROUP_NORM = r".*\bGroupNorm_"
Inputs = Sequence[tuple[torch.Tensor, ...]]


def channel_last(inputs: Inputs, spec: GraphSpec) -> list[tuple[torch.Tensor, ...]]:
    """The captured NCHW inputs in the artifact's NHWC layout (tokens stay NLC)."""
    return [tuple(x.permute(0, 2, 3, 1).contiguous() if t.layout == "NCHW" else x
                  for x, t in zip(args, spec.inputs)) for args in inputs]


def quantize(module: nn.Module, spec: GraphSpec, inputs: Inputs, scheme: str, path: Path,
             work: Path) -> tuple[dict, dict]:
    """Write the quantized .tflite at `path`; returns (io_layout, details)."""
    float_path = work / f"{path.stem}.fp32.tflite"
    export_tflite.lower(module, spec, float_path, "fp32")
    return nhwc_layout(spec), quantize_recipe(float_path, channel_last(inputs, spec), scheme, path)


def recipe(scheme: str):
    from ai_edge_quantizer import recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    bits = {"w8a8": 8, "w8a16": 16}[scheme]
    manager = recipe_manager.RecipeManager()
    manager.add_static_config(".*", TFLOperationName.ALL_SUPPORTED, activation_num_bits=bits,
                              weight_num_bits=8)
    if bits == 16:  # see the module docstring
        for op in (TFLOperationName.ADD, TFLOperationName.RSQRT, TFLOperationName.MEAN):
            manager.add_quantization_config(".*", op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    # GroupNorm's decomposition in float (the later, narrower rule wins in ai_edge_quantizer).
    manager.add_quantization_config(GROUP_NORM, TFLOperationName.ALL_SUPPORTED,
                                    algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def quantize_recipe(float_path: Path, inputs: Inputs, scheme: str, path: Path) -> dict:
    """Quantize the float .tflite at `float_path` with ai_edge_quantizer into `path`; `inputs`
    in the float model's own layout."""
    from ai_edge_quantizer import quantizer as aeq

    quantizer = aeq.Quantizer(str(float_path))
    quantizer.load_quantization_recipe(recipe(scheme))
    data = {SIGNATURE: [{f"args_{i}": a.numpy() for i, a in enumerate(args)}
                        for args in inputs]}
    result = quantizer.quantize(quantizer.calibrate(data), enable_progress_report=False)
    path.write_bytes(result.quantized_model)
    return {"tool": "ai_edge_quantizer", "recipe": f"static int8 weights, int{scheme[3:]} "
            "activations, GroupNorm in float"
            + ("; ADD, RSQRT and MEAN in float" if scheme == "w8a16" else ""),
            "io": f"int{scheme[3:]}"}
