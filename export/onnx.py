"""ONNX: torch.onnx.export(dynamo=True) -> .onnx, checked with onnx.checker.

The registry's tensor names become the ONNX input/output names; weights are kept inside the
one file (small models; a phone app ships one file per graph)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export.fp16 import for_precision
from f2i_mobile.atomic import atomic_file
from f2i_mobile.graphs import GraphSpec

EXTENSION = "onnx"
OPSET = 18


def lower(module: nn.Module, spec: GraphSpec, precision: str, path: Path) -> dict:
    import onnx

    program = torch.onnx.export(
        for_precision(module, precision), spec.example_inputs(), dynamo=True,
        input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs],
        opset_version=OPSET, external_data=False, verbose=False)
    with atomic_file(path) as tmp:
        program.save(str(tmp), external_data=False)
        onnx.checker.check_model(str(tmp), full_check=True)
    return {"details": {"opset": OPSET, "checker": "onnx.checker full_check passed"}}
