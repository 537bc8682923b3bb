"""`f2i-mobile info`: a model's config, parameters and FLOPs per graph per tile."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="config, parameter counts and GFLOPs per graph per tile")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None,
                     help="checkpoint folder or bundled name (default: mobile)")
    src.add_argument("--preset", default=None,
                     help="a named config instead (full, eff, mobile, tiny, pocket); counted without "
                          "allocating weights")
    p.add_argument("--tile", type=int, default=None, help="LR tile edge (default: the config's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    from f2i_mobile.models.info import format_model_report, model_report

    report = model_report(model_path=args.model, preset_name=args.preset, tile=args.tile)
    print(json.dumps(report, indent=2) if args.json else format_model_report(report))
    return 0
