"""`f2i-mobile quant-check`: the CI gate on quantized exports (quantized against float PSNR)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "quant-check", help="PSNR/SSIM of every quantized variant against float; exit 1 below "
                            "the threshold",
        description="Per graph and end to end over the held-out check tiles of an export: PSNR and "
                    "SSIM (Y channel) of the quantized output against float, and against HR next "
                    "to float's. Exit 0 when every variant's end-to-end PSNR meets its threshold, "
                    "1 naming the one that does not.")
    p.add_argument("--artifacts", required=True, help="export folder (with manifest.json and "
                                                       "calibration/)")
    p.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                   help="end-to-end PSNR every variant must reach (default: per scheme, w8a8 38, "
                        "w8a16 45, mixed 40)")
    p.add_argument("--model", default=None,
                   help="checkpoint folder, for Core ML variants only (measured in torch; "
                        "default: the bundled model)")
    p.add_argument("--tiles", type=int, default=None,
                   help="check on the first N tiles only (quicker; default: all)")
    p.add_argument("--on", choices=("check", "calibration"), default="check",
                   help="check: held-out photos the quantizers never saw (OUT/check, the "
                        "default); calibration: the tiles they were calibrated on")
    p.add_argument("--json", action="store_true", help="print JSON (for CI) instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    from f2i_mobile.calibration.report import quant_check
    from f2i_mobile.core.manifest import Manifest

    model = None
    if any(a.backend == "coreml" for a in Manifest.load(args.artifacts).artifacts):
        from f2i_mobile.models import load_model

        model = load_model(args.model)
    report = quant_check(args.artifacts, args.min_psnr, model, tiles=args.tiles, on=args.on)
    print(report.to_json() if args.json else report.table())
    return 0 if report.ok else 1
