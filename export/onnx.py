"""ONNX: the dynamo exporter (torch.export underneath), checked with onnx.checker.

A protobuf holds at most 2 GB, so larger graphs (the `eff` and `full` U-Nets and DINOv2-large)
keep their weights in an external data file beside the .onnx, which ONNX Runtime finds by its
relative name. Such files are listed in the artifact's details (name, bytes, sha256) and moved
into place with the .onnx (export/pipeline.lower_one), before it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.export.common import Lowered, with_precision
from f2i_mobile.models.graphs import example_inputs

OPSET = 18


def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
    import onnx

    program = torch.onnx.export(
        with_precision(module, precision), example_inputs(spec), dynamo=True, opset_version=OPSET,
        input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs],
        verbose=False)
    program.save(str(path))  # the exporter moves weights to external data past 2 GB
    onnx.checker.check_model(str(path), full_check=True)
    details = {"opset": OPSET, "exporter": "torch.onnx dynamo"}
    external = [path.parent / name for name in external_files(path)]
    if external:
        from f2i_mobile.core.manifest import sha256_path

        details["external_data"] = [{"name": p.name, "bytes": p.stat().st_size,
                                     "sha256": sha256_path(p)} for p in external]
    return Lowered(details=details)


def external_files(path: Path) -> list[str]:
    """The external data files an .onnx refers to (its tensors' `location`s), by the graph's
    own record rather than by what else lies in its folder."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    return sorted({ExternalDataInfo(t).location for t in model.graph.initializer
                   if uses_external_data(t)})
