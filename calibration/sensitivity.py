"""Which layers int8 hurts, and the fewest to keep in float to reach a target PSNR.

Sensitivity: for every convolution and linear of every graph, that layer alone is quantized
(w8a8, XNNPACK PT2E: its int8 weights and the int8 activations at its input and output), the
other layers and graphs stay float, and the end-to-end SR output is compared with float's
(Y-channel PSNR over the calibration tiles). This is the converted torch graph, not a lowered
.pte: PT2E's quantize/dequantize ops compute what XNNPACK computes up to rounding, and it is
fast enough to run once per layer.

Mixed precision is greedy by sensitivity: keep the k most sensitive layers in float, quantize the
rest, and find the smallest k that meets the target by doubling k and then bisecting. Greedy is
not optimal (errors of layers do not add exactly) but needs only O(log n) full quantizations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from calibration import quant_executorch
from calibration.capture import CalibrationSet
from calibration.quantize import torch_inputs
from f2i_mobile.evaluate import score
from f2i_mobile.graphs import GRAPHS, graph_modules
from f2i_mobile.models import F2IDiffSR


@dataclass
class LayerSensitivity:
    graph: str
    layer: str
    psnr: float  # end-to-end SR against float, this layer alone quantized


@dataclass
class MixedPrecision:
    target_psnr: float
    psnr: float
    float_layers: dict[str, list[str]]
    quantized_layers: int
    trials: list[tuple[int, float]]  # (layers kept float, end-to-end PSNR) in the order tried

    def to_dict(self) -> dict:
        return asdict(self)


class Evaluator:
    """End-to-end PSNR against float of a pipeline whose graphs may be replaced."""

    def __init__(self, model: F2IDiffSR, calib: CalibrationSet, tiles: int):
        self.modules = graph_modules(model)
        self.calib = calib
        self.tiles = min(tiles, len(calib))
        self.inputs = {g: torch_inputs(calib, g)[:self.tiles] for g in GRAPHS}
        self.shave = calib.index["scale"]

    @torch.no_grad()
    def psnr(self, replaced: dict[str, torch.nn.Module]) -> float:
        scores = []
        for i in range(self.tiles):
            first = min((GRAPHS.index(g) for g in replaced), default=len(GRAPHS))
            # Graphs before the first replaced one are float: start from the captured values.
            values = {n: torch.from_numpy(self.calib.tensors[n][i:i + 1])
                      for n in ("lr", "tokens", "latent", "latent_sr")}
            for graph in GRAPHS[first:]:
                module = replaced.get(graph, self.modules[graph])
                names = self.calib.index["graphs"][graph]
                out = module(*(values[n] for n in names["inputs"]))
                values[names["outputs"][0]] = out
            sr = values.get("sr")
            sr = self.calib.tensors["sr"][i] if sr is None else sr[0].numpy()
            scores.append(score(sr.transpose(1, 2, 0),
                                self.calib.tensors["sr"][i].transpose(1, 2, 0), self.shave)[0])
        return float(np.mean(scores))

    def quantized(self, only: dict[str, set[str]] | None = None,
                  skip: dict[str, list[str]] | None = None,
                  graphs: tuple[str, ...] = GRAPHS) -> dict[str, torch.nn.Module]:
        return {g: quant_executorch.quantize(
                    self.modules[g], self.inputs[g],
                    only=None if only is None else only.get(g, set()),
                    skip=set((skip or {}).get(g, ())))
                for g in graphs}


def layer_sensitivity(model: F2IDiffSR, calib: CalibrationSet, tiles: int = 4,
                      graphs: tuple[str, ...] = GRAPHS) -> list[LayerSensitivity]:
    """Every layer's end-to-end PSNR when it alone is quantized, most sensitive first."""
    evaluator = Evaluator(model, calib, tiles)
    layers = [(g, name) for g in graphs
              for name in quant_executorch.quantizable_layers(evaluator.modules[g])]
    result = []
    for graph, layer in tqdm(layers, desc="per-layer sensitivity", unit="layer"):
        replaced = evaluator.quantized(only={graph: {layer}}, graphs=(graph,))
        result.append(LayerSensitivity(graph, layer, evaluator.psnr(replaced)))
    return sorted(result, key=lambda s: s.psnr)


def mixed_precision(model: F2IDiffSR, calib: CalibrationSet, target_psnr: float,
                    sensitivity: list[LayerSensitivity], tiles: int = 4) -> MixedPrecision:
    """The fewest most-sensitive layers to keep in float for `target_psnr` end to end."""
    evaluator = Evaluator(model, calib, tiles)
    trials: list[tuple[int, float]] = []
    cache: dict[int, float] = {}

    def keep(k: int) -> dict[str, list[str]]:
        kept: dict[str, list[str]] = {}
        for s in sensitivity[:k]:
            kept.setdefault(s.graph, []).append(s.layer)
        return kept

    def psnr(k: int) -> float:
        if k not in cache:
            cache[k] = evaluator.psnr(evaluator.quantized(skip=keep(k)))
            trials.append((k, cache[k]))
        return cache[k]

    n = len(sensitivity)
    low, high = 0, 1
    if psnr(0) < target_psnr:
        while high < n and psnr(high) < target_psnr:
            low, high = high, min(2 * high, n)
        while high - low > 1:  # psnr(low) < target <= psnr(high), or high == n
            mid = (low + high) // 2
            low, high = (low, mid) if psnr(mid) >= target_psnr else (mid, high)
        best = high
    else:
        best = 0
    return MixedPrecision(target_psnr, psnr(best), keep(best), n - best, trials)
