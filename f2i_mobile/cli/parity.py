"""`f2i-mobile parity`: every exported artifact against torch."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("parity", help="check exported artifacts against torch",
                       description="Run every runnable artifact (ExecuTorch, TFLite, ONNX) on the "
                                   "inputs torch gets and report max abs error and PSNR per graph "
                                   "and end to end; validate Core ML specs.")
    p.add_argument("--artifacts", required=True, help="an f2i-mobile export folder")
    p.add_argument("--model", default=None,
                   help="the checkpoint it was exported from: folder or bundled name "
                        "(default: mobile)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    from f2i_mobile.core.errors import F2IError
    from f2i_mobile.core.manifest import Manifest
    from f2i_mobile.export.parity import check_all
    from f2i_mobile.export.pipeline import model_record
    from f2i_mobile.models import load_model

    manifest = Manifest.load(args.artifacts)
    model = load_model(args.model)
    if not manifest.model.same_model(model_record(model)):
        raise F2IError(f"{args.artifacts} was exported from another model (config "
                       f"{manifest.model.config_hash}, weights "
                       f"{manifest.model.weights_hash or '?'}); pass it with --model")
    report = check_all(model, args.artifacts)
    print(report.to_json() if args.json else report.table())
    return 0 if report.ok else 1
