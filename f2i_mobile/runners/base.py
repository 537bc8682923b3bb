"""One small interface for running graphs, whatever the runtime, and the one chain that wires
them.

The tiler, parity, quant-check, calibration capture, the receptive-field measure and the host
bench all drive graphs through a `GraphRunner`. Inputs and outputs are numpy float32 arrays keyed
by the contract's tensor names (`lr`, `tokens`, `latent`, `latent_sr`, `sr`) in the contract's
layouts (NCHW / NLC); a runner whose artifacts use another layout (NHWC TFLite) transposes
inside. Torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import numpy as np

from f2i_mobile.core.contract import GRAPHS, GraphSpec
from f2i_mobile.core.errors import F2IError


class GraphRunner(ABC):
    backend: str = ""
    precision: str = "fp32"
    specs: dict[str, GraphSpec]  # the graphs it runs, with their I/O
    notes: tuple[str, ...] = ()  # what a reader of its timings should know

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


def run_chain(runner: GraphRunner, values: dict[str, np.ndarray],
              graphs: Iterable[str] = GRAPHS) -> dict[str, np.ndarray]:
    """Run `graphs` in pipeline order, each on the named tensors it takes from `values` (the
    LR tile, and whatever earlier graphs gave); a graph whose outputs are all in `values`
    already is not run (tokens computed once per photo). Returns `values` with every output
    added."""
    values = dict(values)
    for graph in graphs:
        spec = runner.specs[graph]
        if all(name in values for name in spec.output_names):
            continue
        missing = [n for n in spec.input_names if n not in values]
        if missing:
            raise F2IError(f"graph {graph} needs {', '.join(missing)}, which no earlier graph "
                           f"gives")
        values.update(runner.run(graph, {n: values[n] for n in spec.input_names}))
    return values
