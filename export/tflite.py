"""TFLite / LiteRT through litert-torch, with NHWC image and latent I/O for the delegates.

TFLite kernels and the GPU/NPU delegates are channel-last: NCHW I/O would leave a transpose at
each end of the graph on the phone. litert-torch's own `to_channel_last_io` wrapper moves them to
the host side (token sequences stay NLC); the runner transposes per the manifest's io_layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from export.common import Lowered, nhwc_examples, nhwc_layout, with_precision
from f2i_mobile.graphs import GraphSpec

EXT = "tflite"
RUNNABLE = True


def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # the export's tqdm bar is enough
    import litert_torch

    graph = litert_torch.to_channel_last_io(
        with_precision(module, precision),
        args=[i for i, t in enumerate(spec.inputs) if t.layout == "NCHW"],
        outputs=[i for i, t in enumerate(spec.outputs) if t.layout == "NCHW"]).eval()
    litert_torch.convert(graph, nhwc_examples(spec)).export(str(path))
    return Lowered(io_layout=nhwc_layout(spec),
                   details={"converter": "litert-torch", "signature": "serving_default"})
