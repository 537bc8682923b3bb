"""OSEDiff against FaithDiff as the SR training method, and FaithDiff's ablations, in one run:
every variant trained from the same foundation model for the same steps on the same data
(same seed, so the same crops and degradations), then scored on the held-out set.

    python benchmarks/method_compare.py --preset tiny --foundation-steps 20 --steps 20   # smoke
    python benchmarks/method_compare.py --init FM_RUN/model --steps 2000 --align-steps 300

Variants (`VARIANTS`): `osediff` (LoRA on VAE encoder and U-Net); `faithdiff` (alignment module
alone for --align-steps, then LQ encoder + alignment + U-Net jointly, penultimate features);
`faithdiff-no-align-pretrain` (joint from the first step); `faithdiff-last-layer` (the encoder's
last-layer features). Per variant: mean PSNR-Y, SSIM-Y and colour cast (8-bit levels) on
`f2i-mobile eval`'s held-out set (`f2i_mobile.evaluate`), with and without the wavelet colour
fix; GFLOPs and measured torch milliseconds per tile of the tile graphs (encoder, U-Net,
decoder); parameters of the graphs and parameters trained. Without --init, the foundation is
made here by the vae and fm stages (--foundation-steps each) of --preset. Writes
benchmarks/results/method_compare.json (or --json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch
from results import write_result

from f2i_mobile.core.quiet import quiet_libraries
from f2i_mobile.evaluate import eval_images, evaluate, means
from f2i_mobile.models import from_pretrained, load_model
from f2i_mobile.models.config import AlignConfig
from f2i_mobile.models.graphs import count_flops, count_params
from f2i_mobile.runners.base import run_chain
from f2i_mobile.runners.torch_runner import TorchRunner
from f2i_mobile.train.config import default_train_config
from f2i_mobile.train.run import run_stage

TILE_GRAPHS = ("encoder", "unet", "decoder")
VARIANTS = {
    "osediff": {"method": "osediff"},
    "faithdiff": {"method": "faithdiff", "align": True},
    "faithdiff-no-align-pretrain": {"method": "faithdiff"},
    "faithdiff-last-layer": {"method": "faithdiff", "align": True, "features": "last"},
}


def foundation(args, work: Path) -> Path:
    """The foundation model every variant starts from: --init, or vae then fm made here."""
    if args.init:
        return Path(args.init)
    if args.reuse and (work / "fm" / "model").is_dir():
        return work / "fm" / "model"
    common = {"max_steps": args.foundation_steps, "batch": args.batch, "crop": args.crop,
              "seed": args.seed, "checkpoint_every": args.foundation_steps}
    vae = run_stage(default_train_config("vae").replace(**common), str(work / "vae"),
                    data=args.data, preset_name=args.preset, progress=args.progress)
    return run_stage(default_train_config("fm").replace(**common), str(work / "fm"),
                     data=args.data, preset_name=args.preset, init=str(vae),
                     progress=args.progress)


def train_variant(name: str, args, init: Path, work: Path) -> tuple[Path, float, int]:
    spec = VARIANTS[name]
    cfg = default_train_config("sr").replace(
        max_steps=args.steps, batch=args.batch, crop=args.crop, seed=args.seed,
        checkpoint_every=args.steps, method=spec["method"])
    if spec["method"] == "faithdiff":
        cfg = cfg.replace(align_steps=args.align_steps if spec.get("align") else 0,
                          lora_rank=args.lora_rank,
                          align=AlignConfig(features=spec.get("features", "penultimate")))
    if args.reuse and (work / name / "model").is_dir():
        return work / name / "model", float("nan"), trained_parameters(cfg, init)
    tic = time.perf_counter()
    final = run_stage(cfg, str(work / name), data=args.data, init=str(init),
                      progress=args.progress)
    seconds = time.perf_counter() - tic
    return final, seconds, trained_parameters(cfg, init)


def trained_parameters(cfg, init: Path) -> int:
    """Parameters the variant's generator trains (what its optimizer holds)."""
    from f2i_mobile.train.stages import build_stage

    return sum(p.numel() for p in build_stage(load_model(init), cfg).trainable())


@torch.no_grad()
def tile_ms(model, repeats: int) -> float:
    """Median torch milliseconds of one tile through encoder, U-Net and decoder (photo graphs
    run once beforehand, as the tiler does)."""
    runner = TorchRunner.of_model(model)
    lr = np.random.default_rng(0).random((1, 3, model.config.tile, model.config.tile),
                                         dtype=np.float32)
    shared = run_chain(runner, {"lr": lr}, ("conditioner", "statistics"))
    times = []
    for _ in range(repeats + 1):
        tic = time.perf_counter()
        run_chain(runner, shared, TILE_GRAPHS)
        times.append(time.perf_counter() - tic)
    return float(np.median(times[1:]) * 1e3)


def score(name: str, path: Path, seconds: float, trained: int, args, images) -> dict:
    model = from_pretrained(path)
    m = means(evaluate(model, images))
    flops, params = count_flops(model), count_params(model)
    return {"variant": name, "method": model.config.method,
            "features": model.config.align.features if model.align is not None else None,
            "psnr_y": m["model"]["psnr"], "ssim_y": m["model"]["ssim"],
            "cast": m["model"]["cast"], "psnr_y_wavelet": m["model_wavelet"]["psnr"],
            "ssim_y_wavelet": m["model_wavelet"]["ssim"], "cast_wavelet": m["model_wavelet"]["cast"],
            "bicubic_psnr_y": m["bicubic"]["psnr"],
            "gflops_per_tile": sum(flops[g] for g in TILE_GRAPHS) / 1e9,
            "ms_per_tile": tile_ms(model, args.repeats),
            "params": sum(params[g] for g in ("conditioner", *TILE_GRAPHS)),
            "trained_params": trained, "train_seconds": seconds}


def table(rows: list[dict], tile: int) -> str:
    head = (f"{'variant':<28} {'PSNR-Y':>7} {'SSIM-Y':>7} {'cast':>5} {'+wavelet':>8} "
            f"{'GFLOP/t':>8} {'ms/tile':>8} {'params':>9} {'trained':>9}")
    lines = [head] + [
        f"{r['variant']:<28} {r['psnr_y']:>7.2f} {r['ssim_y']:>7.4f} {r['cast']:>5.2f} "
        f"{r['psnr_y_wavelet']:>8.2f} {r['gflops_per_tile']:>8.3f} {r['ms_per_tile']:>8.1f} "
        f"{r['params'] / 1e6:>8.3f}M {r['trained_params'] / 1e6:>8.3f}M" for r in rows]
    best = max(rows, key=lambda r: r["psnr_y"])
    lines.append(f"bicubic PSNR-Y {rows[0]['bicubic_psnr_y']:.2f} dB; tile {tile} LR px; highest "
                 f"PSNR-Y on the held-out set: {best['variant']}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", default=None, help="foundation model (the fm stage's OUT/model)")
    p.add_argument("--preset", default="tiny", help="without --init: the preset to build")
    p.add_argument("--foundation-steps", type=int, default=20)
    p.add_argument("--steps", type=int, default=20, help="sr steps of every variant")
    p.add_argument("--align-steps", type=int, default=None,
                   help="faithdiff's alignment-only steps (default: a quarter of --steps)")
    p.add_argument("--lora-rank", type=int, default=0, help="faithdiff through adapters")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="training images (default: bundled)")
    p.add_argument("--eval-data", default=None, help="held-out images (default: bundled)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--repeats", type=int, default=5, help="timed tiles per variant")
    p.add_argument("--work", default=None, help="keep the runs here (default: a temp folder)")
    p.add_argument("--reuse", action="store_true",
                   help="with --work: score the runs already there instead of training them "
                        "again (same arguments; their training time is not known then)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.align_steps is None:
        args.align_steps = args.steps // 4
    quiet_libraries()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; of {', '.join(VARIANTS)}")
    images = eval_images(args.eval_data)
    with TemporaryDirectory(prefix="method-compare-") as tmp:
        work = Path(args.work or tmp)
        init = foundation(args, work)
        rows = []
        for name in names:
            path, seconds, trained = train_variant(name, args, init, work)
            rows.append(score(name, path, seconds, trained, args, images))
            print(f"{name}: PSNR-Y {rows[-1]['psnr_y']:.2f} dB", flush=True)
        tile = load_model(init).config.tile
    print(table(rows, tile))
    write_result("method_compare", {"foundation": str(args.init or f"{args.preset}, "
                                                      f"{args.foundation_steps} steps per stage"),
                                    "steps": args.steps, "align_steps": args.align_steps,
                                    "batch": args.batch, "crop": args.crop, "seed": args.seed,
                                    "tile": tile, "variants": rows}, args.json)


if __name__ == "__main__":
    main()
