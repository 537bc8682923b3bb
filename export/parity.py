"""Parity: every runnable artifact against the torch graph it came from.

Per graph, the artifact and torch run on the same inputs (`GraphSpec.example_inputs`: images
uniform in [0, 1], latents and tokens normal); reported as max abs error and PSNR, with the peak
taken as the torch output's range (1 for images). End to end, a real photo crop (scikit-image's
chelsea) goes through the four artifacts chained, against the four torch graphs chained. Core ML
cannot predict outside macOS: its saved spec is validated instead (names, shapes, op types) and
the record says prediction was not run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from f2i_mobile.graphs import GRAPHS, graph_specs
from f2i_mobile.manifest import Manifest
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.runners import RUNNABLE_BACKENDS, GraphRunner, open_runner
from f2i_mobile.runners.torch_runner import TorchRunner

GRAPH_MIN_PSNR = {"fp32": 60.0, "fp16": 35.0}
END_TO_END_MIN_PSNR = {"fp32": 50.0, "fp16": 30.0}


@dataclass
class Parity:
    backend: str
    precision: str
    graph: str  # a graph name, or "end_to_end"
    max_abs: float | None
    psnr: float | None
    ok: bool
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def psnr(out: np.ndarray, ref: np.ndarray, peak: float | None = None) -> float:
    peak = peak if peak is not None else float(ref.max() - ref.min()) or 1.0
    mse = float(np.mean((out.astype(np.float64) - ref) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def photo_tile(tile: int) -> np.ndarray:
    """A 1 x 3 x tile x tile crop of a real photo in [0, 1]."""
    import cv2
    import skimage.data

    image = skimage.data.chelsea().astype(np.float32) / 255.0
    side = min(image.shape[:2])
    crop = cv2.resize(image[:side, :side], (tile, tile), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None])


def run_chain(runner: GraphRunner, lr: np.ndarray) -> np.ndarray:
    tokens = runner.run("conditioner", {"lr": lr})["tokens"]
    latent = runner.run("encoder", {"lr": lr})["latent"]
    latent_sr = runner.run("unet", {"latent": latent, "tokens": tokens})["latent_sr"]
    return runner.run("decoder", {"latent_sr": latent_sr})["sr"]


def check_backend(model: F2IDiffSR, folder: Path, backend: str, precision: str) -> list[Parity]:
    manifest = Manifest.load(folder)
    specs = graph_specs(model.config, manifest.tile, manifest.batch)
    reference = TorchRunner(model)
    results = []
    with open_runner(backend, folder, precision) as runner:
        for graph in GRAPHS:
            spec = specs[graph]
            inputs = {t.name: x.numpy() for t, x in zip(spec.inputs, spec.example_inputs())}
            want, got = reference.run(graph, inputs), runner.run(graph, inputs)
            name = spec.outputs[0].name
            peak = 1.0 if name == "sr" else None
            value = psnr(got[name], want[name], peak)
            results.append(Parity(backend, precision, graph,
                                  float(np.abs(got[name] - want[name]).max()), value,
                                  value >= GRAPH_MIN_PSNR[precision]))
        lr = np.repeat(photo_tile(manifest.tile), manifest.batch, axis=0)
        want, got = run_chain(reference, lr), run_chain(runner, lr)
        value = psnr(got, want, 1.0)
        results.append(Parity(backend, precision, "end_to_end", float(np.abs(got - want).max()),
                              value, value >= END_TO_END_MIN_PSNR[precision],
                              "chelsea crop, four graphs chained"))
    return results


def check_coreml(folder: Path, precision: str) -> list[Parity]:
    import coremltools as ct

    manifest = Manifest.load(folder)
    results = []
    for graph in GRAPHS:
        spec = ct.utils.load_spec(str(folder / manifest.artifact("coreml", graph, precision).path))
        info = manifest.graphs[graph]
        problems = []
        for side, want in (("input", info.inputs), ("output", info.outputs)):
            have = {f.name: f for f in getattr(spec.description, side)}
            for t in want:
                if t.name not in have:
                    problems.append(f"{side} {t.name} missing")
                elif side == "input" and \
                        list(have[t.name].type.multiArrayType.shape) != list(t.shape):
                    problems.append(f"input {t.name} shape {list(have[t.name].type.multiArrayType.shape)}")
        ops = sorted({op.type for f in spec.mlProgram.functions.values()
                      for block in f.block_specializations.values() for op in block.operations})
        note = ("spec validated (prediction not run: Core ML predicts only on macOS); "
                f"{len(ops)} op types: {', '.join(ops[:12])}{' ...' if len(ops) > 12 else ''}")
        results.append(Parity("coreml", precision, graph, None, None, not problems,
                              "; ".join(problems) or note))
    return results


def check_all(model: F2IDiffSR, folder: str | Path) -> list[Parity]:
    folder = Path(folder)
    manifest = Manifest.load(folder)
    results = []
    for backend, precision in manifest.variants():
        if backend in RUNNABLE_BACKENDS:
            results += check_backend(model, folder, backend, precision)
        elif backend == "coreml":
            results += check_coreml(folder, precision)
        else:
            results += [Parity(backend, precision, g, None, None, True,
                               f"not run: {backend} artifacts run on the phone's NPU only")
                        for g in GRAPHS]
    return results


def format_table(results: list[Parity]) -> str:
    lines = [f"{'backend':<11} {'prec':<5} {'graph':<12} {'max abs':>10} {'PSNR dB':>8}  ok"]
    for r in results:
        err = "-" if r.max_abs is None else f"{r.max_abs:.2e}"
        db = "-" if r.psnr is None else ("inf" if math.isinf(r.psnr) else f"{r.psnr:.1f}")
        lines.append(f"{r.backend:<11} {r.precision:<5} {r.graph:<12} {err:>10} {db:>8}  "
                     f"{'yes' if r.ok else 'NO'}{'  ' + r.note if r.note else ''}")
    return "\n".join(lines)
