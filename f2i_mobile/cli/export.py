"""`f2i-mobile export`: the model's graphs lowered per backend, with a manifest."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="lower the graphs to ExecuTorch, TFLite, Core ML and ONNX",
        description="Fuse LoRA, split into conditioner/encoder/unet/decoder and lower each to "
                    "OUT/<backend>/<graph>.<ext>, with OUT/manifest.json. Vendor NPU backends "
                    "(qnn, mediatek, samsung) need their SDK.")
    p.add_argument("--model", default=None, help="checkpoint folder or bundled name (default: mobile)")
    p.add_argument("--out", required=True, help="output folder (added to if it holds an "
                   "export of the same model, weights and tile; refused if another)")
    p.add_argument("--backends", default=None,
                   help="comma-separated: executorch,tflite,coreml,onnx (default: all four), "
                        "qnn, mediatek, samsung")
    p.add_argument("--tile", type=int, default=None, help="LR tile edge (default: the model's)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    p.add_argument("--quant", default=None, metavar="SCHEME[,SCHEME]",
                   help="post-training quantization instead of a float export: w8a8, w8a16, "
                        "w4a16, palette6, palette4 (per backend, see calibration/schemes.py; "
                        "qnn: w8a8, w8a16, with the QNN SDK); several schemes share one float "
                        "lowering per backend; ONNX and TFLite start from the fp32 graphs OUT holds")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="with --quant: a folder of photos to calibrate on, or a calibration set "
                        "captured before (default: the bundled held-in images); kept in "
                        "OUT/calibration for f2i-mobile quant-check")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.quant is not None:
        return run_quant(args)
    if args.calibration is not None:
        from f2i_mobile.core.errors import F2IError

        raise F2IError("--calibration applies to --quant exports only")
    from f2i_mobile.export.lowering import check_backends

    backends = check_backends(args.backends)  # vendor SDKs: before any work or heavy import
    from f2i_mobile.export.pipeline import export_model
    from f2i_mobile.models import load_model

    model = load_model(args.model)
    manifest, failures = export_model(model, args.out, backends, args.tile, args.precision,
                                      args.fail_fast)
    done = [a for a in manifest.artifacts if a.precision == args.precision
            and a.backend in {b.name for b in backends}]
    for a in sorted(done, key=lambda a: (a.backend, a.graph)):
        print(f"{a.backend:<11} {a.graph:<12} {a.bytes / 1e6:8.2f} MB  {a.path}")
    for f in failures:
        print(f"f2i-mobile: error: export failed: {f}", file=sys.stderr)
    print(f"manifest: {args.out}/manifest.json")
    return 1 if failures else 0


def run_quant(args) -> int:
    from f2i_mobile.export.lowering import check_backends

    check_backends(args.backends)  # a vendor SDK missing: one line before the quant stack loads
    from f2i_mobile.calibration.quantize import check_requests, quantize_backends
    from f2i_mobile.models import load_model

    requests = check_requests(args.backends, args.quant)  # before any work
    artifacts = quantize_backends(load_model(args.model), args.out, requests,
                                  calibration=args.calibration, tile=args.tile)
    for a in artifacts:
        print(f"{a.backend:<11} {a.graph:<12} {a.bytes / 1e6:8.2f} MB  {a.path}")
    print(f"manifest: {args.out}/manifest.json; check with f2i-mobile quant-check "
          f"--artifacts {args.out}")
    return 0
