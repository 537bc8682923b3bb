"""TFLite/LiteRT integer quantization: ai_edge_quantizer's static recipes on the float .tflite.

The float graph is the export layer's (export/tflite.py: litert-torch, NHWC image and latent I/O);
ai_edge_quantizer calibrates it by running the LiteRT interpreter over the captured inputs and
writes an integer model: per-channel int8 weights and int8 (w8a8) or int16 (w8a16, TFLite's
"16x8") activations and integer outputs; the inputs are integer too, except in the graphs that
take statistics (below), where the first ops quantize the image or latent, and the statistics
graph's outputs are float (the export's runner (de)quantizes integer I/O with the model's own
parameters).

Why not litert-torch's PT2EQuantizer: it offers int8 activations only (with int16 specs its
converter rejects the graph: mixed operand types at the first SUB), and on the U-Net it annotates
the fixed timestep's int64 constant, which no observer can measure.

Normalization. The tile graphs take their GroupNorm statistics as inputs (`models.norms`), so
each GroupNorm is a per-channel multiply-add on the activation, quantized like the convolutions
around it. What stays in float is found by the module names litert-torch gives the ops
("...NormFactors_factors;5"):
- `NormFactors`, everywhere: the per-channel factors computed from the packed statistics, a
  few hundred numbers whose variances span orders of magnitude (in 8 bits the small ones would
  round to zero);
- the packed statistics input, from the input through its SLICEs to `NormFactors`: a few
  hundred means and variances that one int8 scale (step 0.19 on the bundled encoder) rounds
  away. ai_edge_quantizer quantizes a graph's inputs together (one virtual INPUT op), so a tile
  graph's inputs are all float, and its first ops quantize the image or latent. Measured on the
  bundled encoder, PSNR of the latent against float: w8a8 36.9 -> 42.9 dB (decoder 35.9 -> 37.7);
- for the same reason, the statistics graph's outputs, and the CONCATENATIONs that pack them
  (named after the output, `OUTPUT_OPS`): in int8 the bundled encoder's packed moments came out
  at one step of 0.18 (45.7 dB against float, 60.2 dB with the packing float);
- `StatNorm`, in the statistics graph: there GroupNorm measures its input (MEAN, a squaring
  MUL, MEAN, RSQRT), and rounding each step to 8 or 16 bits compounds. In the tile graphs at
  w8a16 too: there the affine's per-tensor int16 factors cost more than int16 buys (bundled
  encoder 45.5 -> 56.8 dB, decoder 49.4 -> 53.2 dB with it float), and w8a16 keeps the ADDs in
  float anyway (below), so the integer pieces are already split at every normalization;
- in the conditioner (DINOv2, run once per photo), its LayerNorms and its residual stream (the
  ADDs of each layer and of the embeddings): a ViT's residual stream carries a few channels far
  larger than the rest, so one int8 scale per tensor rounds the others away. Measured on the
  bundled model's tokens against float: w8a8 43.9 -> 52.1 dB, w8a16 46.2 -> 57.2 dB;
  its linears and attention stay integer;
- in the decoder at w8a8, the last up block (the full-resolution one) and the output head,
  except their convolutions: its residual stream, normalizations and SiLUs. The decoder's
  residual stream widens block by block (on the bundled model from +-11 after the mid block to
  -73..51 after the last up block) while each channel's own spread stays a few units: a few
  channels set the one per-tensor scale, and an int8 step of 0.48 rounds the others. Measured on
  the bundled decoder's check tiles (PSNR against float): 38.2 -> 41.8 dB, integer partitions
  1 -> 6, LiteRT time per tile +24 %. All blocks so (only the convolutions integer, as
  ExecuTorch's and ONNX Runtime's recipes here): 43.0 dB but 20 partitions; the norm affines
  alone: 39.0 dB.
A rule names a module class and covers the ops that module owns (`own_ops`: the last part of
one of the op's paths), not its children's; convolutions and linears stay integer whatever their
name, since litert-torch's merged names can join a linear's path to a float module's.
Before statistics were inputs, every GroupNorm's MEAN/RSQRT decomposition had to stay float
inside the tile graphs (rounding it cost the decoder 7 to 16 dB), splitting them into many
integer partitions (`integer_partitions` counts them).

In w8a16 the ADD ops stay in float: TFLite's int16 ADD kernel with arbitrary (not power-of-two)
scales needs `pot_scale_int16 = false`, which ai_edge_quantizer does not set, and the
interpreter refuses those models. RSQRT and MEAN stay in float too: an int16 variance rounds to
zero on flat tiles and the int16 RSQRT kernel then refuses to run, and an int16 MEAN cost the
encoder 13 dB when the tile graphs still measured their own statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.export import tflite as export_tflite
from f2i_mobile.export.common import nhwc_layout

SIGNATURE = "serving_default"
# Modules whose ops stay float, found by the op names litert-torch derives from the module
# path ("...NormFactors_factors;5"):
NORM_FACTORS = "NormFactors"  # statistics -> per-channel factors (models.norms)
STAT_NORM = "StatNorm"  # a GroupNorm: measuring in `statistics`, affine elsewhere
GROUP_NORM = "GroupNorm"  # a plain torch GroupNorm (graphs that measure their own statistics)
# DINOv2's LayerNorms and residual ADDs (transformers' Dinov2Layer and Dinov2Embeddings own them)
VIT_RESIDUAL = ("LayerNorm", "Dinov2Layer", "Dinov2Embeddings")
Inputs = Sequence[tuple[torch.Tensor, ...]]
WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # TFLOperationName members
# The ops that write a signature's outputs carry the output's name, not a module's: in
# `statistics`, the CONCATENATIONs that pack each graph's moments
OUTPUT_OPS = r"^serving_default_output_\d+_output(;|$)"


def float_modules(graph: str, scheme: str) -> tuple[str, ...]:
    """The module classes whose own ops stay float in a graph of the contract."""
    if graph == "conditioner":
        return (NORM_FACTORS, *VIT_RESIDUAL)
    if graph == "statistics" or scheme == "w8a16":
        return NORM_FACTORS, STAT_NORM
    return (NORM_FACTORS,)


def float_scopes(module: nn.Module, graph: str, scheme: str) -> tuple[str, ...]:
    """Regexes of op paths whose ops, except weighted ones, stay float besides
    `float_modules`' (see the module docstring): at w8a8, the decoder's tail."""
    if graph != "decoder" or scheme != "w8a8":
        return ()
    return decoder_tail(module)


def decoder_tail(module: nn.Module) -> tuple[str, ...]:
    """The decoder's last up block and its output head (the decoder's own modules without
    weights: the last normalization and activation) as op-path regexes (litert-torch names a
    module `<Class>_<attribute>`); () for a module without `up_blocks`."""
    decoder = next((m for m in module.modules()
                    if isinstance(getattr(m, "up_blocks", None), nn.ModuleList)), None)
    if decoder is None or not len(decoder.up_blocks):
        return ()
    last = len(decoder.up_blocks) - 1
    head = [(name, child) for name, child in decoder.named_children()
            if not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in child.modules())]
    return (rf"\b{type(decoder.up_blocks[last]).__name__}_{last}/",
            *(rf"\b{type(child).__name__}_{name}(;|$)" for name, child in head))


def takes_statistics(spec: GraphSpec) -> bool:
    return any(t.layout == "NC" for t in spec.inputs)


def gives_statistics(spec: GraphSpec) -> bool:
    return any(t.layout == "NC" for t in spec.outputs)


def channel_last(inputs: Inputs, spec: GraphSpec) -> list[tuple[torch.Tensor, ...]]:
    """The captured NCHW inputs in the artifact's NHWC layout (tokens stay NLC)."""
    return [tuple(x.permute(0, 2, 3, 1).contiguous() if t.layout == "NCHW" else x
                  for x, t in zip(args, spec.inputs)) for args in inputs]


def quantize(module: nn.Module, spec: GraphSpec, inputs: Inputs, scheme: str, path: Path,
             work: Path) -> tuple[dict, dict]:
    """Write the quantized .tflite at `path`; returns (io_layout, details)."""
    float_path = work / f"{spec.name}.fp32.tflite"
    if not float_path.exists():  # lowered for an earlier scheme, or seeded (float_export)
        export_tflite.lower(module, spec, float_path, "fp32")
    return nhwc_layout(spec), quantize_recipe(float_path, channel_last(inputs, spec), scheme, path,
                                              float_modules(spec.name, scheme),
                                              takes_statistics(spec), gives_statistics(spec),
                                              float_scopes(module, spec.name, scheme))


def recipe(scheme: str, keep_float: tuple[str, ...], statistics_input: bool = False,
           statistics_output: bool = False, scopes: tuple[str, ...] = ()):
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
    for scope in (*map(own_ops, keep_float), *scopes):  # the later, narrower rule wins
        manager.add_quantization_config(scope, TFLOperationName.ALL_SUPPORTED,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
        # a merged name can join a linear's path to the module's (a LayerNorm's and the q
        # projection after it), and a float scope holds convolutions: weighted ops stay integer
        for op in WEIGHTED:
            manager.add_static_config(scope, TFLOperationName[op], activation_num_bits=bits,
                                      weight_num_bits=8)
    if statistics_input:  # see the module docstring
        manager.add_quantization_config(".*", TFLOperationName.INPUT,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
        manager.add_quantization_config(own_ops(STAT_NORM), TFLOperationName.SLICE,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
    if statistics_output:  # see the module docstring
        manager.add_quantization_config(".*", TFLOperationName.OUTPUT,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
        manager.add_quantization_config(OUTPUT_OPS, TFLOperationName.ALL_SUPPORTED,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def own_ops(module_class: str) -> str:
    """A scope regex for the ops a module of this class owns, not its children's. An op is
    named by its module path, "…/StatNorm_norm1;4", or by several joined with ";" where
    litert-torch merged ops ("…/StatNorm_norm1;;…/Conv2d_conv_in;"): one path must end in the
    module."""
    return rf"\b{module_class}_[^/;]*(;|$)"


def quantize_recipe(float_path: Path, inputs: Inputs, scheme: str, path: Path,
                    keep_float: tuple[str, ...], statistics_input: bool = False,
                    statistics_output: bool = False, scopes: tuple[str, ...] = ()) -> dict:
    """Quantize the float .tflite at `float_path` with ai_edge_quantizer into `path`; `inputs`
    in the float model's own layout."""
    from ai_edge_quantizer import quantizer as aeq

    quantizer = aeq.Quantizer(str(float_path))
    quantizer.load_quantization_recipe(recipe(scheme, keep_float, statistics_input,
                                              statistics_output, scopes))
    data = {SIGNATURE: [{f"args_{i}": a.numpy() for i, a in enumerate(args)}
                        for args in inputs]}
    result = quantizer.quantize(quantizer.calibrate(data), enable_progress_report=False)
    path.write_bytes(result.quantized_model)
    kept = ", ".join(keep_float + (("statistics input",) if statistics_input else ())
                     + (("statistics outputs",) if statistics_output else ())
                     + (("the decoder's last up block and head except convolutions",)
                        if scopes else ()))
    io = ("float inputs, integer outputs" if statistics_input else
          f"int{scheme[3:]} inputs, float outputs" if statistics_output else f"int{scheme[3:]}")
    return {"tool": "ai_edge_quantizer", "recipe": f"static int8 weights, int{scheme[3:]} "
            f"activations; {kept} in float"
            + ("; ADD, RSQRT and MEAN in float" if scheme == "w8a16" else ""),
            "io": io,
            "integer_partitions": integer_partitions(path)}


def integer_partitions(path: Path) -> int:
    """How many pieces an integer-only delegate (an NPU) gets from this model: the connected
    components of its integer ops (int8/int16 outputs), joined where one feeds another. Float
    ops on the activation path split it; float ops on side inputs (the normalization factors)
    do not."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = [op for op in interpreter._get_ops_details()  # the only per-op listing LiteRT offers
           if op["outputs"].size and dtypes[op["outputs"][0]] in (np.int8, np.int16)]
    producer = {t: i for i, op in enumerate(ops) for t in op["outputs"]}
    parent = list(range(len(ops)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, op in enumerate(ops):
        for t in op["inputs"]:
            if t in producer:
                parent[root(i)] = root(producer[t])
    return len({root(i) for i in range(len(ops))})
