"""The GPU path against plain diffusers on the same GPU, in one run (needs a CUDA GPU).

    python benchmarks/gpu.py [--json benchmarks/results/gpu.json] [--budget 420]

1. SR: the `eff` preset (random weights: what is timed is the arithmetic, not the output) on a
   1000x750 photo to 4000x3000 (12 MP), tile 128 LR px (512 out), overlap 16 LR px.
   - plain: diffusers as it comes: fp32 weights (LoRA merged), bf16 autocast, NCHW, SDPA
     (diffusers' default), DINOv2 per tile, 8 tiles a call, tiles pasted on the GPU.
   - ours: `f2i-mobile upscale --device cuda`'s engine (`runners.torch_runner`): bf16 weights,
     channels_last, SDPA, tokens and GroupNorm statistics once per photo, 8/16/32 tiles a call;
     `graphs_s` is the time inside the graph calls (host copies included) in the last of two
     timed runs, `upscale_s` the best of them for the whole job (host blending and the colour
     fix too); then the same with `torch.compile`.
   - fidelity: each against the same pipeline in fp32 on the GPU, PSNR over the 12 MP output.
2. The bundled `mobile` model: the default `upscale` job of the same photo on the GPU.
3. Foundation (fm) training of `eff` at 512 px, batch 32, frozen DINOv2 (as with real weights),
   VAE latents and DINOv2 features on the fly, one optimizer step per batch, batches resident:
   - plain: the training core without `train.device` (fp32 weights, bf16 autocast, NCHW,
     foreach AdamW);  ours: with it (channels_last, TF32, fused AdamW); then + `--compile`.

The baselines measured on one H100 by the design notes (plain diffusers, bf16): a 12 MP eff
output in 1.75 s, fm training at 62 samples/s; the goals were 0.5 s and 150 samples/s. Parts
past `--budget` seconds are skipped (and say so); each part's error is recorded, not raised.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from results import write_result

from f2i_mobile.core.imaging import pad_reflect, resize
from f2i_mobile.core.quiet import quiet_libraries

PHOTO = (1000, 750)
TILE, OVERLAP, SCALE = 128, 16, 4
# `--smoke` runs every part on this CPU with the tiny preset: the script's own check, no figures
SETUP = {"device": "cuda", "preset": "eff", "crop": 512, "batch": 32}


def sync() -> None:
    if SETUP["device"] == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeat: int = 2) -> tuple[float, object]:
    """(best of `repeat` seconds, the last result) after one warm-up call."""
    out = fn()
    best = math.inf
    for _ in range(repeat):
        sync()
        tic = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - tic)
    return best, out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(1 / mse)


def photo_file(folder: Path) -> Path:
    """scikit-image's astronaut, smoothly resized to 1000x750 (cubic), as a PNG."""
    from skimage import data

    from f2i_mobile.core.image import Photo, write_image

    rgb = resize(data.astronaut().astype(np.float32) / 255, *PHOTO)
    path = folder / "astronaut_1000x750.png"
    write_image(path, Photo(np.clip(rgb, 0, 1)))
    return path


# --- SR -------------------------------------------------------------------------------------

def plain_sr(model, plan, rgb: np.ndarray, batch: int = 8) -> np.ndarray:
    """diffusers as it comes, on the tile plan ours runs: returns the output canvas (H, W, 3)."""
    ch, cw = _canvas(plan)
    dev = SETUP["device"]
    canvas = torch.from_numpy(pad_reflect(rgb, ch, cw)).permute(2, 0, 1).to(dev)
    out = torch.zeros(3, ch * SCALE, cw * SCALE, device=dev)
    tiles = plan.tiles
    with torch.no_grad(), torch.autocast(dev, torch.bfloat16):
        for i in range(0, len(tiles), batch):
            group = tiles[i:i + batch]
            lr = torch.stack([canvas[:, t.lr.y0:t.lr.y1, t.lr.x0:t.lr.x1] for t in group])
            sr = model(lr)
            for t, o in zip(group, sr):
                out[:, t.lr.y0 * SCALE:t.lr.y1 * SCALE, t.lr.x0 * SCALE:t.lr.x1 * SCALE] = o
    sync()
    return out.float().permute(1, 2, 0).cpu().numpy()[:rgb.shape[0] * SCALE, :rgb.shape[1] * SCALE]


def _canvas(plan) -> tuple[int, int]:
    return (max(t.lr.y1 for t in plan.tiles), max(t.lr.x1 for t in plan.tiles))


def ours(model, photo, batch: int, compile: bool = False, color_fix: str = "wavelet",
         precision: str | None = None):
    """The upscale engine on the GPU: (seconds inside graph calls, seconds for the job, rgb)."""
    from f2i_mobile.upscale import UpscaleOptions, assemble, open_engine, plan_job, run_job

    options = UpscaleOptions(tile=TILE, overlap=OVERLAP, batch=batch, device=SETUP["device"],
                             compile=compile, color_fix=color_fix)
    engine = open_engine(None, options, model=model)
    if SETUP["device"] == "cpu":  # the smoke run: bf16 as on a GPU
        from f2i_mobile.runners.torch_runner import TorchRunner
        engine.runner = TorchRunner.of_model(model, TILE, precision="bf16",
                                             compile=batch if compile else 0)
    if precision:  # the same engine in another precision (the fp32 reference)
        from f2i_mobile.runners.torch_runner import TorchRunner
        engine.runner = TorchRunner.of_model(model, TILE, precision=precision)
    spent = [0.0]
    run = engine.runner.run

    def timed_run(graph, inputs):
        tic = time.perf_counter()
        try:
            return run(graph, inputs)
        finally:
            spent[0] += time.perf_counter() - tic

    engine.runner.run = timed_run
    job = plan_job(engine, photo, None, options)

    def once():
        spent[0] = 0.0
        return assemble(run_job(engine, job, photo, options), photo, job, options).rgb

    seconds, rgb = timed(once, repeat=2)
    graph_seconds = spent[0]
    return graph_seconds, seconds, rgb, job


@functools.cache
def sr_model():
    """The SR model (random weights, LoRA in place), built once: 0.8 B parameters for eff."""
    from f2i_mobile.models import build_model, preset

    return build_model(preset(SETUP["preset"]), seed=0)


def sr_part(record: dict, photo) -> None:
    from f2i_mobile.models.lora import merge_lora

    model = sr_model()
    plain = copy.deepcopy(model)
    merge_lora(plain.unet)
    merge_lora(plain.vae)
    plain = plain.eval().to(SETUP["device"])
    # fp32 reference and the plan, through ours in fp32 (TF32 off)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    _, ref_s, ref, job = ours(model, photo, 8, color_fix="none", precision="fp32")
    record["tiles"] = job.plan.count
    record["fp32_ours_s"] = ref_s
    print(f"sr: {job.plan.count} tiles, fp32 {ref_s:.2f} s", flush=True)
    seconds, out = timed(lambda: plain_sr(plain, job.plan, photo.rgb, 8))
    record["plain"] = {"batch": 8, "seconds": seconds, "psnr_vs_fp32": psnr(out, ref)}
    print(f"sr plain: {seconds:.3f} s", flush=True)
    plain = None  # free its weights before ours runs
    gc.collect()
    torch.cuda.empty_cache()
    record["ours"] = []
    for batch in (8, 16, 32):
        graphs, whole, rgb, _ = ours(model, photo, batch, color_fix="none")
        _, whole_fix, _, _ = ours(model, photo, batch) if batch == 16 else (0, None, 0, 0)
        row = {"batch": batch, "graphs_s": graphs, "upscale_s": whole,
               "upscale_wavelet_s": whole_fix, "psnr_vs_fp32": psnr(rgb, ref)}
        record["ours"].append(row)
        print(f"sr ours: {row}", flush=True)
        gc.collect()  # the engines' weight copies
        torch.cuda.empty_cache()


def sr_compile_part(record: dict, photo) -> None:
    model = sr_model()
    tic = time.perf_counter()
    graphs, whole, _, _ = ours(model, photo, 16, compile=True, color_fix="none")
    record["compiled"] = {"batch": 16, "graphs_s": graphs, "upscale_s": whole,
                          "first_run_with_compile_s": time.perf_counter() - tic - 3 * whole}
    print(f"sr compiled: {record['compiled']}", flush=True)


def mobile_part(record: dict, photo) -> None:
    from f2i_mobile.models import load_model

    model = load_model(None)
    for batch in (16,):
        graphs, whole, _, job = ours(model, photo, batch)
        record[f"batch{batch}"] = {"tiles": job.plan.count, "graphs_s": graphs,
                                   "upscale_s": whole}
    print(f"mobile: {record}", flush=True)


# --- training ---------------------------------------------------------------------------------

def train_rate(variant: str, steps: int = 6) -> dict:
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler

    from f2i_mobile.core.samples import bundled_images
    from f2i_mobile.models import build_model, preset
    from f2i_mobile.train import device as gpu
    from f2i_mobile.train.config import TrainConfig
    from f2i_mobile.train.data import Crops
    from f2i_mobile.train.loop import update
    from f2i_mobile.train.stages import build_stage

    batch, crop = SETUP["batch"], SETUP["crop"]
    cfg = TrainConfig("fm", batch=batch, crop=crop, mixed_precision="bf16",
                      compile=variant == "compile")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()  # not the SR part's peak
    accelerator = Accelerator(mixed_precision="bf16", cpu=SETUP["device"] == "cpu")
    model = build_model(preset(SETUP["preset"]), seed=0, lora=False)
    stage = build_stage(model, cfg, frozen_conditioner=True).train()
    if variant == "plain":
        optimizer = torch.optim.AdamW(stage.trainable(), lr=cfg.learning_rate,
                                      weight_decay=cfg.weight_decay)
    else:
        gpu.tune([stage], accelerator.device, cfg)
        if variant == "ours-channels-last":  # what train.device left out, measured slower
            stage.to(memory_format=torch.channels_last)
        optimizer = gpu.optimizer(stage.trainable(), cfg, accelerator.device)
    wrapped, optimizer = accelerator.prepare(stage, optimizer)
    schedule = get_scheduler("constant", optimizer)
    data = Crops(bundled_images(), crop, batch, 0, degrade=lambda hr, rng: hr[::4, ::4])
    batches = [{k: v.to(accelerator.device) if torch.is_tensor(v) else v
                for k, v in data[i].items()} for i in range(2)]

    def step(i):
        gen = torch.Generator(accelerator.device).manual_seed(i)
        loss, _ = wrapped(batches[i % 2], gen)
        update(accelerator, loss, stage, optimizer, schedule, cfg.grad_clip)

    tic = time.perf_counter()
    for i in range(2):
        step(i)
    sync()
    warm = time.perf_counter() - tic
    tic = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    rate = steps * batch / (time.perf_counter() - tic)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    accelerator.free_memory()  # the rest goes with this frame; the next part collects it
    return {"variant": variant, "batch": batch, "crop": crop, "samples_per_s": rate,
            "warmup_s": warm, "peak_gib": peak}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None)
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds; later parts are skipped past it")
    p.add_argument("--parts", default="sr,mobile,train,sr_compile,train_compile")
    p.add_argument("--train-variants", default="plain,ours",
                   help="plain, ours, ours-channels-last")
    p.add_argument("--smoke", action="store_true",
                   help="every part on this CPU, tiny preset, small photo: checks the script")
    args = p.parse_args()
    global PHOTO, TILE, OVERLAP
    if args.smoke:
        SETUP.update(device="cpu", preset="tiny", crop=64, batch=2)
        PHOTO, TILE, OVERLAP = (80, 60), 32, 8
    elif not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU here", file=sys.stderr)
        return 1
    quiet_libraries()
    from f2i_mobile.core.image import read_image

    start = time.perf_counter()
    results = {"gpu": "none (smoke)" if args.smoke else torch.cuda.get_device_name(),
               "torch": torch.__version__,
               "photo": f"{PHOTO[0]}x{PHOTO[1]} -> {PHOTO[0] * SCALE}x{PHOTO[1] * SCALE}",
               "baseline_h100_plain": {"sr_12mp_s": 1.75, "fm_samples_per_s": 62.0},
               "skipped": [], "errors": {}}
    photo = read_image(photo_file(Path(tempfile.mkdtemp())))
    train_rows = results.setdefault("train", [])
    parts = {
        "sr": lambda: sr_part(results.setdefault("sr", {}), photo),
        "mobile": lambda: mobile_part(results.setdefault("mobile", {}), photo),
        "train": lambda: train_rows.extend(
            train_rate(v) for v in args.train_variants.split(",")),
        "sr_compile": lambda: sr_compile_part(results.setdefault("sr", {}), photo),
        "train_compile": lambda: train_rows.append(train_rate("compile")),
    }
    for name in args.parts.split(","):
        if time.perf_counter() - start > args.budget:
            results["skipped"].append(name)
            continue
        print(f"--- {name} at {time.perf_counter() - start:.0f} s", flush=True)
        try:
            parts[name]()
        except Exception as exc:  # one part's failure must not lose the others' figures
            traceback.print_exc()
            results["errors"][name] = f"{type(exc).__name__}: {exc}"[:500]
        for row in train_rows:
            print(f"train: {row}", flush=True)
        write_result("gpu", results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
