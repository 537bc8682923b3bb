"""TFLite / LiteRT through litert-torch, with NHWC image and latent I/O for the delegates.

TFLite kernels and the GPU/NPU delegates are channel-last: NCHW I/O would leave a transpose at
each end of the graph on the phone. litert-torch's own `to_channel_last_io` wrapper moves them to
the host side (token sequences stay NLC); the runner transposes per the manifest's io_layout.

fp16 is TFLite's own: float16 weights (litert-torch's `full_fp16_recipe`, applied by
ai-edge-quantizer), which the GPU delegate computes in fp16 and the CPU dequantizes. A graph cast
with `.half()` does not convert: TFLite's builtin kernels take no fp16 activations.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.export.common import Lowered, nhwc_examples, nhwc_layout


def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # the export's tqdm bar is enough
    import litert_torch
    from litert_torch.generative.quantize import quant_recipes

    graph = litert_torch.to_channel_last_io(
        module,
        args=[i for i, t in enumerate(spec.inputs) if t.layout == "NCHW"],
        outputs=[i for i, t in enumerate(spec.outputs) if t.layout == "NCHW"]).eval()
    quant = quant_recipes.full_fp16_recipe() if precision == "fp16" else None
    litert_torch.convert(graph, nhwc_examples(spec), quant_config=quant).export(str(path))
    details = {"converter": "litert-torch", "signature": "serving_default"}
    if precision == "fp16":
        details["fp16"] = "float16 weights (full_fp16_recipe)"
    return Lowered(io_layout=nhwc_layout(spec), details=details)
