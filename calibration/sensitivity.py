"""Which layers int8 hurts, and the fewest to keep in float to reach a target PSNR.

Sensitivity: for every convolution and linear of every graph, that layer alone is quantized
(w8a8, XNNPACK PT2E: its int8 weights and the int8 activations at its input and output), the
other layers and graphs stay float, and the end-to-end SR output is compared with float's
(Y-channel PSNR over the calibration tiles). Each graph is prepared and calibrated once with
every layer annotated; "this layer alone" is that converted graph with the quantize/dequantize
pairs of every other layer taken out, so each layer sees exactly the ranges a full quantization
gives it, and no layer needs its own calibration run. This is the converted torch graph, not a
lowered .pte: PT2E's quantize/dequantize ops compute what XNNPACK computes up to rounding.

Mixed precision is greedy by sensitivity: keep the k most sensitive layers in float, quantize the
rest, and find the smallest k that meets the target by doubling k and then bisecting. Greedy is
not optimal (errors of layers do not add exactly) but needs only O(log n) evaluations. The chosen
layers are then quantized for real (quantize.py, `float_layers`) and measured by quant-check.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from f2i_mobile.calibration import quant_executorch
from f2i_mobile.calibration.capture import CalibrationSet
from f2i_mobile.calibration.quantize import torch_inputs
from f2i_mobile.core.contract import GRAPHS, RESULT, SOURCE
from f2i_mobile.core.fidelity import score
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.graphs import graph_modules, graph_specs
from f2i_mobile.runners import run_chain
from f2i_mobile.runners.torch_runner import TorchRunner


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

    def __init__(self, model: F2IDiffSR, calib: CalibrationSet, tiles: int,
                 quantizer: str = "pt2e"):
        self.quantizer = quantizer
        self.modules = graph_modules(model)
        self.specs = graph_specs(model.config, calib.index["tile"])
        self.calib = calib
        self.tiles = min(tiles, len(calib))
        self.inputs = {g: torch_inputs(calib, g) for g in GRAPHS}  # calibrate on every tile
        self.shave = calib.index["scale"]
        self._converted: dict[str, torch.fx.GraphModule] = {}

    def psnr(self, replaced: dict[str, torch.nn.Module]) -> float:
        runner = TorchRunner({**self.modules, **replaced}, self.specs)
        first = min((GRAPHS.index(g) for g in replaced), default=len(GRAPHS))
        # Graphs before the first replaced one are float: their captured outputs stand in.
        kept = [SOURCE, *(n for g in GRAPHS[:first] for n in self.specs[g].output_names)]
        scores = []
        for i in range(self.tiles):
            values = run_chain(runner, {n: self.calib.tensors[n][i:i + 1] for n in kept})
            scores.append(score(values[RESULT][0].transpose(1, 2, 0),
                                self.calib.tensors[RESULT][i].transpose(1, 2, 0), self.shave)[0])
        return float(np.mean(scores))

    def converted(self, graph: str) -> torch.fx.GraphModule:
        """The graph with every layer quantized, calibrated once (quantize/dequantize of the
        weights left unfolded, so that they can be taken out again)."""
        if graph not in self._converted:
            self._converted[graph] = quant_executorch.quantize(
                self.modules[graph], self.inputs[graph], self.quantizer, fold=False)
        return self._converted[graph]

    def quantized(self, keep, graphs=GRAPHS) -> dict[str, torch.nn.Module]:
        """The graphs with only the layers for which keep(graph, layer) is true quantized."""
        return {g: only_layers(self.converted(g), lambda layer, g=g: keep(g, layer))
                for g in graphs}


def pair_layers(dequant: torch.fx.Node) -> set[str]:
    """The layers a quantize/dequantize pair belongs to: those of the op that produced the
    tensor and of the ops that read it (TOP_LEVEL for graph inputs and the root's ops)."""
    source = dequant.args[0].args[0]
    nodes = [*dequant.users, *([source] if isinstance(source, torch.fx.Node) else [])]
    return {quant_executorch.layer_of(n) for n in nodes}


def quantized_layers(converted: torch.fx.GraphModule) -> list[str]:
    """Every layer (module) that holds a quantized op of the converted graph: convolutions and
    linears with their int8 weights, and the blocks whose adds and muls read int8 tensors."""
    layers: set[str] = set()
    for node in converted.graph.nodes:
        if node.op == "call_function" and "dequantize" in str(node.target) \
                and isinstance(node.args[0], torch.fx.Node) \
                and "quantize" in str(node.args[0].target):
            layers |= pair_layers(node)
    return sorted(layers)


def only_layers(converted: torch.fx.GraphModule, keep) -> torch.fx.GraphModule:
    """A copy of a converted graph with the quantize/dequantize pairs of the layers for which
    keep(layer) is false taken out (their tensors flow in float)."""
    graph_module = copy.deepcopy(converted)
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or "dequantize" not in str(node.target):
            continue
        quant = node.args[0]
        if not isinstance(quant, torch.fx.Node) or "quantize" not in str(quant.target):
            continue
        source = quant.args[0]
        if not any(keep(layer) for layer in pair_layers(node)):
            node.replace_all_uses_with(source)
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return graph_module


def layer_sensitivity(model: F2IDiffSR, calib: CalibrationSet, tiles: int = 4,
                      graphs: tuple[str, ...] = GRAPHS) -> list[LayerSensitivity]:
    """Every layer's end-to-end PSNR when it alone is quantized, most sensitive first."""
    evaluator = Evaluator(model, calib, tiles)
    layers = [(g, name) for g in graphs for name in quantized_layers(evaluator.converted(g))]
    result = []
    for graph, layer in tqdm(layers, desc="per-layer sensitivity", unit="layer"):
        replaced = {graph: only_layers(evaluator.converted(graph), lambda x: x == layer)}
        result.append(LayerSensitivity(graph, layer, evaluator.psnr(replaced)))
    return sorted(result, key=lambda s: s.psnr)


def mixed_precision(model: F2IDiffSR, calib: CalibrationSet, target_psnr: float,
                    sensitivity: list[LayerSensitivity], tiles: int = 4) -> MixedPrecision:
    """The fewest most-sensitive layers to keep in float for `target_psnr` end to end, over the
    graphs the sensitivity ranks (the others stay float)."""
    evaluator = Evaluator(model, calib, tiles)
    graphs = tuple(g for g in GRAPHS if any(s.graph == g for s in sensitivity))
    trials: list[tuple[int, float]] = []
    cache: dict[int, float] = {}

    def keep(k: int) -> dict[str, list[str]]:
        kept: dict[str, list[str]] = {}
        for s in sensitivity[:k]:
            kept.setdefault(s.graph, []).append(s.layer)
        return kept

    def psnr(k: int) -> float:
        if k not in cache:
            kept = keep(k)
            cache[k] = evaluator.psnr(evaluator.quantized(
                lambda graph, layer: layer not in kept.get(graph, ()), graphs))
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
