"""ONNX Runtime on the CPU execution provider."""

from __future__ import annotations

from f2i_mobile.runners.artifact_runner import ArtifactRunner


class ONNXRunner(ArtifactRunner):
    def load(self, path):
        import onnxruntime as ort

        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, session, args):
        names = [i.name for i in session.get_inputs()]
        return session.run(None, dict(zip(names, args)))


RUNNER = ONNXRunner
