"""Core ML: coremltools from the torch.export program, as an mlprogram for iOS 17 or later.

Core ML predicts only on macOS; here the saved spec is validated instead (export/parity.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.export.common import Lowered
from f2i_mobile.models.graphs import example_inputs

COMPUTE_UNITS = "ALL"  # CPU, GPU and the Neural Engine, Core ML's choice per op


def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
    import coremltools as ct

    program = torch.export.export(module, example_inputs(spec), strict=False)
    program = program.run_decompositions({})
    compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    model = ct.convert(
        program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
        inputs=[ct.TensorType(name=t.name, shape=t.shape) for t in spec.inputs],
        outputs=[ct.TensorType(name=t.name) for t in spec.outputs],
        compute_precision=compute, compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS))
    model.save(str(path))
    return Lowered(details={"format": "mlprogram", "minimum_deployment_target": "iOS17",
                            "compute_precision": compute.name if hasattr(compute, "name")
                            else str(compute), "compute_units": COMPUTE_UNITS})
