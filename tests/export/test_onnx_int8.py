"""ONNX Runtime's int8 on x86: the runner gives a quantized graph's QDQ numbers on any CPU."""

from __future__ import annotations

import numpy as np
import pytest

from f2i_mobile.core import cpu
from f2i_mobile.runners.onnx_runner import int8_kernels_exact, open_session

CHANNELS = 64


def _saturating_conv(path) -> None:
    """A 1x1 QDQ conv of 64 channels, every int8 weight and activation at its largest: on x86
    without VNNI the fused kernel's 16-bit pair sums (255 * 127 * 2 after the u8 shift) clip."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y0"]),
             helper.make_node("QuantizeLinear", ["y0", "ys", "z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "z"], ["y"])]
    weights = [const("wq", np.full((1, CHANNELS, 1, 1), 127, np.int8)),
               const("ws", np.full((1,), 1 / 127, np.float32)),
               const("wz", np.zeros((1,), np.int8)), const("s", np.float32(1 / 127)),
               const("z", np.int8(0)), const("ys", np.float32(CHANNELS / 127))]
    graph = helper.make_graph(
        nodes, "saturating_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_quantized_session_gives_the_qdq_numbers_on_this_cpu(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "conv.onnx"
    _saturating_conv(path)
    x = np.ones((1, CHANNELS, 2, 2), np.float32)
    y = open_session(path, quantized=True).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, CHANNELS, rtol=1e-5)  # 64 ones times weights of 1


@pytest.mark.parametrize("machine, flags, exact", [
    ("x86_64", "fpu sse2 avx2 fma", False),
    ("x86_64", "fpu avx2 avx512f avx512_vnni", True),
    ("AMD64", "fpu avx2 avx_vnni", True),
    ("aarch64", "fp asimd", True),
    ("x86_64", None, False),
])
def test_int8_kernels_count_as_exact_only_where_they_cannot_saturate(
        tmp_path, monkeypatch, machine, flags, exact):
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert int8_kernels_exact(cpuinfo) is exact


def test_every_convolution_of_a_quantized_graph_runs_as_an_int8_kernel(tmp_path):
    """quant_onnx's QDQ graph fuses whole on ONNX Runtime: a tensor read by two convolutions (a
    ResNet block's input, read by its branch and its shortcut) and an upsampler's output were
    left as float Conv between Q/DQ pairs with int8 activations on x86; every Conv must become
    a QLinearConv in the session ORT optimizes."""
    import collections

    import onnx
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F
    from torch import nn

    from f2i_mobile.calibration import quant_onnx

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_in, self.conv1 = nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.conv2, self.shortcut = nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(8, 16, 1)
            self.up = nn.Conv2d(16, 16, 3, padding=1)

        def forward(self, x):
            h = self.conv_in(x)
            y = self.conv2(F.silu(self.conv1(F.silu(h)))) + self.shortcut(h)
            return self.up(F.interpolate(y, scale_factor=2.0, mode="nearest"))

    torch.manual_seed(0)
    block, x = Block().eval(), torch.randn(1, 4, 16, 16)
    float_path, path, optimized = (tmp_path / n for n in ("f.onnx", "q.onnx", "opt.onnx"))
    torch.onnx.export(block, (x,), str(float_path), dynamo=True, input_names=["x"])
    quant_onnx.quantize(float_path, [(torch.randn(1, 4, 16, 16),) for _ in range(4)], ["x"],
                        path)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    assert ops["Conv"] == 0 and ops["QLinearConv"] == 5, ops
