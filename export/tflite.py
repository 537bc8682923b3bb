"""TFLite / LiteRT through litert-torch, with NHWC image and latent I/O for the delegates."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from export.common import Lowered, NHWCGraph, nhwc_examples, nhwc_layout, with_precision
from f2i_mobile.graphs import GraphSpec

EXT = "tflite"
RUNNABLE = True


def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
    import litert_torch

    graph = NHWCGraph(with_precision(module, precision), spec).eval()
    litert_torch.convert(graph, nhwc_examples(spec)).export(str(path))
    return Lowered(io_layout=nhwc_layout(spec),
                   details={"converter": "litert-torch", "signature": "serving_default"})
