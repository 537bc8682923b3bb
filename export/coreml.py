"""Core ML: coremltools.convert of the torch.export'ed graph -> .mlpackage (mlprogram, iOS17).

fp16 is Core ML's own `compute_precision=FLOAT16` (weights and activations in half on the Neural
Engine/GPU); I/O stays float32. The package is a folder, written with `atomic_dir`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from f2i_mobile.atomic import atomic_dir
from f2i_mobile.graphs import GraphSpec

EXTENSION = "mlpackage"
DEPLOYMENT_TARGET = "iOS17"
COMPUTE_UNITS = "ALL"  # Core ML picks Neural Engine, GPU or CPU per op at load time


def lower(module: nn.Module, spec: GraphSpec, precision: str, path: Path) -> dict:
    import coremltools as ct

    program = torch.export.export(module, spec.example_inputs(), strict=False)
    program = program.run_decompositions({})
    mlmodel = ct.convert(
        program,
        inputs=[ct.TensorType(name=t.name, shape=t.shape) for t in spec.inputs],
        outputs=[ct.TensorType(name=t.name) for t in spec.outputs],
        convert_to="mlprogram",
        minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS),
        skip_model_load=True,  # no Core ML framework outside macOS
    )
    with atomic_dir(path) as tmp:
        package = tmp / path.name  # coremltools insists on the .mlpackage suffix
        mlmodel.save(str(package))
        for item in package.iterdir():
            item.rename(tmp / item.name)
        package.rmdir()
    return {"details": {"format": "mlprogram", "minimum_deployment_target": DEPLOYMENT_TARGET,
                        "compute_precision": "FLOAT16" if precision == "fp16" else "FLOAT32",
                        "compute_units": COMPUTE_UNITS,
                        "prediction": "not run: Core ML predicts only on macOS"}}
