"""fp16 by casting the module: weights and activations in half, graph I/O kept float32.

Used by the backends whose runtime has no float16 compute switch of its own (ExecuTorch's
XNNPACK, LiteRT, ONNX Runtime); Core ML has one (`compute_precision`) and does not use this.
Keeping I/O float32 means the manifest's tensor specs and the runners are the same for every
precision; the casts at the edges are two ops.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class HalfGraph(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = copy.deepcopy(module).half()

    def forward(self, *inputs: torch.Tensor):
        out = self.inner(*(x.half() for x in inputs))
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def for_precision(module: nn.Module, precision: str) -> nn.Module:
    return HalfGraph(module).eval() if precision == "fp16" else module
