"""`f2i-mobile eval`: PSNR/SSIM (Y) and colour cast of a model on held-out images, next to
bicubic, without and with the wavelet colour fix, and the fidelity gate's verdict."""

from __future__ import annotations

import json

COLUMNS = (("bicubic", "bicubic"), ("model", "model"), ("model_wavelet", "model + wavelet fix"))


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM (Y) and colour cast against bicubic, on held-out "
                                    "images",
                       description="Fidelity on 4x bicubic-degraded centre crops (HR 512 or "
                                   "smaller): bicubic, the model, and the model with the wavelet "
                                   "colour fix, measured in the same run. The cast is the largest "
                                   "per-channel mean difference from HR in 8-bit levels.")
    p.add_argument("--model", default=None, help="checkpoint folder or bundled name (default: mobile)")
    p.add_argument("--data", default=None,
                   help="folder of HR images (default: the bundled held-out set: scikit-image "
                        "photos and generated images)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    from f2i_mobile.evaluate import eval_images, evaluate, summary
    from f2i_mobile.models import load_model

    model = load_model(args.model)
    result = summary(evaluate(model, eval_images(args.data)))
    result["method"] = model.config.method  # how its SR stage was trained
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(table(result))
    return 0


def _cells(s: dict) -> str:
    return f"{s['psnr']:>7.2f} {s['ssim']:>7.4f} {s['cast']:>5.2f}"


def table(result: dict) -> str:
    group = " " * 29 + "  ".join(f"{title:<21}" for _, title in COLUMNS)
    head = f"{'image':<22} {'HR':>5} " + "  ".join(f"{'PSNR-Y':>7} {'SSIM-Y':>7} {'cast':>5}"
                                                  for _ in COLUMNS)
    lines = [group.rstrip(), head]
    for r in result["images"]:
        lines.append(f"{r['name'][:22]:<22} {r['hr_size']:>5} "
                     + "  ".join(_cells(r[key]) for key, _ in COLUMNS))
    m = result["mean"]
    lines.append(f"{'mean':<22} {'':>5} " + "  ".join(_cells(m[key]) for key, _ in COLUMNS))
    lines.append(f"PSNR-Y gain over bicubic: {m['model']['psnr'] - m['bicubic']['psnr']:+.2f} dB "
                 f"({m['model_wavelet']['psnr'] - m['bicubic']['psnr']:+.2f} dB with the wavelet "
                 f"fix); cast: largest per-channel mean difference from HR, 8-bit levels")
    gate = result["gate"]
    verdict = "pass" if not gate["failures"] else "FAIL: " + "; ".join(gate["failures"])
    lines.append(f"fidelity gate (PSNR-Y >= bicubic, cast without the fix <= "
                 f"{gate['max_cast']:g} levels): {verdict}")
    if "method" in result:
        lines.append(f"model trained with the {result['method']} method")
    lines.append(result["note"])
    return "\n".join(lines)
