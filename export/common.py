"""What every backend's `lower` shares: its result record and the I/O wrappers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from f2i_mobile.graphs import GraphSpec

PRECISIONS = ("fp32", "fp16")


@dataclass
class Lowered:
    io_layout: dict[str, str] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


class Fp16Graph(nn.Module):
    """Runs a graph in fp16 with float32 I/O, so every precision has the manifest's I/O dtypes."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = module.half()

    def forward(self, *inputs: torch.Tensor):
        out = self.inner(*(x.half() for x in inputs))
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


class NHWCGraph(nn.Module):
    """The graph with NHWC image/latent I/O (token sequences unchanged): TFLite's GPU and NPU
    delegates work in NHWC, and transposes at the graph's edges cost less there than inside."""

    def __init__(self, module: nn.Module, spec: GraphSpec):
        super().__init__()
        self.inner = module
        self.in_nchw = [t.layout == "NCHW" for t in spec.inputs]
        self.out_nchw = [t.layout == "NCHW" for t in spec.outputs]

    def forward(self, *inputs: torch.Tensor):
        args = [x.permute(0, 3, 1, 2) if c else x for x, c in zip(inputs, self.in_nchw)]
        out = self.inner(*args)
        outs = out if isinstance(out, tuple) else (out,)
        outs = tuple(o.permute(0, 2, 3, 1) if c else o for o, c in zip(outs, self.out_nchw))
        return outs if isinstance(out, tuple) else outs[0]


def nhwc_layout(spec: GraphSpec) -> dict[str, str]:
    return {t.name: "NHWC" for t in (*spec.inputs, *spec.outputs) if t.layout == "NCHW"}


def nhwc_examples(spec: GraphSpec) -> tuple[torch.Tensor, ...]:
    return tuple(x.permute(0, 2, 3, 1).contiguous() if t.layout == "NCHW" else x
                 for x, t in zip(spec.example_inputs(), spec.inputs))


def with_precision(module: nn.Module, precision: str) -> nn.Module:
    return Fp16Graph(module) if precision == "fp16" else module
