"""ExecuTorch .pte graphs through the `executorch.runtime` Python bindings (XNNPACK kernels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from f2i_mobile.manifest import Artifact
from f2i_mobile.runners.artifacts import ArtifactRunner


class ExecuTorchRunner(ArtifactRunner):
    backend = "executorch"

    def load(self, path: Path, artifact: Artifact):
        from executorch.runtime import Runtime

        return Runtime.get().load_program(path).load_method("forward")

    def invoke(self, method, graph: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        outputs = method.execute([torch.from_numpy(x) for x in inputs])
        return [o.numpy() for o in outputs]
