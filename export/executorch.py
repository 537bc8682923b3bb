"""ExecuTorch: torch.export -> to_edge_transform_and_lower(XNNPACK) -> .pte.

fp16 casts the module to half (`export.fp16`): XNNPACK's partitioner takes the half ops and runs
them with its fp16 kernels where the CPU has them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export.fp16 import for_precision
from f2i_mobile.atomic import atomic_file
from f2i_mobile.graphs import GraphSpec

EXTENSION = "pte"


def export_program(module: nn.Module, spec: GraphSpec, precision: str):
    """The graph as a torch.export program (also the input of the vendor partitioners)."""
    return torch.export.export(for_precision(module, precision), spec.example_inputs(),
                               strict=False)


def to_pte(program, partitioners: list, path: Path) -> None:
    from executorch.exir import to_edge_transform_and_lower

    lowered = to_edge_transform_and_lower(program, partitioner=partitioners).to_executorch()
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            lowered.write_to_file(f)


def lower(module: nn.Module, spec: GraphSpec, precision: str, path: Path) -> dict:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    to_pte(export_program(module, spec, precision), [XnnpackPartitioner()], path)
    return {"details": {"delegate": "xnnpack",
                        "fp16": "module.half(), float32 I/O" if precision == "fp16" else None}}
