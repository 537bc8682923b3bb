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
so, and the host bench records them)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from f2i_mobile.core.errors import F2IError
from f2i_mobile.runners.artifact_runner import ArtifactRunner

THREADS_ENV = "F2I_ORT_THREADS"


class ONNXRunner(ArtifactRunner):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.quantized = self.precision != "fp32"
        if runs_unfused(self.quantized):
            self.notes = ("int8 QDQ graphs run unfused (dequantize, float op): this x86 CPU's "
                          "int8 kernels saturate without VNNI; numbers exact, speed not int8's",)

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


def int8_kernels_exact(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether ONNX Runtime's fused int8 kernels on this CPU sum without saturating: any CPU but
    x86-64, or x86-64 with VNNI (32-bit dot products). An x86 CPU whose flags cannot be read
    counts as saturating: unfused is slower but never wrong."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


RUNNER = ONNXRunner
