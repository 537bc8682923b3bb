"""ExecuTorch/XNNPACK int8: PT2E with the XNNPACK quantizer, or nncf driving the same quantizer.

Both quantizers annotate the torch.export'ed graph with executorch's XNNPACKQuantizer (per-channel
symmetric int8 weights, static per-tensor int8 activations), so the two differ only in how ranges
are found: torchao's `prepare_pt2e`/`convert_pt2e` with histogram observers, or nncf's
`quantize_pt2e` (min-max statistics, SmoothQuant, fast bias correction). The converted graph is
a torch module with quantize/dequantize ops: it is what sensitivity analysis measures, and what
is lowered to a .pte with the XNNPACK partitioner.

XNNPACK has no 16-bit activation kernels (its quantizer offers int8 activations only), so w8a16
has no ExecuTorch/XNNPACK form; schemes.py says so. ExecuTorch's w8a16 is on Qualcomm's HTP
(quant_qnn.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec

QUANTIZERS = ("pt2e", "nncf")
Inputs = Sequence[tuple[torch.Tensor, ...]]


TOP_LEVEL = "(graph input/top level)"  # the "layer" of graph inputs and the root's own ops


def layer_of(node: torch.fx.Node) -> str:
    """The qualified name of the innermost module a graph node was traced from (TOP_LEVEL for
    the graph's inputs and for ops of the root module itself)."""
    stack = node.meta.get("nn_module_stack")
    name = list(stack.values())[-1][0] if stack else ""
    return name or TOP_LEVEL


def quantizable_layers(module: nn.Module) -> list[str]:
    """Names of the convolutions and linears: the layers that carry int8 weights."""
    return [name for name, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def xnnpack_quantizer(only: set[str] | None = None, skip: set[str] = frozenset()):
    """The XNNPACK quantizer, per-channel symmetric weights and static activations on the
    convolutions and linears, limited to the layers in `only` (all when None) and leaving the
    layers in `skip` in float.

    Only convolutions and linears are annotated (`set_operator_type`, not `set_global`): the
    global config also quantizes every residual add, mul and cat, and on the mobile U-Net those
    extra int8 rounding points cost 22 dB (U-Net alone 32.3 dB against float, 54.4 with
    conv/linear only; end to end 30.7 against 42.2). The convolutions and linears are the
    FLOPs; the adds between them stay in float, as onnxruntime's QDQ default also does."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True)
    quantizer = XNNPACKQuantizer()
    for op in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
        quantizer.set_operator_type(op, config)
    if only is not None or skip:
        def keep(node: torch.fx.Node) -> bool:
            layer = layer_of(node)
            return (only is None or layer in only) and layer not in skip

        quantizer.set_filter_function(keep)
    return quantizer


def quantize(module: nn.Module, inputs: Inputs, quantizer: str = "pt2e",
             only: set[str] | None = None, skip: set[str] = frozenset(),
             fold: bool = True) -> torch.fx.GraphModule:
    """The converted (fake-quantized) graph of `module`, calibrated on `inputs`; `fold=False`
    keeps the weights' quantize ops as nodes (sensitivity.py takes some out)."""
    graph = torch.export.export(module, inputs[0]).module()
    annotator = xnnpack_quantizer(only, skip)
    if quantizer == "pt2e":
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        prepared = prepare_pt2e(graph, annotator)
        with torch.no_grad():
            for args in inputs:
                prepared(*args)
        return convert_pt2e(prepared, fold_quantize=fold)
    if quantizer == "nncf":
        import nncf
        from nncf.experimental.torch.fx import quantize_pt2e

        return quantize_pt2e(graph, annotator, nncf.Dataset(list(inputs)),
                             subset_size=len(inputs), smooth_quant=True,
                             fast_bias_correction=True, fold_quantize=fold)
    raise ValueError(f"quantizer {quantizer!r}: choose one of {QUANTIZERS}")


def split_shared_dequants(converted: torch.fx.GraphModule) -> int:
    """Give every user of an activation dequantize its own dequantize node (the same op, the
    same scale: the numbers do not change); returns how many were added.

    Why: convert_pt2e leaves one dequantize shared by float users, e.g. a U-Net block's input
    read by its norm, its residual add and, through the skip connection, by a cat in an up block.
    When the XNNPACK partitioner cuts the graph between them, that dequantize becomes both a
    delegate output and an input of channels-last ops inside the delegate; ExecuTorch 1.5's
    channels-last pass then converts the output back to NCHW by redirecting *every* user of the
    shared node, and the delegate returns an NHWC tensor where the program planned NCHW
    ("Attempted to resize a static tensor", at run time). With one dequantize per user the
    conversion touches the output alone."""
    added = 0
    for node in list(converted.graph.nodes):
        if node.op != "call_function" or "dequantize_per_tensor" not in str(node.target):
            continue
        for user in list(node.users)[1:]:
            with converted.graph.inserting_after(node):
                twin = converted.graph.call_function(node.target, node.args, node.kwargs)
            twin.meta = dict(node.meta)
            user.replace_input_with(node, twin)
            added += 1
    converted.recompile()
    return added


def lower(converted: torch.fx.GraphModule, spec: GraphSpec) -> bytes:
    """A .pte program for the converted graph, XNNPACK-delegated, through the export layer's
    ExecuTorch lowering (export/executorch.py)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    from f2i_mobile.export.executorch import to_program

    converted = copy.deepcopy(converted)  # the caller's graph stays as it was
    split_shared_dequants(converted)
    return to_program(converted, spec, [XnnpackPartitioner()])[0]


def scale_nodes(converted: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """The activation quantize nodes of a converted graph (per-tensor scale as an argument)."""
    return [n for n in converted.graph.nodes if n.op == "call_function"
            and "quantize_per_tensor" in str(n.target) and "dequantize" not in str(n.target)]


def perturb_scale(converted: torch.fx.GraphModule, factor: float, index: int = 0) -> str:
    """Multiply the scale of one activation quantization (default: the graph input's) by
    `factor`, in its quantize node and the dequantize nodes that read it: the gate's
    deliberately broken quantization, a calibrated range `factor` times too wide. Returns the
    quantize node's name."""
    node = scale_nodes(converted)[index]
    for target in [node, *(u for u in node.users if "dequantize" in str(u.target))]:
        args = list(target.args)
        args[1] = float(args[1]) * factor
        target.args = tuple(args)
    converted.recompile()
    return node.name
