"""`f2i-mobile export`: lower the four graphs for phone runtimes into OUT, with a manifest;
`--parity` then checks every artifact against torch."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="lower the four graphs to ExecuTorch, TFLite, Core ML, "
                                      "ONNX (or a vendor NPU backend) with a manifest")
    p.add_argument("--model", default=None,
                   help="checkpoint folder (default: the bundled mobile model)")
    p.add_argument("--out", required=True, help="output folder (OUT/<backend>/<graph>.<ext>, "
                                                "OUT/manifest.json)")
    p.add_argument("--backends", default="executorch,tflite,coreml,onnx",
                   help="comma-separated: executorch, tflite, coreml, onnx, qnn, mediatek, "
                        "samsung (vendor backends need their SDK; default: %(default)s)")
    p.add_argument("--tile", type=int, default=None,
                   help="LR tile edge the graphs are exported for (default: the model's)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first graph that fails to lower")
    p.add_argument("--parity", action="store_true",
                   help="afterwards, run every artifact that has a runtime here against torch")
    p.set_defaults(run=run)


def run(args) -> int:
    from export.pipeline import export_and_check

    result, checks = export_and_check(args.model, args.out, args.backends, args.tile,
                                      args.precision, args.fail_fast, args.parity)
    print(result.summary())
    if checks is not None:
        from export.parity import format_checks

        print(format_checks(checks))
    failed = result.failures or (checks is not None and not all(c.ok for c in checks))
    return 1 if failed else 0
