"""The float reference runner: the model's own stages in torch, LoRA merged."""

from __future__ import annotations

import numpy as np
import torch

from f2i_mobile.graphs import graph_modules, graph_specs
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.runners.base import GraphRunner


class TorchRunner(GraphRunner):
    backend = "torch"
    precision = "fp32"

    def __init__(self, model: F2IDiffSR):
        self.config = model.config
        self.modules = graph_modules(model)
        self.input_names = {name: [t.name for t in spec.inputs]
                            for name, spec in graph_specs(model.config).items()}
        self.output_names = {name: [t.name for t in spec.outputs]
                             for name, spec in graph_specs(model.config).items()}

    @torch.no_grad()
    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32))
                for n in self.input_names[graph]]
        out = self.modules[graph](*args)
        outs = out if isinstance(out, tuple) else (out,)
        return {n: o.numpy() for n, o in zip(self.output_names[graph], outs)}
