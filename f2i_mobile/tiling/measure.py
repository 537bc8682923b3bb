"""What the planner needs to know about a model, measured once per model: each graph's effective
receptive field, and each graph's FLOPs, weight bytes and peak working memory per tile.

Receptive field, numerically: a tile's output is wrong near its edge because the network sees zero
padding there instead of the neighbouring pixels. So run the graph (or the chained encoder, U-Net
and decoder) on a probe image and on the probe's left part cropped at a column `c`, and find how
far left of `c` the two outputs differ by more than the tolerance (columns only: the graphs are
square convolution stacks). GroupNorm statistics are the probe's (the statistics pass on it) in
both runs, as the tiler gives every tile the photo's; with per-tile statistics every pixel
depends on every other one and no finite overlap is seamless.

Results are cached in memory and in `~/.cache/f2i-mobile/` by config hash and a weight digest.
"""

from __future__ import annotations

import hashlib
import math
import weakref

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from f2i_mobile.core.contract import GRAPHS, PHOTO_GRAPHS
from f2i_mobile.core.memory import peak_rise, resident_bytes, return_freed_memory
from f2i_mobile.core.planner import MAX_BATCH, GraphCost, ReceptiveField
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.graphs import count_flops, example_inputs, graph_specs
from f2i_mobile.runners.base import run_chain
from f2i_mobile.runners.torch_runner import TorchRunner
from f2i_mobile.tiling.cache import cached, cached_graph_costs

TOLERANCE = 1e-3  # max abs error on [0, 1] output pixels that counts as seamless


def model_key(model: F2IDiffSR) -> str:
    digest = hashlib.sha256(model.config.hash().encode())
    with torch.no_grad():
        for name, p in sorted(model.state_dict().items()):
            if p.is_floating_point():
                digest.update(name.encode())
                digest.update(np.float64(p.double().abs().sum()).tobytes())
    return digest.hexdigest()[:16]


def probe_image(size: int) -> np.ndarray:
    """A natural photo (scikit-image's astronaut) resized to size x size, float32 in [0, 1]."""
    from skimage import data

    from f2i_mobile.core.imaging import resize

    return resize(data.astronaut().astype(np.float32) / 255.0, size, size)


def _reach(full: np.ndarray, cropped: np.ndarray, tol: float) -> int:
    """How many columns left of the crop edge `cropped` differs from `full` by more than tol."""
    cut = cropped.shape[-1]
    bad = np.nonzero((np.abs(full[..., :cut] - cropped) > tol).any(axis=tuple(
        range(full.ndim - 1))))[0]
    return 0 if bad.size == 0 else cut - int(bad.min())


@torch.no_grad()
def receptive_fields(model: F2IDiffSR, tol: float = TOLERANCE, size: int | None = None,
                     steps: int = 1) -> ReceptiveField:
    """LR px each graph (and `chain`, the three graphs together) needs on each side of an output
    pixel for its value to be within `tol` (chain: of [0, 1] pixels; single graphs: of
    `tol` x their output's standard deviation).

    Columns only: the graphs are square convolution stacks, so rows reach as far; measuring one
    axis halves the cost (tens of seconds for the mobile preset)."""
    cfg = model.config
    m = cfg.pixel_multiple // math.gcd(cfg.pixel_multiple, cfg.scale)
    size = size or max(2 * cfg.tile, 8 * m)
    size = -(-size // (2 * m)) * 2 * m
    runner = TorchRunner.of_model(model, steps=steps)
    image = probe_image(size).transpose(2, 0, 1)[None]
    # The photo's tokens and statistics, from the probe resized to one tile, as the tiler does.
    photo = run_chain(runner, {"lr": probe_image(cfg.tile).transpose(2, 0, 1)[None]},
                      PHOTO_GRAPHS)
    shared = {n: v for n, v in photo.items() if n != "lr"}
    full = run_chain(runner, {"lr": image, **shared})
    c = size // 2  # the cut, in LR columns
    graphs = {}
    for g in GRAPHS:
        if g in PHOTO_GRAPHS:
            continue
        spec = runner.specs[g]
        # The spatial inputs (the contract's NCHW tensors, whatever the method names) cut at
        # the same place in their own columns; the rest is per photo.
        inputs = {t.name: np.ascontiguousarray(full[t.name][..., :_cut(full[t.name], c, size)])
                  if t.layout == "NCHW" else full[t.name] for t in spec.inputs}
        outs = runner.run(g, inputs)
        reach = 0.0
        for name, out in outs.items():  # a graph reaches as far as its farthest output
            tol_g = tol if name == "sr" else tol * float(full[name].std())
            lr_per_column = c / out.shape[-1]  # LR px per output column of this output
            reach = max(reach, _reach(full[name], out, tol_g) * lr_per_column)
        graphs[g] = math.ceil(reach)
    cropped = run_chain(runner, {"lr": np.ascontiguousarray(image[..., :c]), **shared})
    chain = math.ceil(_reach(full["sr"], cropped["sr"], tol) / cfg.scale)
    return ReceptiveField(chain=chain, graphs=graphs, probe=size, saturated=chain >= c)


def _cut(x: np.ndarray, lr_cut: int, lr_size: int) -> int:
    """The LR column `lr_cut` of an `lr_size`-wide probe in the columns of tensor `x`."""
    return lr_cut * x.shape[-1] // lr_size


class _PeakBytes(TorchDispatchMode):
    """Tracks the bytes of tensors created inside the mode that are still alive: the peak is a
    graph's working memory (weights and inputs excluded)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.seen: set[int] = set()

    def _free(self, key: int, n: int) -> None:
        self.live -= n
        self.seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key in self.seen or storage.nbytes() == 0:
                    continue
                self.seen.add(key)
                self.live += storage.nbytes()
                weakref.finalize(storage, self._free, key, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out


@torch.no_grad()
def graph_costs(model: F2IDiffSR, tile: int | None = None) -> dict[str, GraphCost]:
    """Per graph and per tile: GFLOPs, weight bytes, peak working memory, output bytes, and the
    resident memory its first run leaves behind."""
    tile = tile or model.config.tile
    specs = graph_specs(model.config, tile)
    flops = count_flops(model, tile)
    runner = TorchRunner.of_model(model, tile)
    return_freed_memory()
    costs = {}
    for g in GRAPHS:
        module = runner.modules[g]
        example = example_inputs(specs[g])
        before = resident_bytes()
        # Per tile at batch 1 and at the largest batch: workspaces grow faster than the batch.
        working = max(_working_bytes(module, [a.expand(b, *a.shape[1:]).contiguous()
                                              for a in example]) / b for b in (1, MAX_BATCH))
        costs[g] = GraphCost(
            gflops=flops[g] / 1e9,
            weight_bytes=sum(p.numel() * p.element_size() for p in module.parameters()),
            activation_bytes=int(working),
            io_bytes=sum(int(np.prod(t.shape)) * 4 for t in specs[g].outputs),
            retained_bytes=max(0, resident_bytes() - before))
    return costs


def _working_bytes(module: torch.nn.Module, args: list[torch.Tensor]) -> int:
    """Peak working memory of one call. Resident memory sees what tensors do not (oneDNN
    workspaces, allocator slack: 20-25 % more than the tensors on the bundled decoder); it
    misses what the allocator serves from pages this process already holds, which a later
    process may not hold. So: the larger of the two, on a module warmed by the first call;
    counted tensors alone where resident memory cannot be read."""
    with _PeakBytes() as counter:
        module(*args)
    return max(peak_rise(lambda: module(*args)) or 0, counter.peak)


def cached_receptive_fields(model: F2IDiffSR, steps: int = 1) -> ReceptiveField:
    """`receptive_fields`, measured once per model (and per U-Net call count: each call
    reaches further)."""
    key = model_key(model) + (f"-steps{steps}" if steps > 1 else "")
    return cached("rf-v3", key, lambda: receptive_fields(model, steps=steps),
                  lambda rf: vars(rf), lambda d: ReceptiveField(**d))


def cached_costs(model: F2IDiffSR, tile: int) -> dict[str, GraphCost]:
    return cached_graph_costs(f"costs-v5-t{tile}", model_key(model),
                              lambda: graph_costs(model, tile))
