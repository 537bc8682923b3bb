"""`f2i-mobile upscale INPUT -o OUTPUT`: super-resolve one photo, tile by tile;
`f2i-mobile upscale INPUT... -o OUTDIR`: several photos or folders of them into a folder."""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path

from f2i_mobile.core.contract import AUTO, AUTO_TILE, DEFAULT_COLOR_FIX, RUNNABLE


def add_parser(sub) -> None:
    p = sub.add_parser(
        "upscale", help="super-resolve photos (PNG, JPEG, TIFF, WebP, HEIC, AVIF)",
        description="Super-resolve a photo tile by tile under a memory budget, on the torch "
                    "model or an export's graphs; the output is streamed to disk. Several "
                    "inputs, or a folder, go into the folder -o names.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="PNG, JPEG, TIFF, WebP, HEIC or AVIF (8 or 16 bit; gray, RGB, RGBA or "
                        "palette), or a folder of them")
    p.add_argument("-o", "--output", required=True,
                   help="output image (.png, .jpg, .tif, .webp or .heic; keeps the input's bit "
                        "depth where the format can), or a folder for several inputs")
    p.add_argument("--model", default=None,
                   help="checkpoint folder or bundled name (default: mobile)")
    p.add_argument("--scale", type=float, default=None,
                   help="output size / input size (default: the model's scale, 4)")
    p.add_argument("--tile", type=int, default=None,
                   help=f"tile edge in LR px (default: {AUTO_TILE}, or the model's tile when "
                        f"larger, on the default backend; the model's, 128 for mobile, with "
                        f"--backend torch; an export's own with --artifacts)")
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
    p.add_argument("--backend", choices=(AUTO, *RUNNABLE), default=AUTO,
                   help="what runs the graphs (default: auto, the fastest here: the model's "
                        "graphs exported to ONNX once, cached, run by ONNX Runtime; torch when "
                        "onnxruntime is missing; with --artifacts, the fastest runtime there)")
    p.add_argument("--artifacts", default=None, metavar="OUT",
                   help="export folder with manifest.json (backends other than torch)")
    p.add_argument("--precision", default="fp32",
                   help="artifact precision (default: fp32); on the default backend also w8a8: "
                        "the model's int8 ONNX graphs, built once and kept only if they pass "
                        "the quantization gate on held-out photos")
    p.add_argument("--device", default="cpu",
                   help="where the torch model runs (default: cpu); cuda runs it on the GPU in "
                        "bf16 with channels_last and flash attention, 16 tiles a call")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the graphs (--device cuda; pays off over many photos of "
                        "one size: the first photo waits for the compile)")
    p.add_argument("--steps", type=int, default=1,
                   help="U-Net calls per tile (default 1: the one step the exported graphs run); "
                        "more samples through a diffusers DDIM scheduler on the torch model")
    p.add_argument("--plan", action="store_true",
                   help="print the tile plan, FLOPs and peak memory estimate, and exit")
    p.add_argument("--format", choices=("png", "jpg", "tif", "webp", "heic"), default=None,
                   help="the outputs' type when -o is a folder (default: png); -o is then a folder")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose output exists (resumes an interrupted run)")
    p.set_defaults(run=run)


def is_set(args) -> bool:
    """Several photos into a folder, rather than one photo into -o FILE."""
    return (len(args.inputs) > 1 or Path(args.inputs[0]).is_dir() or Path(args.output).is_dir()
            or args.format is not None)


def run(args) -> int:
    from f2i_mobile.calibration.default_path import resolve
    from f2i_mobile.core.planner import parse_size
    from f2i_mobile.upscale import UpscaleOptions, plan_upscale, upscale_file

    options = UpscaleOptions(
        tile=args.tile, overlap=args.overlap, order=args.order, batch=args.batch,
        memory_budget=parse_size(args.memory_budget) if args.memory_budget else None,
        color_fix=args.color_fix, color_scope=args.color_scope, conditioning=args.conditioning,
        scale=args.scale, backend=args.backend, artifacts=args.artifacts,
        precision=args.precision, progress=True, resolve=resolve, steps=args.steps,
        device=args.device, compile=args.compile)
    if is_set(args):
        return run_set(args, options)
    [source] = args.inputs
    if args.skip_existing and not args.plan and Path(args.output).exists():
        print(f"{source}: skipped, {args.output} exists")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if args.plan:
            job = plan_upscale(source, args.output, args.model, options)
            print(job.describe())
            result = None
        else:
            result = upscale_file(source, args.output, args.model, options)
    print_warnings(caught)
    if result is not None:
        photo, job = result
        for note in job.notes:
            print(note, file=sys.stderr)
        (w, h), (ow, oh) = photo.size, job.out_size
        print(f"{source} ({w}x{h}) -> {args.output} ({ow}x{oh}), {job.plan.count} tiles")
    return 0


def run_set(args, options) -> int:
    """Each failed photo is one line as it happens (above the set's progress bar); then one
    summary line. Exit status 1 if any photo failed."""
    from tqdm import tqdm

    from f2i_mobile.core.errors import F2IError
    from f2i_mobile.upscale import upscale_many

    if args.plan:
        raise F2IError("--plan takes one INPUT and -o FILE")
    counts, notes = Counter(), {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        for result in upscale_many(args.inputs, args.output, args.model, options,
                                   args.format or "png", args.skip_existing):
            counts[result.status] += 1
            if result.error:
                tqdm.write(f"f2i-mobile: error: {result.error}", file=sys.stderr)
            elif result.job:
                notes.update(dict.fromkeys(result.job.notes))
    print_warnings(caught)
    for note in notes:  # the same for every photo, mostly: once each
        print(note, file=sys.stderr)
    print(f"{sum(counts.values())} photos -> {args.output}: {counts['written']} written, "
          f"{counts['skipped']} skipped (output exists), {counts['failed']} failed")
    return 1 if counts["failed"] else 0


def print_warnings(caught) -> None:
    """Seam warnings, each distinct one once (a set of photos repeats them)."""
    for message in dict.fromkeys(str(w.message) for w in caught
                                 if w.category.__name__ == "SeamWarning"):
        print(f"warning: {message}", file=sys.stderr)
