"""ExecuTorch: torch.export -> to_edge_transform_and_lower with the XNNPACK partitioner -> .pte.

Ops XNNPACK does not take (GroupNorm, LayerNorm, softmax masks) stay in ExecuTorch's portable
kernels, so every graph lowers whole; the count of delegated calls is recorded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.export.common import Lowered, with_precision
from f2i_mobile.models.graphs import example_inputs


def to_program(module: nn.Module, spec: GraphSpec, partitioners: list):
    """(program bytes, edge manager) of a module lowered with the given partitioners."""
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(module, example_inputs(spec), strict=False)
    edge = to_edge_transform_and_lower(exported, partitioner=partitioners)
    return edge.to_executorch().buffer, edge


def delegated_calls(edge) -> int:
    graph = edge.exported_program().graph
    return sum(1 for n in graph.nodes if n.op == "call_function"
               and "executorch_call_delegate" in str(n.target))


def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    buffer, edge = to_program(with_precision(module, precision), spec, [XnnpackPartitioner()])
    path.write_bytes(buffer)
    return Lowered(details={"delegate": "XnnpackBackend",
                            "delegated_calls": delegated_calls(edge)})
