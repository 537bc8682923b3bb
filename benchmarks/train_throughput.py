"""Training throughput (samples/s) of each stage, measured in one run.

    python benchmarks/train_throughput.py                 # mobile on this machine's CPU
    python benchmarks/train_throughput.py --preset eff --crop 512 --batch 32   # on a GPU

The baseline: plain diffusers trains the SD-sized foundation U-Net at 512x512 with on-the-fly VAE
latents and DINOv2 features at 62 samples/s on one H100 (batch 32, bf16 autocast). With a GPU the
figure printed next to it is the ratio to that baseline. Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from results import write_result

from f2i_mobile.core.quiet import quiet_libraries
from f2i_mobile.core.samples import bundled_images
from f2i_mobile.models import build_model, preset
from f2i_mobile.train.config import TrainConfig
from f2i_mobile.train.data import Crops
from f2i_mobile.train.degrade import Degradation
from f2i_mobile.train.stages import build_stage

H100_DIFFUSERS_BASELINE = 62.0  # samples/s, plain diffusers on one H100


def measure(stage: str, preset_name: str, crop: int, batch: int, steps: int, device) -> float:
    model = build_model(preset(preset_name), seed=0, lora=False).to(device)
    module = build_stage(model, TrainConfig(stage, crop=crop, batch=batch)).train().to(device)
    optimizer = torch.optim.AdamW(module.trainable(), lr=1e-4)
    data = Crops(bundled_images(), crop, batch, 0, Degradation())
    batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in data[i].items()}
               for i in range(2)]
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tic = time.perf_counter()
        loss, _ = module(batches[i % 2], torch.Generator(device).manual_seed(i))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - tic)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mobile")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--stages", default="vae,fm,sr")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    quiet_libraries()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for stage in args.stages.split(","):
        rate = measure(stage, args.preset, args.crop, args.batch, args.steps, device)
        rows.append({"stage": stage, "preset": args.preset, "crop": args.crop,
                     "batch": args.batch, "device": where, "samples_per_s": rate,
                     "vs_h100_diffusers_fm": rate / H100_DIFFUSERS_BASELINE
                     if device.type == "cuda" and stage == "fm" else None})
        ratio = f"  ({rows[-1]['vs_h100_diffusers_fm']:.2f}x the 62/s diffusers baseline)" \
            if rows[-1]["vs_h100_diffusers_fm"] else ""
        print(f"{stage:>4} {args.preset} {args.crop}px batch {args.batch} on {where}: "
              f"{rate:.2f} samples/s{ratio}", flush=True)
    write_result("train", rows, args.json)


if __name__ == "__main__":
    main()
