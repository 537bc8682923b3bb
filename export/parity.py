"""Parity: every float artifact against the torch graph it came from.

Per graph, the artifact and torch run on the same inputs (`GraphSpec.examples`: images uniform
in [0, 1], latents and tokens normal); end to end, a real photo crop (scikit-image's chelsea)
goes through the artifacts chained, against the torch graphs chained. Scores and the report's
shape are the fidelity module's, as for `f2i-mobile quant-check`.

Not everything in an export folder is parity's: quantized variants are quant-check's (listed as
such), Core ML cannot predict outside macOS (its saved spec is validated instead: names, shapes,
op types), and vendor NPU artifacts run on the phone only; those are skipped with the reason,
never reported as passed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from f2i_mobile.core.contract import GRAPHS, RESULT, SOURCE
from f2i_mobile.core.fidelity import (
    END_TO_END,
    Check,
    FidelityReport,
    Status,
    image_scores,
    output_scores,
    skipped,
)
from f2i_mobile.core.imaging import resize
from f2i_mobile.core.manifest import Manifest
from f2i_mobile.core.samples import bundled_images
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.graphs import graph_modules
from f2i_mobile.runners import GraphRunner, open_runner, run_chain, why_not_runnable
from f2i_mobile.runners.torch_runner import TorchRunner

GRAPH_MIN_PSNR = {"fp32": 60.0, "fp16": 35.0}
END_TO_END_MIN_PSNR = {"fp32": 50.0, "fp16": 30.0}


def photo_tile(tile: int) -> np.ndarray:
    """A 1 x 3 x tile x tile crop of a real photo in [0, 1]."""
    image = bundled_images(("chelsea",))[0].pixels
    side = min(image.shape[:2])
    return np.ascontiguousarray(resize(image[:side, :side], tile, tile).transpose(2, 0, 1)[None])


def check_backend(reference: GraphRunner, runner: GraphRunner, manifest: Manifest) -> list[Check]:
    """Each graph on example inputs, then the chain on a photo tile, against `reference`."""
    backend, precision = runner.backend, runner.precision
    sizes = {a.graph: a.bytes for a in manifest.artifacts
             if (a.backend, a.precision) == (backend, precision)}
    checks = []
    for graph in GRAPHS:
        inputs = manifest.graphs[graph].examples()
        want, got = reference.run(graph, inputs), runner.run(graph, inputs)
        # A graph with several outputs (statistics) is as good as its worst one.
        worst = min(((*output_scores(n, got[n], want[n], 0), float(np.abs(got[n] - want[n]).max()))
                     for n in want), key=lambda score: score[0])
        checks.append(Check(backend, precision, graph, *worst, min_psnr=GRAPH_MIN_PSNR[precision],
                            bytes=sizes.get(graph)).judge())
    lr = np.repeat(photo_tile(manifest.tile), manifest.batch, axis=0)
    want = run_chain(reference, {SOURCE: lr})[RESULT]
    got = run_chain(runner, {SOURCE: lr})[RESULT]
    psnr, ssim = image_scores(got, want, 0)
    checks.append(Check(backend, precision, END_TO_END, psnr, ssim,
                        float(np.abs(got - want).max()),
                        min_psnr=END_TO_END_MIN_PSNR[precision], bytes=sum(sizes.values()),
                        note="chelsea crop through the graphs chained").judge())
    return checks


def check_coreml(folder: Path, manifest: Manifest, precision: str) -> list[Check]:
    """The saved specs against the manifest: input and output names and shapes, and the op
    types, since prediction needs macOS."""
    import coremltools as ct

    checks = []
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
                    problems.append(f"input {t.name} shape "
                                    f"{list(have[t.name].type.multiArrayType.shape)}")
        ops = {op.type for f in spec.mlProgram.functions.values()
               for block in f.block_specializations.values() for op in block.operations}
        checks.append(Check("coreml", precision, graph,
                            status=Status.FAIL if problems else Status.SKIP,
                            note="; ".join(problems) or
                            f"spec validated ({len(ops)} op types); prediction not run: Core "
                            "ML predicts only on macOS"))
    return checks


def check_all(model: F2IDiffSR, folder: str | Path) -> FidelityReport:
    folder = Path(folder)
    manifest = Manifest.load(folder)
    reference = TorchRunner(graph_modules(model), manifest.graphs)
    report = FidelityReport("parity", [], context={
        "artifacts": str(folder), "model": manifest.model.name,
        "reference": "the torch graphs of the model, LoRA merged"})
    for backend, precision in manifest.variants():
        if precision not in GRAPH_MIN_PSNR:
            report.checks.append(skipped(backend, precision, "all",
                                         "quantized: checked by f2i-mobile quant-check"))
        elif backend == "coreml":
            report.checks += check_coreml(folder, manifest, precision)
        elif (why := why_not_runnable(backend)) is not None:
            report.checks.append(skipped(backend, precision, "all", why))
        else:
            with open_runner(backend, folder, precision) as runner:
                report.checks += check_backend(reference, runner, manifest)
    return report
