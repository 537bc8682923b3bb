"""TFLite / LiteRT: litert_torch.convert -> .tflite.

Images and latents cross the graph boundary in NHWC (`litert_torch.to_channel_last_io`): TFLite
kernels and the GPU/NPU delegates are channel-last, so NCHW I/O would put a transpose at each end
of the graph on the phone. Token sequences (NLC) stay as they are. The artifact's `io_layout`
records this; the TFLite runner transposes so callers keep the registry's layouts.
fp16 casts the module to half (`export.fp16`).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from export.fp16 import for_precision
from f2i_mobile.atomic import atomic_file
from f2i_mobile.graphs import GraphSpec

EXTENSION = "tflite"


def channel_last(spec: GraphSpec) -> tuple[list[int], list[int]]:
    """Indices of the NCHW inputs and outputs (the ones worth moving to NHWC)."""
    return ([i for i, t in enumerate(spec.inputs) if t.layout == "NCHW"],
            [i for i, t in enumerate(spec.outputs) if t.layout == "NCHW"])


def lower(module: nn.Module, spec: GraphSpec, precision: str, path: Path) -> dict:
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # our own progress bar is enough
    import litert_torch

    ins, outs = channel_last(spec)
    wrapped = litert_torch.to_channel_last_io(for_precision(module, precision), args=ins,
                                              outputs=outs)
    args = tuple(x.permute(0, 2, 3, 1).contiguous() if i in ins else x
                 for i, x in enumerate(spec.example_inputs()))
    converted = litert_torch.convert(wrapped.eval(), args)
    with atomic_file(path) as tmp:
        converted.export(str(tmp))
    layouts = [*(spec.inputs[i] for i in ins), *(spec.outputs[i] for i in outs)]
    return {"io_layout": {t.name: "NHWC" for t in layouts},
            "details": {"signature": "serving_default",
                        "inputs": [f"args_{i}" for i in range(len(spec.inputs))],
                        "outputs": [f"output_{i}" for i in range(len(spec.outputs))]}}
