"""PocketSR distillation in one run: the student against its teacher per runtime (12 MP photo
time), its fidelity on the held-out set, and the ablations at equal steps.

    # the real run (a GPU; hours on a CPU): mobile -> pocket and both ablations, 6000 steps each
    python benchmarks/distill_bench.py --out out/distill_bench
    # a smoke run on the tiny preset (seconds of training, a minute of export and timing)
    python benchmarks/distill_bench.py --teacher tiny --steps 4 --lite-steps 1 \
        --anneal-steps 2 --batch 2 --crop 32 --backends onnx --runs 2 --warmup 1 --table \
        --out /tmp/distill_smoke --json /tmp/distill_smoke/result.json

Variants, each `f2i-mobile distill` of the same teacher for the same steps and seed:
- `pocket`: the full recipe (LiteED phase, annealing, feature distillation);
- `no_anneal`: the light blocks trained directly from the first end-to-end step (`--no-anneal`);
- `no_features`: no multi-layer feature distillation (`--feature-weight 0`).
Each model (and the teacher) is then scored by `f2i-mobile eval` (PSNR-Y, SSIM-Y, cast, against
bicubic), exported to `--backends` at `--tile`, and timed on this host by `f2i-mobile bench
--host` (medians per graph combined with the tile plan of a 12 MP photo). A variant whose
`OUT/<variant>/model` exists is reused (rerun with `--retrain` to train it again), and
`--pocket DIR` takes an existing `f2i-mobile distill` result as the `pocket` variant. `--table`
adds the teacher's per-block cost/sensitivity table (`train.distill.block_table`). `--teacher
tiny` builds an untrained tiny teacher (for smoke runs only). Writes
benchmarks/results/distill.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from results import write_result

VARIANTS = {
    "pocket": {},
    "no_anneal": {"anneal": False},
    "no_features": {"feature_weight": 0.0},
}


def teacher_path(name: str, out: Path) -> str:
    """A teacher folder or bundled name; `tiny` builds a random tiny checkpoint for smoke runs."""
    if name != "tiny":
        return name
    from f2i_mobile.models import build_model, preset, save_pretrained

    folder = out / "teacher-tiny"
    if not folder.is_dir():
        save_pretrained(build_model(preset("tiny"), seed=0), folder)
    return str(folder)


def distill(variant: str, teacher: str, args, out: Path) -> tuple[Path, float | None]:
    from f2i_mobile.train.config import default_train_config
    from f2i_mobile.train.distill import run_distill

    run = out / variant
    if variant == "pocket" and args.pocket:
        return Path(args.pocket), None
    if (run / "model").is_dir() and not args.retrain:
        return run / "model", None
    cfg = default_train_config("distill").replace(
        max_steps=args.steps, batch=args.batch, crop=args.crop, seed=args.seed,
        checkpoint_every=max(1, args.steps // 4), mixed_precision=args.mixed_precision,
        **({"learning_rate": args.lr} if args.lr else {}))
    cfg = cfg.replace(distill=replace(cfg.distill, lite_steps=args.lite_steps,
                                      anneal_steps=args.anneal_steps, **VARIANTS[variant]))
    tic = time.perf_counter()
    model = run_distill(cfg, run, teacher=teacher, student="pocket", data=args.data,
                        resume=(run / "checkpoints").is_dir() and not args.retrain)
    return model, time.perf_counter() - tic


def cli(*argv: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "f2i_mobile.cli", *argv], capture_output=True,
                       text=True)
    if r.returncode:
        raise SystemExit(f"f2i-mobile {' '.join(argv)} failed: {r.stderr.strip()}")
    return r


def measure(label: str, model: str, args, out: Path) -> dict:
    info = json.loads(cli("info", "--model", model, "--json").stdout)
    row = {"model": model, "params": info["total_params"],
           "gflops_per_tile": info["total_gflops_per_tile"]}
    if not args.no_eval:
        result = json.loads(cli("eval", "--model", model, "--json",
                                *(["--data", args.eval_data] if args.eval_data else [])).stdout)
        row["eval"] = {"mean": result["mean"], "gate_failures": result["gate"]["failures"]}
    export = out / "exports" / label
    cli("export", "--model", model, "--out", str(export), "--backends", args.backends,
        "--tile", str(args.tile))
    report = out / "bench" / f"{label}.json"
    cli("bench", "--artifacts", str(export), "--host", "--runs", str(args.runs), "--warmup",
        str(args.warmup), "--json", str(report))
    bench = json.loads(report.read_text())
    row["seconds_per_12mp"] = {f"{e['backend']}/{e['precision']}": e["seconds_per_photo"]
                               for e in bench["end_to_end"]}
    return row


def block_rows(teacher: str, tile: int, images: int = 4) -> list[dict]:
    """`train.distill.block_table` of the teacher on LR crops (one tile each, area-resized by
    the scale from the centre of held-out images): what the `pocket` recipe is chosen from."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from f2i_mobile.evaluate import eval_images
    from f2i_mobile.models import load_model
    from f2i_mobile.train.distill import block_table

    model = load_model(teacher)
    side = tile * model.config.scale
    crops = []
    for image in eval_images(None)[:images]:
        h, w = image.pixels.shape[:2]
        if min(h, w) >= side:
            y, x = (h - side) // 2, (w - side) // 2
            crops.append(image.pixels[y:y + side, x:x + side])
    hr = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32))
    lr = F.interpolate(hr, size=(tile, tile), mode="area")
    return block_table(model, lr)


def block_text(rows: list[dict]) -> str:
    lines = [f"{'block':<30}{'kind':<20}{'GFLOPs':>8}{'light':>8}{'PSNR without':>14}"]
    for r in sorted(rows, key=lambda r: r["psnr_without"], reverse=True):
        lines.append(f"{r['block']:<30}{r['kind']:<20}{r['gflops']:8.2f}{r['gflops_light']:8.2f}"
                     f"{r['psnr_without']:14.2f}")
    return "\n".join(lines)


def table(rows: dict) -> str:
    runtimes = sorted({k for r in rows.values() for k in r["seconds_per_12mp"]})
    head = f"{'model':<12}{'GFLOPs':>8}{'params M':>10}{'PSNR-Y':>8}{'vs bic':>8}{'cast':>6}"
    lines = [head + "".join(f"{k + ' s':>18}" for k in runtimes)]
    for name, r in rows.items():
        m = r.get("eval", {}).get("mean")
        fid = (f"{m['model']['psnr']:8.2f}{m['model']['psnr'] - m['bicubic']['psnr']:+8.2f}"
               f"{m['model']['cast']:6.2f}") if m else f"{'-':>8}{'-':>8}{'-':>6}"
        lines.append(f"{name:<12}{r['gflops_per_tile']:8.2f}{r['params'] / 1e6:10.3f}{fid}"
                     + "".join(f"{r['seconds_per_12mp'].get(k, float('nan')):18.2f}"
                               for k in runtimes))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="mobile", help="folder, bundled name, or tiny (smoke)")
    p.add_argument("--out", default="out/distill_bench")
    p.add_argument("--data", default=None, help="training images (default: the bundled set)")
    p.add_argument("--eval-data", default=None, help="held-out images (default: eval's own)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--lite-steps", type=int, default=2000)
    p.add_argument("--anneal-steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the "
                   "distill stage's)")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--retrain", action="store_true", help="train variants that exist again")
    p.add_argument("--pocket", default=None,
                   help="a distilled model to use as the pocket variant instead of training it "
                        "(RUN/model of `f2i-mobile distill` with the same settings)")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    p.add_argument("--backends", default="onnx,tflite,executorch")
    p.add_argument("--tile", type=int, default=None, help="export tile (default: the config's)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--table", action="store_true",
                   help="also the teacher's per-block cost/sensitivity table")
    p.add_argument("--json", default=None, help="results file (default: "
                   "benchmarks/results/distill.json)")
    args = p.parse_args()
    from f2i_mobile.core.quiet import quiet_libraries
    from f2i_mobile.models import load_model

    quiet_libraries()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = teacher_path(args.teacher, out)
    args.tile = args.tile or load_model(teacher).config.tile
    blocks = block_rows(teacher, args.tile) if args.table else None
    if blocks:
        print(block_text(blocks), flush=True)
    rows, trained = {"teacher": measure("teacher", teacher, args, out)}, {}
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        model, seconds = distill(variant, teacher, args, out)
        trained[variant] = {"model": str(model), "train_s": seconds}
        rows[variant] = measure(variant, str(model), args, out)
    print(table(rows))
    write_result("distill", {"teacher": args.teacher, "steps": args.steps,
                             "lite_steps": args.lite_steps, "anneal_steps": args.anneal_steps,
                             "batch": args.batch, "crop": args.crop, "tile": args.tile,
                             "trained": trained, "models": rows, "blocks": blocks}, args.json)


if __name__ == "__main__":
    main()
