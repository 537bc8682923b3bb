"""Graphs as torch modules behind `GraphRunner`: the float reference (the model's own stages,
LoRA merged) and any replacement of them (quantized or compressed graphs measured in torch).

The graphs run where the model's weights are. With `precision="bf16"` (what `upscale --device
cuda` picks) they run as a GPU wants them: bf16 weights and activations (autocast keeps
reductions and softmax in fp32), channels_last convolutions, and attention through
`scaled_dot_product_attention` (flash attention) rather than the matmul-softmax-matmul that
export needs (`models.graphs.graph_modules`' `attention`). Each graph call still takes and returns numpy
float32 arrays: the tiler blends on the host.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from f2i_mobile.core.contract import PHOTO_GRAPHS, GraphSpec
from f2i_mobile.core.errors import F2IError
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.graphs import graph_modules, graph_specs
from f2i_mobile.runners.base import GraphRunner

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def check_device(device: str) -> torch.device:
    """The torch device named `device`, or one line saying why it cannot run here."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise F2IError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise F2IError(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}"
                       f"{', a CPU-only build' if torch.version.cuda is None else ''})")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise F2IError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                       f"GPU(s), numbered from 0")
    if dev.type not in ("cpu", "cuda"):
        raise F2IError(f"--device {device}: only cpu and cuda run the torch graphs")
    return dev


class TorchRunner(GraphRunner):
    backend = "torch"

    def __init__(self, modules: dict[str, nn.Module], specs: dict[str, GraphSpec],
                 precision: str = "fp32", batch: int | None = None):
        self.modules, self.specs, self.precision = modules, specs, precision
        self.batch = batch  # the tile graphs' one batch (compiled graphs: one shape each)
        first = next((p for m in modules.values() for p in m.parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")

    @classmethod
    def of_model(cls, model: F2IDiffSR, tile: int | None = None, steps: int = 1,
                 precision: str = "fp32", compile: int = 0) -> TorchRunner:
        """The model's graphs, where the model's weights are; `steps` above 1 samples the U-Net
        in that many calls. `precision="bf16"` runs them as the module doc says (on a CPU too,
        where it is slow: tests); on a GPU attention is SDPA in fp32 too;
        `compile=B` wraps each graph in `torch.compile` for tiles B at a time (the tiler pads the
        last batch up to B, so each graph compiles once; worth it over many photos)."""
        if precision not in DTYPES:
            raise F2IError(f"the torch model runs in {' or '.join(DTYPES)}, not {precision!r}")
        on_gpu = next(model.parameters()).device.type == "cuda"
        modules = graph_modules(model, steps,
                                attention="sdpa" if on_gpu or precision == "bf16" else "explicit")
        if precision == "bf16":  # how a GPU wants them (a CPU runs this too, slowly: tests)
            modules = {g: m.to(dtype=DTYPES[precision], memory_format=torch.channels_last)
                       for g, m in modules.items()}
        if compile:
            modules = {g: torch.compile(m, dynamic=False) for g, m in modules.items()}
        return cls(modules, graph_specs(model.config, tile, steps=steps), precision,
                   batch=compile or None)

    def batch_size(self, graph: str) -> int | None:
        return None if graph in PHOTO_GRAPHS else self.batch

    def _autocast(self):
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    @torch.no_grad()
    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.specs[graph]
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(
            self.device, non_blocking=True) for n in spec.input_names]
        with self._autocast():
            out = self.modules[graph](*args)
        outs = out if isinstance(out, tuple) else (out,)
        return {n: o.float().cpu().numpy() for n, o in zip(spec.output_names, outs)}
