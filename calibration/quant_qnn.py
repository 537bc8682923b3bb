"""ExecuTorch on Qualcomm's NPU (QNN HTP): PT2E with executorch's QnnQuantizer, w8a8 and w8a16.

Why a second ExecuTorch quantizer: XNNPACK (quant_executorch.py) has int8 activations only, so
the only ExecuTorch path to 16-bit activations is an NPU delegate. Qualcomm's HTP runs 8-bit
weights with 16-bit activations ("16a8w") as well as 8a8w, and QnnQuantizer annotates the
torch.export'ed graph for it: per-channel int8 convolution weights, static (calibrated) uint8 or
uint16 activations.

QnnQuantizer is an ordinary PT2E quantizer (torchao's prepare_pt2e/convert_pt2e) and needs no
QNN SDK: without one it only skips checking the HTP's per-op constraints (the SDK's op info,
2.41 and later). So the converted graph, a torch module with quantize/dequantize ops and what the
QNN partitioner lowers, is measured here in torch (benchmarks/quant_report.py); only the lowering
to a .pte (`lower`, through export/vendor.py's QnnPartitioner) needs the SDK.

ExecuTorch's Qualcomm helpers download a QNN SDK on first use unless QNN_SDK_ROOT is set, and
nothing may be fetched at run time here: every Qualcomm import and call runs inside
export.vendor.no_sdk_download(), which leaves os.environ as it found it.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.core.errors import F2IError
from f2i_mobile.export.vendor import VENDORS, no_sdk_download
from f2i_mobile.models.norms import NormFactors, Statistics, StatNorm

Inputs = Sequence[tuple[torch.Tensor, ...]]
# scheme -> QuantDtype member: activations bits, then weight bits.
DTYPES = {"w8a8": "use_8a8w", "w8a16": "use_16a8w"}


def qnn_quantizer(scheme: str):
    """QnnQuantizer for the HTP of the export's target chip (F2I_QNN_SOC, as the partitioner
    compiles for), per-channel conv and linear weights."""
    from executorch.backends.qualcomm.quantizer.quantizer import QnnQuantizer, QuantDtype
    from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset

    if scheme not in DTYPES:
        raise F2IError(f"--quant {scheme}: QNN quantizes {', '.join(DTYPES)} here")
    soc = VENDORS["qnn"].target()
    if soc not in QcomChipset.__members__:
        raise F2IError(f"F2I_QNN_SOC={soc} is not a Qualcomm chip ExecuTorch knows "
                       f"(e.g. SM8550, SM8650, SM8750)")
    quantizer = QnnQuantizer(soc_model=QcomChipset[soc])
    quantizer.set_default_quant_config(getattr(QuantDtype, DTYPES[scheme]),
                                       is_conv_per_channel=True, is_linear_per_channel=True)
    return quantizer


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence QnnQuantizer's chatter: it prints a line for every op it has no config for (clone,
    dropout, contiguous: no arithmetic to quantize) and warns on the root logger for every norm
    weight; a command's output should be its own. Errors still raise."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(level)


def float_modules(module: nn.Module) -> tuple[str, ...]:
    """The module classes whose ops stay float, as in the TFLite recipe (quant_tflite.py): the
    factors computed from the statistics (a few hundred numbers spanning orders of magnitude),
    and in the statistics graph the normalizations that measure their input (their chained
    means, squares and reciprocal square roots compound each rounding: the bundled statistics
    came out at 28 to 46 dB against float with them quantized)."""
    if isinstance(module, Statistics):
        return NormFactors.__name__, StatNorm.__name__
    return (NormFactors.__name__,)


def keep_float(quantizer, kinds: tuple[str, ...]) -> None:
    """Leave the nodes traced from modules of these classes unannotated. QnnQuantizer skips
    nodes by name (`add_discard_nodes`), and the names are only final after its own
    `transform_for_annotation` inside prepare_pt2e, so the list is made as annotation starts."""
    annotate = quantizer.annotate

    def annotate_keeping_float(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
        quantizer.add_discard_nodes([n.name for n in gm.graph.nodes
                                     if own_module_type(n).endswith(kinds)])
        return annotate(gm)

    quantizer.annotate = annotate_keeping_float


def own_module_type(node: torch.fx.Node) -> str:
    """The class name of the innermost module a node was traced from ("" for top-level ops)."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    kind = list(stack.values())[-1][1]
    return kind if isinstance(kind, str) else kind.__qualname__


def quantize(module: nn.Module, inputs: Inputs, scheme: str,
             fold: bool = True) -> torch.fx.GraphModule:
    """The converted (fake-quantized) graph of `module` for the HTP at `scheme`, calibrated on
    every one of `inputs`; `fold=False` keeps the weights' quantize ops as nodes."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(module, inputs[0]).module()
    with no_sdk_download(), quiet():
        quantizer = qnn_quantizer(scheme)
        keep_float(quantizer, float_modules(module))
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for args in inputs:
                prepared(*args)
        return convert_pt2e(prepared, fold_quantize=fold)


def lower(converted: torch.fx.GraphModule, spec: GraphSpec) -> bytes:
    """A .pte program for the converted graph, QNN-delegated, through the export layer's
    ExecuTorch lowering and QNN partitioner (needs the SDK: export.vendor.check("qnn") first)."""
    from f2i_mobile.export.executorch import to_program
    from f2i_mobile.export.vendor import partitioner

    with no_sdk_download():
        return to_program(converted, spec, [partitioner("qnn")])[0]
