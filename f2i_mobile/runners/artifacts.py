"""The common part of the runners that run exported artifacts: which file holds a graph (from the
manifest), opening it on first use, `release`, and the batch each graph was exported with.
This module imports no torch."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from f2i_mobile.errors import F2IError
from f2i_mobile.manifest import Artifact, Manifest
from f2i_mobile.runners.base import GraphRunner


class ArtifactRunner(GraphRunner):
    """Subclasses open one artifact (`load`) and run it on float32 arrays in the artifact's own
    layouts (`invoke`); this class keeps loaded graphs and handles names and layouts."""

    def __init__(self, folder: str | Path, manifest: Manifest, precision: str):
        self.folder, self.manifest, self.precision = Path(folder), manifest, precision
        self.loaded: dict[str, Any] = {}

    @abstractmethod
    def load(self, path: Path, artifact: Artifact) -> Any: ...

    @abstractmethod
    def invoke(self, session: Any, graph: str, inputs: list[np.ndarray]) -> list[np.ndarray]: ...

    def artifact(self, graph: str) -> Artifact:
        return self.manifest.artifact(self.backend, graph, self.precision)

    def session(self, graph: str) -> Any:
        if graph not in self.loaded:
            artifact = self.artifact(graph)
            path = self.folder / artifact.path
            if not path.exists():
                raise F2IError(f"{path}: missing (the manifest lists it; export again)")
            self.loaded[graph] = self.load(path, artifact)
        return self.loaded[graph]

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        info, layouts = self.manifest.graphs[graph], self.artifact(graph).io_layout
        arrays = []
        for t in info.inputs:
            if t.name not in inputs:
                raise F2IError(f"graph {graph} needs input {t.name!r}")
            x = np.ascontiguousarray(inputs[t.name], dtype=np.float32)
            if layouts.get(t.name) == "NHWC" and t.layout == "NCHW":
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            arrays.append(x)
        outputs = self.invoke(self.session(graph), graph, arrays)
        result = {}
        for t, y in zip(info.outputs, outputs):
            if layouts.get(t.name) == "NHWC" and t.layout == "NCHW":
                y = y.transpose(0, 3, 1, 2)
            result[t.name] = np.ascontiguousarray(y, dtype=np.float32)
        return result

    def batch_size(self, graph: str) -> int | None:
        return self.manifest.graphs[graph].inputs[0].shape[0]

    def release(self, graph: str) -> None:
        self.loaded.pop(graph, None)

    def close(self) -> None:
        self.loaded.clear()
