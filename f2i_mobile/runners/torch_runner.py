"""Graphs as torch modules behind `GraphRunner`: the float reference (the model's own stages,
LoRA merged) and any replacement of them (quantized or compressed graphs measured in torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.graphs import graph_modules, graph_specs
from f2i_mobile.runners.base import GraphRunner


class TorchRunner(GraphRunner):
    backend = "torch"

    def __init__(self, modules: dict[str, nn.Module], specs: dict[str, GraphSpec],
                 precision: str = "fp32"):
        self.modules, self.specs, self.precision = modules, specs, precision

    @classmethod
    def of_model(cls, model: F2IDiffSR, tile: int | None = None, steps: int = 1,
                 ) -> TorchRunner:
        """The model's graphs; `steps` above 1 samples the U-Net in that many calls."""
        return cls(graph_modules(model, steps), graph_specs(model.config, tile, steps=steps))

    @torch.no_grad()
    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.specs[graph]
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32))
                for n in spec.input_names]
        out = self.modules[graph](*args)
        outs = out if isinstance(out, tuple) else (out,)
        return {n: o.numpy() for n, o in zip(spec.output_names, outs)}
