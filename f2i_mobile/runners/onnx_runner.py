"""ONNX Runtime on the CPU execution provider.

`F2I_ORT_THREADS` sets the intra-op threads (default: ONNX Runtime's, one per physical core),
for a machine shared with other work and for the tile/thread benchmark
(benchmarks/onnx_tiles.py)."""

from __future__ import annotations

import os

from f2i_mobile.core.errors import F2IError
from f2i_mobile.runners.artifact_runner import ArtifactRunner

THREADS_ENV = "F2I_ORT_THREADS"


class ONNXRunner(ArtifactRunner):
    def load(self, path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads()
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=["CPUExecutionProvider"])

    def execute(self, session, args):
        names = [i.name for i in session.get_inputs()]
        return session.run(None, dict(zip(names, args)))


def intra_op_threads() -> int:
    """`F2I_ORT_THREADS`, or 0: ONNX Runtime's default."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise F2IError(f"{THREADS_ENV}={text!r}: expected a number of threads (0: ONNX "
                       f"Runtime's default)")
    return int(text)


RUNNER = ONNXRunner
