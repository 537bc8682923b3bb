"""Quantization report on the default model: end-to-end PSNR against float per backend and
scheme, the mixed-precision mode to 40 dB, and what each scheme costs in artifact size.

    python benchmarks/quant_report.py [--model DIR] [--out OUT] [--tiles 8] [--check-tiles 2]
        [--sensitivity-graphs unet,decoder] [--skip executorch-w8a8-nncf,...] [--json FILE]

Targets: w8a8 >= 38 dB and w8a16 >= 45 dB end to end against float; mixed precision reaches
40 dB with the fewest float layers. Every figure is measured in this run: the gate's on the check
tiles (held-out scikit-image photos the quantizers never saw), and the same on the first
calibration tiles (held-in photos) to compare with runs that had no check set. Writes
benchmarks/results/quant.json.

ExecuTorch on Qualcomm's HTP (executorch-qnn w8a8, w8a16) is simulated in torch: its .pte needs
the QNN SDK, but the converted PT2E graphs (calibration/quant_qnn.py) are what the QNN
partitioner lowers, so their PSNR against float is the scheme's fidelity up to the HTP's
rounding. Those rows have no artifact (no size) and no SSIM or HR figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from results import write_result

from f2i_mobile.calibration import quant_qnn
from f2i_mobile.calibration.capture import CalibrationSet, load_calibration
from f2i_mobile.calibration.quantize import QuantRequest, quantize_model, torch_inputs
from f2i_mobile.calibration.report import MIN_PSNR, quant_check
from f2i_mobile.calibration.sensitivity import Evaluator, layer_sensitivity, mixed_precision
from f2i_mobile.core.contract import GRAPHS
from f2i_mobile.core.fidelity import END_TO_END, Check, output_scores
from f2i_mobile.models import F2IDiffSR, load_model
from f2i_mobile.models.graphs import graph_modules

RUNS = [  # (backend, scheme, quantizer); --skip names them as backend-precision
    ("executorch", "w8a8", "pt2e"),
    ("tflite", "w8a8", "pt2e"),
    ("tflite", "w8a16", "pt2e"),
    ("executorch", "w8a8", "nncf"),
    ("onnx", "w8a8", "pt2e"),
    ("coreml", "w8a16", "pt2e"),
    ("coreml", "palette6", "pt2e"),
    ("coreml", "palette4", "pt2e"),
]
QNN = "executorch-qnn"  # the simulated rows' backend; --skip executorch-qnn-w8a16 etc.
QNN_SCHEMES = ("w8a8", "w8a16")
QNN_NOTE = "simulated in torch: converted PT2E graphs; the .pte needs the QNN SDK"


def graph_psnr(evaluator: Evaluator, graph: str, module: torch.nn.Module) -> float:
    """One graph's PSNR against float on the float pipeline's inputs, as quant-check measures
    it: Y-channel image PSNR for the SR output, PSNR over the float tensor's range otherwise (the
    first output of a graph with several, as quant-check)."""
    name = evaluator.calib.index["graphs"][graph]["outputs"][0]
    ref = evaluator.calib.tensors[name][:evaluator.tiles]
    with torch.no_grad():
        outs = [module(*args) for args in evaluator.inputs[graph][:evaluator.tiles]]
    out = np.concatenate([(o[0] if isinstance(o, tuple | list) else o).numpy() for o in outs])
    return output_scores(name, out, ref, evaluator.shave)[0]


def qnn_converted(model: F2IDiffSR, calib: CalibrationSet, scheme: str) -> dict[str, torch.nn.Module]:
    """Every graph quantized with QnnQuantizer at `scheme`, calibrated on every calibration
    tile, as converted torch graphs."""
    modules = graph_modules(model)
    return {g: quant_qnn.quantize(modules[g], torch_inputs(calib, g), scheme) for g in GRAPHS}


def qnn_checks(model: F2IDiffSR, converted: dict[str, torch.nn.Module], on: CalibrationSet,
               scheme: str, tiles: int) -> list[Check]:
    """Report rows for ExecuTorch/QNN at `scheme`: the converted graphs per graph and end to
    end against float on the first `tiles` tiles of `on` (the held-out check tiles, or the
    calibration tiles again)."""
    evaluator = Evaluator(model, on, tiles)
    rows = [Check(QNN, scheme, g, graph_psnr(evaluator, g, converted[g])) for g in GRAPHS]
    rows.append(Check(QNN, scheme, END_TO_END, evaluator.psnr(converted),
                      min_psnr=MIN_PSNR[scheme], note=QNN_NOTE).judge())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default="out/quant_report")
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--sensitivity-tiles", type=int, default=2)
    parser.add_argument("--target", type=float, default=40.0)
    parser.add_argument("--skip", default="", help="comma-separated runs to leave out, as "
                        "backend-precision (executorch-w8a8-nncf, coreml-palette4, "
                        "executorch-qnn-w8a16, ...), mixed or quantizers")
    parser.add_argument("--sensitivity-graphs", default="conditioner,encoder,unet,decoder",
                        help="graphs whose layers the sensitivity analysis ranks")
    parser.add_argument("--check-tiles", type=int, default=None,
                        help="measure on the first N calibration tiles (TFLite's int16 kernels "
                             "are reference code: slow on a CPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    model = load_model(args.model)
    out = Path(args.out)
    print(f"model: {model.config.name} ({model.metadata.get('origin', 'checkpoint')}), "
          f"{args.tiles} calibration tiles", flush=True)
    timings = {}
    calibration = None
    for backend, scheme, quantizer in RUNS:
        if f"{backend}-{QuantRequest(backend, scheme, quantizer).precision}" in skip:
            continue
        start = time.perf_counter()
        if (out / "calibration").is_dir():
            calibration = out / "calibration"
        quantize_model(model, out, QuantRequest(backend, scheme, quantizer),
                       calibration=calibration, tiles=args.tiles)
        timings[f"{backend} {scheme} {quantizer}"] = time.perf_counter() - start
        print(f"{backend} {QuantRequest(backend, scheme, quantizer).precision}: quantized in "
              f"{timings[f'{backend} {scheme} {quantizer}']:.0f} s", flush=True)
    mixed = None
    if "mixed" not in skip:
        calib = load_calibration(out / "calibration")
        start = time.perf_counter()
        sens = layer_sensitivity(model, calib, tiles=args.sensitivity_tiles,
                                 graphs=tuple(args.sensitivity_graphs.split(",")))
        mixed = mixed_precision(model, calib, args.target, sens, tiles=args.sensitivity_tiles)
        print("most sensitive layers: " + ", ".join(f"{s.graph}:{s.layer} {s.psnr:.1f} dB"
                                                    for s in sens[:5]), flush=True)
        print(f"mixed precision for {args.target} dB: {sum(map(len, mixed.float_layers.values()))}"
              f" float layers of {len(sens)}, trials {mixed.trials}", flush=True)
        quantize_model(model, out, QuantRequest("executorch", "w8a8",
                                                float_layers=mixed.float_layers),
                       calibration=out / "calibration")
        timings["mixed"] = time.perf_counter() - start
    if "quantizers" not in skip:
        # PT2E's histogram observers against nncf (min-max, SmoothQuant, bias correction), both
        # on the same XNNPACKQuantizer annotation, as converted torch graphs (no lowering).
        calib = load_calibration(out / "calibration")
        for quantizer in ("pt2e", "nncf"):
            evaluator = Evaluator(model, calib, args.tiles, quantizer)
            psnr = evaluator.psnr(evaluator.quantized(lambda graph, layer: True))
            print(f"executorch w8a8 {quantizer} (converted torch graphs): end-to-end "
                  f"{psnr:.2f} dB against float", flush=True)
    # The gate's set (held-out photos the quantizers never saw) and, to compare with runs that
    # had no such set, the first calibration tiles.
    reports = {on: quant_check(out, model=model, tiles=args.check_tiles, on=on)
               for on in ("check", "calibration")}
    qnn_runs = [s for s in QNN_SCHEMES if f"{QNN}-{s}" not in skip]
    calib = load_calibration(out / "calibration")
    for scheme in qnn_runs:
        start = time.perf_counter()
        converted = qnn_converted(model, calib, scheme)
        for on, report in reports.items():
            tiles = load_calibration(out / on)
            report.checks += qnn_checks(model, converted, tiles, scheme,
                                        args.check_tiles or len(tiles))
        timings[f"{QNN} {scheme}"] = time.perf_counter() - start
    for on, report in reports.items():
        print(f"\non the {on} tiles:\n" + report.table(), flush=True)
    float_mb = sum(p.numel() for p in model.parameters()) * 4 / 1e6
    print(f"float32 weights: {float_mb:.1f} MB (the size every scheme is compared with)")
    write_result("quant", {**{on: json.loads(r.to_json()) for on, r in reports.items()},
                           "timings_s": timings, "float32_mb": float_mb,
                           "mixed": mixed.to_dict() if mixed else None}, args.json)


if __name__ == "__main__":
    main()
