"""`f2i-mobile upscale INPUT -o OUTPUT`: super-resolve one photo, tile by tile."""

from __future__ import annotations

import sys
import warnings

from f2i_mobile.core.contract import DEFAULT_COLOR_FIX, RUNNABLE, TORCH


def add_parser(sub) -> None:
    p = sub.add_parser(
        "upscale", help="super-resolve a photo (PNG, JPEG or TIFF)",
        description="Super-resolve a photo tile by tile under a memory budget, on the torch "
                    "model or an export's graphs; the output is streamed to disk.")
    p.add_argument("input", help="PNG, JPEG or TIFF; 8 or 16 bit; gray, RGB, RGBA or palette")
    p.add_argument("-o", "--output", required=True,
                   help="output image (.png, .jpg or .tif); keeps the input's bit depth")
    p.add_argument("--model", default=None,
                   help="checkpoint folder (default: the bundled mobile model)")
    p.add_argument("--scale", type=float, default=None,
                   help="output size / input size (default: the model's scale, 4)")
    p.add_argument("--tile", type=int, default=None,
                   help="tile edge in LR px (default: the model's, 128 for mobile)")
    p.add_argument("--overlap", type=int, default=None,
                   help="tile overlap in LR px (default: seam-safe for the measured receptive "
                        "field)")
    p.add_argument("--order", choices=("tile", "stage"), default=None,
                   help="tile: each tile through all graphs; stage: all tiles through one graph "
                        "at a time (default: the fastest that fits the budget)")
    p.add_argument("--batch", type=int, default=None, help="tiles per graph call")
    p.add_argument("--memory-budget", default=None, metavar="SIZE",
                   help="peak memory bound, e.g. 2GiB or 512MiB; refused at once if unmeetable")
    p.add_argument("--color-fix", choices=("none", "adain", "wavelet"), default=DEFAULT_COLOR_FIX,
                   help=f"align colour to the LR input (default: {DEFAULT_COLOR_FIX}, as the "
                        "manifest's postprocess record tells an app; none: the raw output)")
    p.add_argument("--color-scope", choices=("tile", "image"), default="tile",
                   help="colour fix per tile, or over the whole output (held in memory)")
    p.add_argument("--conditioning", choices=("image", "tile"), default="image",
                   help="conditioner tokens from the whole photo (default, seamless) or per tile")
    p.add_argument("--backend", choices=RUNNABLE, default=TORCH,
                   help="what runs the graphs (default: torch)")
    p.add_argument("--artifacts", default=None, metavar="OUT",
                   help="export folder with manifest.json (backends other than torch)")
    p.add_argument("--precision", default="fp32", help="artifact precision (default: fp32)")
    p.add_argument("--plan", action="store_true",
                   help="print the tile plan, FLOPs and peak memory estimate, and exit")
    p.set_defaults(run=run)


def run(args) -> int:
    from f2i_mobile.core.planner import parse_size
    from f2i_mobile.upscale import UpscaleOptions, plan_upscale, upscale_file

    options = UpscaleOptions(
        tile=args.tile, overlap=args.overlap, order=args.order, batch=args.batch,
        memory_budget=parse_size(args.memory_budget) if args.memory_budget else None,
        color_fix=args.color_fix, color_scope=args.color_scope, conditioning=args.conditioning,
        scale=args.scale, backend=args.backend, artifacts=args.artifacts,
        precision=args.precision, progress=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if args.plan:
            job = plan_upscale(args.input, args.output, args.model, options)
            print(job.describe())
            result = None
        else:
            result = upscale_file(args.input, args.output, args.model, options)
    for w in caught:
        if w.category.__name__ == "SeamWarning":
            print(f"warning: {w.message}", file=sys.stderr)
    if result is not None:
        photo, job = result
        for note in job.notes:
            print(note, file=sys.stderr)
        (w, h), (ow, oh) = photo.size, job.out_size
        print(f"{args.input} ({w}x{h}) -> {args.output} ({ow}x{oh}), {job.plan.count} tiles")
    return 0
