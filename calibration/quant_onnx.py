"""ONNX int8: onnxruntime.quantization.quantize_static in QDQ format on the float .onnx.

QDQ (QuantizeLinear/DequantizeLinear pairs around float ops) is what the mobile execution
providers (NNAPI, QNN, XNNPACK) fuse into integer kernels; the QOperator format is not needed.
Weights per channel, symmetric int8; activations uint8 (asymmetric: the same 256 levels as int8
with a zero point), calibrated by min-max over the captured inputs through a
CalibrationDataReader, one tile at a time, with ONNX Runtime's moving average of each tile's range
(`CalibMovingAverage`) rather than the extremes over all tiles: one tile with extreme activations
otherwise sets the range for every photo. Measured on the bundled decoder at
tile 224 (16 calibration tiles, 2 check tiles, PSNR against float): plain min-max 31.7 and 31.8 dB,
the moving average 41.6 and 42.0 dB; ORT's percentile calibration holds every tile's tensors in
memory and did not fit 24 GB at this size (43.0 dB on 4 tiles).

Why uint8 activations: ONNX Runtime's fused x86 kernels (QLinearConv, QLinearMatMul, QGemm) take
uint8 activations, and its x86 rewrite of int8 QDQ pairs into uint8 ones (QDQS8ToU8) skips a
tensor that several nodes read (a ResNet block's input, read by its norm and its shortcut; the
upsampler's output). The ops on either side of such a tensor then ran as float Conv between
Q/DQ pairs: with int8 activations the bundled decoder at tile 224 fused 18 of its 23 convolutions,
and the 5 left in float (the upsamplers' and shortcuts' convs at the two largest sizes) took 41 %
of its time; the U-Net left 11 convolutions, 11 Gemms and 24 MatMuls unfused. With uint8
activations every one fuses, at the same PSNR against float (decoder 41.0-42.0 dB on the 8 check
tiles either way). uint8 QDQ is also what QNN's and NNAPI's execution providers take.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from f2i_mobile.core.atomic import atomic_file

# The compute-heavy ops, which NPUs run in int8. With every op type quantized, ORT fuses the QDQ
# graph into a QLinearConv that its own shape inference rejects ("dilations has incorrect
# size", after the decoder's upsampler); normalization, resize and elementwise ops stay float.
OPS = ("Conv", "MatMul", "Gemm")


def quantize(float_path: Path, inputs: Sequence[tuple[torch.Tensor, ...]], names: list[str],
             path: Path, **options) -> dict:
    """Quantize the float .onnx (export/onnx.py) at `float_path` into `path`. `options` replace
    quantize_static's arguments below (benchmarks/onnx_int8.py tries 7-bit and uint8 weights
    for CPUs without VNNI)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{n: a.numpy() for n, a in zip(names, args)} for args in inputs])

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as work:
        pre = Path(work) / "pre.onnx"  # shapes inferred, as ORT advises (its
        # graph optimization here left stale GroupNorm shapes that the QDQ session rejects)
        quant_pre_process(str(float_path), str(pre), skip_optimization=True,
                          skip_symbolic_shape=True)
        settings = {"quant_format": QuantFormat.QDQ, "per_channel": True,
                    "activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8,
                    "op_types_to_quantize": list(OPS),
                    "extra_options": {"CalibMovingAverage": True}, **options}
        quantize_static(str(pre), str(path), Reader(), **settings)
    return {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "calibration": "minmax, moving average over the tiles",
            "activations": "uint8, asymmetric, per tensor",
            "weights": "int8, symmetric, per channel",
            "quantized_ops": list(OPS), **({"options": {k: str(v) for k, v in options.items()}}
                                           if options else {})}


def perturb_scale(path: Path, factor: float) -> str:
    """Multiply the scale of the QuantizeLinear on the graph's first input by `factor`, leaving
    its DequantizeLinear as it was: the gate's deliberately broken quantization, as a wrong
    calibration table gives. The input's, because the graph's normalizations take the photo's
    statistics and so do not undo it. A factor below 1 saturates the input; above 1 it only
    shrinks it, which an untrained test decoder, near constant, hardly shows. Returns the node's
    name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    first = model.graph.input[0].name
    node = next((n for n in model.graph.node
                 if n.op_type == "QuantizeLinear" and n.input[0] == first), None)
    if node is None:
        raise ValueError(f"{path.name}: its first input {first!r} is not quantized")
    scale = next(i for i in model.graph.initializer if i.name == node.input[1])
    broken = numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(factor),
                                     name=f"{scale.name}_x{factor:g}")
    model.graph.initializer.append(broken)
    node.input[1] = broken.name
    with atomic_file(path) as tmp:
        onnx.save(model, str(tmp))
    return node.name
