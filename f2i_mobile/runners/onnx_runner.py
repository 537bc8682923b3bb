"""ONNX Runtime on the CPU execution provider.

`F2I_ORT_THREADS` sets the intra-op threads (default: ONNX Runtime's, one per physical core),
for a machine shared with other work and for the tile/thread benchmark
(benchmarks/onnx_tiles.py).

Quantized (QDQ) graphs on an x86-64 CPU without VNNI run with ONNX Runtime's QDQ fusion off:
there its fused int8 kernels multiply u8 activations by s8 weights with VPMADDUBSW, whose 16-bit
pair sums saturate. Measured on the bundled model's w8a8 graphs against float: conditioner 41.1
dB fused vs 53.9 dB unfused, encoder 42.0 vs 48.0. A phone's int8 kernels (Arm dot products,
32-bit sums) and NPUs do not saturate, so the unfused graph, dequantize then the float op, gives
the numbers the phone gives; only its speed is not the int8 kernels' (the runner's `notes` say
so, to `upscale`'s user and in the host bench's records). On such a CPU int8 does not pay in
ONNX Runtime either way: on a 2-core AVX2 EPYC (Zen 1) the bundled graphs at tile 224 ran
unfused at 0.68x (encoder), 0.88x (U-Net) and 0.55x (decoder) of fp32's speed, and fused with
7-bit weights (`reduce_range`, exact there) at 0.94x, 1.06x and 0.83x
(benchmarks/onnx_int8.py, docs/quantization.md)."""

from __future__ import annotations

import os
from pathlib import Path

from f2i_mobile.core.cpu import CPUINFO, int8_sums_exact, this_cpu
from f2i_mobile.core.errors import F2IError
from f2i_mobile.runners.artifact_runner import ArtifactRunner

THREADS_ENV = "F2I_ORT_THREADS"


class ONNXRunner(ArtifactRunner):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.quantized = self.precision != "fp32"
        if runs_unfused(self.quantized):
            self.notes = ("int8 QDQ graphs run unfused (dequantize, float op): this x86 CPU "
                          "has no VNNI, where int8 kernels saturate; exact numbers, at fp32's "
                          "speed or slower (fp32 is the faster choice here)",)

    def load(self, path):
        return open_session(path, self.quantized)

    def execute(self, session, args):
        names = [i.name for i in session.get_inputs()]
        return session.run(None, dict(zip(names, args)))


def open_session(path: Path, quantized: bool):
    """A CPU session on the .onnx at `path`; a quantized one unfused where the fused int8
    kernels would saturate (see the module's docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads()
    if runs_unfused(quantized):  # BASIC folds constants, leaves Q/DQ unfused
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def intra_op_threads() -> int:
    """`F2I_ORT_THREADS`, or 0: ONNX Runtime's default."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise F2IError(f"{THREADS_ENV}={text!r}: expected a number of threads (0: ONNX "
                       f"Runtime's default)")
    return int(text)


def runs_unfused(quantized: bool) -> bool:
    return quantized and not int8_kernels_exact()


def int8_kernels_exact(cpuinfo: Path = CPUINFO) -> bool:
    """Whether ONNX Runtime's fused int8 kernels on this CPU sum without saturating
    (`core.cpu.int8_sums_exact`). An x86 CPU whose flags cannot be read counts as saturating:
    unfused is slower but never wrong."""
    return int8_sums_exact(this_cpu(cpuinfo))


RUNNER = ONNXRunner
