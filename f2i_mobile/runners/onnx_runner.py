"""ONNX graphs through ONNX Runtime on its CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from f2i_mobile.manifest import Artifact
from f2i_mobile.runners.artifacts import ArtifactRunner


class ONNXRunner(ArtifactRunner):
    backend = "onnx"

    def load(self, path: Path, artifact: Artifact):
        import onnxruntime as ort

        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def invoke(self, session, graph: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        info = self.manifest.graphs[graph]
        return session.run([t.name for t in info.outputs],
                           {t.name: x for t, x in zip(info.inputs, inputs)})
