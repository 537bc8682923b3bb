"""`f2i-mobile upscale INPUT -o OUTPUT`: super-resolve one photo."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("upscale", help="super-resolve a photo (PNG, JPEG or TIFF)",
                       description="Super-resolve a photo with the float torch pipeline.")
    p.add_argument("input", help="PNG, JPEG or TIFF; 8 or 16 bit; gray, RGB, RGBA or palette")
    p.add_argument("-o", "--output", required=True,
                   help="output image (.png, .jpg or .tif); keeps the input's bit depth")
    p.add_argument("--model", default=None,
                   help="checkpoint folder (default: the bundled mobile model)")
    p.add_argument("--scale", type=float, default=None,
                   help="output size / input size (default: the model's scale, 4)")
    p.set_defaults(run=run)


def run(args) -> int:
    from f2i_mobile.image import check_output_path, read_image, write_image
    from f2i_mobile.pipeline import load_model, upscale_photo

    check_output_path(args.output)
    photo = read_image(args.input)
    model = load_model(args.model)
    if args.model is None and "untrained" in model.metadata.get("origin", ""):
        print(f"note: {model.metadata['origin']}", file=sys.stderr)
    result = upscale_photo(model, photo, args.scale)
    write_image(args.output, result)
    (w, h), (ow, oh) = photo.size, result.size
    print(f"{args.input} ({w}x{h}) -> {args.output} ({ow}x{oh})")
    return 0
