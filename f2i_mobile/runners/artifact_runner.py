"""Runners for exported artifacts: a base that loads, lays out and dispatches, and one small
class per runtime in its own module (`executorch_runner`, `tflite_runner`, `onnx_runner`), which
`open_runner` imports only when that backend is opened. Torch-free.

Each graph's artifact is loaded on first use (so stage order keeps one graph resident), fed the
contract's tensor names in the artifact's own layout (NHWC for TFLite images and latents), and
returns the contract's layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from f2i_mobile.core.manifest import Artifact, Manifest
from f2i_mobile.runners.base import GraphRunner


class ArtifactRunner(GraphRunner):
    def __init__(self, manifest: Manifest, folder: Path, backend: str, precision: str):
        self.manifest, self.folder = manifest, folder
        self.backend, self.precision = backend, precision
        self.specs = manifest.graphs
        self.loaded: dict[str, object] = {}

    def artifact(self, graph: str) -> Artifact:
        return self.manifest.artifact(self.backend, graph, self.precision)

    def batch_size(self, graph: str) -> int | None:
        return self.manifest.batch

    def release(self, graph: str) -> None:
        self.loaded.pop(graph, None)

    def close(self) -> None:
        self.loaded.clear()

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph not in self.loaded:
            self.loaded[graph] = self.load(self.folder / self.artifact(graph).path)
        spec = self.specs[graph]
        layout = self.artifact(graph).io_layout
        args = [_to_layout(np.ascontiguousarray(inputs[t.name], dtype=np.float32),
                           layout.get(t.name)) for t in spec.inputs]
        outs = self.execute(self.loaded[graph], args)
        return {t.name: _from_layout(np.asarray(o, dtype=np.float32), layout.get(t.name))
                for t, o in zip(spec.outputs, outs)}

    def load(self, path: Path):
        raise NotImplementedError

    def execute(self, handle, args: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


def _to_layout(x: np.ndarray, layout: str | None) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


def _from_layout(x: np.ndarray, layout: str | None) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "NHWC" else x
