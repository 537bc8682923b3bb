"""ONNX: the dynamo exporter (torch.export underneath), checked with onnx.checker."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export.common import Lowered, with_precision
from f2i_mobile.graphs import GraphSpec

EXT = "onnx"
RUNNABLE = True
OPSET = 18


def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
    import onnx

    program = torch.onnx.export(
        with_precision(module, precision), spec.example_inputs(), dynamo=True, opset_version=OPSET,
        input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs],
        verbose=False)
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return Lowered(details={"opset": OPSET, "exporter": "torch.onnx dynamo"})
