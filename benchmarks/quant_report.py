"""Quantization report on the default model: end-to-end PSNR against float per backend and
scheme, the mixed-precision mode to 40 dB, and what each scheme costs in artifact size.

    python benchmarks/quant_report.py [--model DIR] [--out OUT] [--tiles 8] [--check-tiles 2]
        [--sensitivity-graphs unet,decoder] [--skip executorch-w8a8-nncf,...] [--json FILE]

Targets (issue 5): w8a8 >= 38 dB and w8a16 >= 45 dB end to end against float on ExecuTorch and
TFLite; mixed precision reaches 40 dB with the fewest float layers. Uses the bundled checkpoint
when there is one, else the untrained seed-0 mobile model (said in the output). Every figure is
measured in this run, on the calibration tiles (the default held-in scikit-image photos).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from calibration.quantize import QuantRequest, quantize_model
from calibration.report import format_report, quant_check
from calibration.sensitivity import layer_sensitivity, mixed_precision
from f2i_mobile.pipeline import load_model

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default="out/quant_report")
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--sensitivity-tiles", type=int, default=2)
    parser.add_argument("--target", type=float, default=40.0)
    parser.add_argument("--skip", default="", help="comma-separated runs to leave out, as "
                        "backend-precision (executorch-w8a8-nncf, coreml-palette4, ...), mixed or "
                        "quantizers")
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
        request = QuantRequest(backend, scheme, quantizer)
        line = quant_check(out, model=model, variants=[(backend, request.precision)],
                           tiles=args.check_tiles)
        v = line["variants"][0]
        print(f"{backend} {request.precision}: end-to-end {v['end_to_end']['psnr']:.2f} dB "
              f"against float, {v['bytes'] / 1e6:.2f} MB, quantized in "
              f"{timings[f'{backend} {scheme} {quantizer}']:.0f} s", flush=True)
    mixed = None
    if "mixed" not in skip:
        from calibration.capture import load_calibration

        calib = load_calibration(out / "calibration")
        start = time.perf_counter()
        sens = layer_sensitivity(model, calib, tiles=args.sensitivity_tiles,
                                 graphs=tuple(args.sensitivity_graphs.split(",")))
        mixed = mixed_precision(model, calib, args.target, sens, tiles=args.sensitivity_tiles)
        print(f"most sensitive layers: " + ", ".join(f"{s.graph}:{s.layer} {s.psnr:.1f} dB"
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
        from calibration.capture import load_calibration
        from calibration.sensitivity import Evaluator

        calib = load_calibration(out / "calibration")
        for quantizer in ("pt2e", "nncf"):
            evaluator = Evaluator(model, calib, args.tiles, quantizer)
            psnr = evaluator.psnr(evaluator.quantized(lambda graph, layer: True))
            print(f"executorch w8a8 {quantizer} (converted torch graphs): end-to-end "
                  f"{psnr:.2f} dB against float", flush=True)
    report = quant_check(out, model=model, tiles=args.check_tiles)
    print(format_report(report))
    float_mb = sum(p.numel() for p in model.parameters()) * 4 / 1e6
    print(f"float32 weights: {float_mb:.1f} MB (the size every scheme is compared with)")
    if args.json:
        Path(args.json).write_text(json.dumps({"report": report, "timings_s": timings,
                                               "mixed": mixed.to_dict() if mixed else None},
                                              indent=2, default=str))


if __name__ == "__main__":
    main()
