"""`f2i-mobile eval`: PSNR/SSIM (Y) of a model on held-out images, next to bicubic."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR and SSIM (Y channel) against bicubic, on held-out images",
                       description="Fidelity on 4x bicubic-degraded centre crops (HR 512 or "
                                   "smaller), with bicubic upsampling measured in the same run.")
    p.add_argument("--model", default=None, help="checkpoint folder (default: the bundled model)")
    p.add_argument("--data", default=None,
                   help="folder of HR images (default: the bundled held-out scikit-image images)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    from f2i_mobile.evaluate import eval_images, evaluate, summary
    from f2i_mobile.models import load_model

    model = load_model(args.model)
    result = summary(evaluate(model, eval_images(args.data)))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'image':<22} {'HR':>5} {'PSNR-Y':>8} {'SSIM-Y':>7} {'bicubic':>8} {'SSIM':>7}")
    for r in result["images"]:
        print(f"{r['name']:<22} {r['hr_size']:>5} {r['psnr']:>8.2f} {r['ssim']:>7.4f} "
              f"{r['bicubic_psnr']:>8.2f} {r['bicubic_ssim']:>7.4f}")
    m = result["mean"]
    print(f"{'mean':<22} {'':>5} {m['psnr']:>8.2f} {m['ssim']:>7.4f} {m['bicubic_psnr']:>8.2f} "
          f"{m['bicubic_ssim']:>7.4f}")
    print(f"PSNR-Y gain over bicubic: {m['psnr'] - m['bicubic_psnr']:+.2f} dB; {result['note']}")
    return 0
