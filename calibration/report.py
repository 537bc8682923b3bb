"""The quantization gate: how far each quantized variant of an export is from the float model.

For every quantized (backend, precision) in OUT/manifest.json, over the check tiles (held-out
photos that calibration never saw, OUT/check) or the calibration tiles (`on="calibration"`):
- per graph: the quantized graph on the float pipeline's inputs against the float outputs, so
  each graph's own error is seen without the others' (reported, not gated);
- end to end: the quantized graphs chained from the LR tile, SR output against float SR (the
  gate), and against the HR tile (next to float's, in the report's context).
Scores and the report's shape are the fidelity module's, as for `f2i-mobile parity`. A variant
that cannot run here (a vendor NPU's .pte) is skipped with the reason.

The gate is end-to-end PSNR against float: each variant must reach its scheme's target
(MIN_PSNR, or --min-psnr for all).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from f2i_mobile.calibration.capture import CalibrationSet, load_calibration
from f2i_mobile.calibration.quantize import CALIBRATION_DIR, CHECK_DIR, open_quantized
from f2i_mobile.core.contract import FLOAT_PRECISIONS, GRAPHS, RESULT, SOURCE
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.fidelity import (
    END_TO_END,
    Check,
    FidelityReport,
    image_scores,
    output_scores,
    skipped,
)
from f2i_mobile.core.manifest import Manifest
from f2i_mobile.runners import GraphRunner, run_chain, why_not_runnable

# The end-to-end targets for w8a8, w8a16 and the mixed-precision mode; weight-only schemes keep
# float activations and are held to the w8a8 target at the least.
MIN_PSNR = {"w8a8": 38.0, "w8a8-nncf": 38.0, "w8a16": 45.0, "mixed": 40.0, "w4a16": 38.0,
            "palette6": 38.0, "palette4": 30.0}


def graph_checks(runner: GraphRunner, calib: CalibrationSet, backend: str, precision: str,
                 sizes: dict[str, int]) -> list[Check]:
    """Each graph on the float pipeline's inputs, against the float outputs."""
    checks = []
    shave = calib.index["scale"]
    for graph in GRAPHS:
        outs = [runner.run(graph, feed) for feed in calib.graph_inputs(graph)]
        name = calib.index["graphs"][graph]["outputs"][0]
        quant = np.concatenate([o[name] for o in outs])
        psnr, ssim = output_scores(name, quant, calib.tensors[name], shave)
        checks.append(Check(backend, precision, graph, psnr, ssim,
                            float(np.abs(quant - calib.tensors[name]).max()),
                            bytes=sizes.get(graph)))
        runner.release(graph)
    return checks


def end_to_end_check(runner: GraphRunner, calib: CalibrationSet, backend: str, precision: str,
                     min_psnr: float, size: int | None) -> Check:
    """The chained graphs from each LR tile: SR against float's SR (gated) and against HR."""
    shave = calib.index["scale"]
    sr = np.concatenate([run_chain(runner, {SOURCE: calib.tensors[SOURCE][i:i + 1]})[RESULT]
                         for i in range(len(calib))])
    psnr, ssim = image_scores(sr, calib.tensors[RESULT], shave)
    return Check(backend, precision, END_TO_END, psnr, ssim,
                 float(np.abs(sr - calib.tensors[RESULT]).max()),
                 psnr_hr=image_scores(sr, calib.hr(), shave)[0], min_psnr=min_psnr,
                 bytes=size).judge()


def quant_check(out, min_psnr: float | None = None, model=None,
                variants: list[tuple[str, str]] | None = None,
                tiles: int | None = None, on: str = CHECK_DIR) -> FidelityReport:
    """The gate's figures for every quantized variant in OUT (or the given ones), over the
    check tiles (`on="calibration"`: the calibration tiles; the first `tiles` when given)."""
    manifest = Manifest.load(out)
    if on not in (CHECK_DIR, CALIBRATION_DIR):
        raise F2IError(f"--on must be {CHECK_DIR} or {CALIBRATION_DIR}, not {on!r}")
    calib = load_calibration(f"{out}/{on}")
    if tiles is not None:
        calib = calib.first(tiles)
    todo = variants or [v for v in manifest.variants() if v[1] not in FLOAT_PRECISIONS]
    if not todo:
        raise F2IError(f"{out}: no quantized artifacts (export with --quant SCHEME first)")
    shave = calib.index["scale"]
    float_hr = image_scores(calib.tensors[RESULT], calib.hr(), shave)
    report = FidelityReport("quant-check", [], context={
        "artifacts": str(out), "tiles": len(calib), "on": on, "images": calib.index["images"],
        "model": manifest.model.name,
        "float_vs_hr": {"psnr": float_hr[0], "ssim": float_hr[1]},
        "reference": "the float torch graphs on the same tiles; PSNR/SSIM on Y"})
    report.notes.append(f"float vs HR: PSNR {float_hr[0]:.2f} dB, SSIM {float_hr[1]:.4f} over "
                        f"{len(calib)} {on} tiles ({calib.index['images']})")
    for backend, precision in tqdm(todo, desc="checking quantized variants", unit="variant"):
        need = min_psnr if min_psnr is not None else MIN_PSNR.get(precision, 38.0)
        why = None if backend == "coreml" else why_not_runnable(backend)
        if why is not None:
            report.checks.append(skipped(backend, precision, END_TO_END, why))
            continue
        sizes = {a.graph: a.bytes for a in manifest.artifacts
                 if (a.backend, a.precision) == (backend, precision)}
        with open_quantized(out, backend, precision, model) as runner:
            report.checks += graph_checks(runner, calib, backend, precision, sizes)
            report.checks.append(end_to_end_check(runner, calib, backend, precision, need,
                                                  sum(sizes.values())))
        if backend == "coreml":
            report.checks[-1].note = ("measured in torch with the same compressed weights "
                                      "(float32 activations): Core ML predicts only on macOS")
    return report
