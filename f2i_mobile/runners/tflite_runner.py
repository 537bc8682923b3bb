"""TFLite graphs through the LiteRT interpreter (`ai_edge_litert`); the artifacts' image and
latent I/O is NHWC, transposed by `ArtifactRunner` from the manifest's io_layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from f2i_mobile.manifest import Artifact
from f2i_mobile.runners.artifacts import ArtifactRunner


class TFLiteRunner(ArtifactRunner):
    backend = "tflite"

    def load(self, path: Path, artifact: Artifact):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
        return interpreter.get_signature_runner(artifact.details.get("signature",
                                                                     "serving_default"))

    def invoke(self, runner, graph: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        details = self.artifact(graph).details
        outputs = runner(**dict(zip(details["inputs"], inputs)))
        return [outputs[name] for name in details["outputs"]]
