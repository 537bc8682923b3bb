"""`f2i-mobile export`: the model's four graphs lowered per backend, with a manifest."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="lower the four graphs to ExecuTorch, TFLite, Core ML and ONNX",
        description="Fuse LoRA, split into conditioner/encoder/unet/decoder and lower each to "
                    "OUT/<backend>/<graph>.<ext>, with OUT/manifest.json. Vendor NPU backends "
                    "(qnn, mediatek, samsung) need their SDK.")
    p.add_argument("--model", default=None, help="checkpoint folder (default: the bundled model)")
    p.add_argument("--out", required=True, help="output folder (added to if it holds an "
                   "export of the same model and tile)")
    p.add_argument("--backends", default=None,
                   help="comma-separated: executorch,tflite,coreml,onnx (default: all four), "
                        "qnn, mediatek, samsung")
    p.add_argument("--tile", type=int, default=None, help="LR tile edge (default: the model's)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    p.set_defaults(run=run)


def run(args) -> int:
    from export.pipeline import export_model, parse_backends
    from f2i_mobile.pipeline import load_model

    backends = parse_backends(args.backends)  # vendor SDKs are checked before any work
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
