"""One small interface for running the four graphs, whatever the runtime.

The tiler, the export parity check, calibration and the host bench all drive graphs through a
`GraphRunner`. Inputs and outputs are numpy float32 arrays keyed by the registry's tensor names
(`lr`, `tokens`, `latent`, `latent_sr`, `sr`) in the registry's layouts (NCHW / NLC); a runner whose
artifacts use another layout (NHWC TFLite) transposes inside. This module imports no torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class GraphRunner(ABC):
    backend: str = ""
    precision: str = "fp32"

    @abstractmethod
    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph on a batch. The batch size must be one `batch_size(graph)` accepts."""

    def batch_size(self, graph: str) -> int | None:
        """The batch the graph's artifact was exported with, or None for any batch."""
        return None

    def release(self, graph: str) -> None:
        """Drop a loaded graph to free its memory (stage order keeps one graph resident)."""

    def close(self) -> None:
        """Release everything."""

    def __enter__(self) -> GraphRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
