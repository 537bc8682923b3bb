"""What every backend's `lower` shares: its result record and the I/O wrappers."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.models.graphs import example_inputs


@dataclass
class Lowered:
    io_layout: dict[str, str] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


class Fp16Graph(nn.Module):
    """Runs a graph in fp16 with float32 I/O, so every precision has the manifest's I/O dtypes."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = copy.deepcopy(module).half()  # the float graph is shared by other backends

    def forward(self, *inputs: torch.Tensor):
        out = self.inner(*(x.half() for x in inputs))
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def nhwc_layout(spec: GraphSpec) -> dict[str, str]:
    return {t.name: "NHWC" for t in (*spec.inputs, *spec.outputs) if t.layout == "NCHW"}


def nhwc_examples(spec: GraphSpec) -> tuple[torch.Tensor, ...]:
    return tuple(x.permute(0, 2, 3, 1).contiguous() if t.layout == "NCHW" else x
                 for x, t in zip(example_inputs(spec), spec.inputs))


def with_precision(module: nn.Module, precision: str) -> nn.Module:
    return Fp16Graph(module) if precision == "fp16" else module
