"""Exported graphs tile as the torch path does: agreement, seams, what the statistics pass costs,
and what it did to TFLite's integer partitions. All measured in one run on the bundled model.

    python benchmarks/statistics_bench.py [--out OUT] [--backends onnx,tflite,executorch]

1. Agreement: a held-out photo of at least 6 tiles (scikit-image's motorcycle, halved) through
   each runtime's fp32 export against the torch path, PSNR on the 8-bit RGB output.
2. Seams: a generated sky gradient (the photo on which tiles that normalise on their own differ
   most): the largest step of the column/row mean profile across tile borders against the
   largest step inside tiles (`core.fidelity.seam_steps`), for each runtime and for the same
   tiles normalised each by its own statistics (what exports did before statistics were inputs).
3. Cost: `f2i-mobile bench --host` on the export; the statistics pass's time and peak memory per
   12 MP photo next to the tiles'.
4. TFLite integer partitions of the decoder at w8a8: the decoder with its own GroupNorms (their
   reductions kept in float, as before) against the decoder taking statistics as inputs.

Writes benchmarks/results/statistics.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from results import write_result

from f2i_mobile.core.contract import GRAPHS, PHOTO_GRAPHS, parse_backends
from f2i_mobile.core.fidelity import psnr, seam_steps
from f2i_mobile.core.image import Photo, read_image, to_uint, write_image
from f2i_mobile.core.imaging import bicubic_downscale, pad_reflect, resize
from f2i_mobile.core.quiet import quiet_libraries
from f2i_mobile.core.samples import bundled_images
from f2i_mobile.export.pipeline import export_model
from f2i_mobile.models import load_model
from f2i_mobile.runners.base import run_chain
from f2i_mobile.upscale import UpscaleOptions, assemble, open_engine, plan_job, run_job


def photos(folder: Path) -> dict[str, Path]:
    """The held-out motorcycle halved as the LR input (370 x 250: 6 tiles of 128), and a
    320 x 213 sky gradient."""
    moto = bundled_images(("motorcycle_left",))[0].pixels
    lr = bicubic_downscale(moto[:, :, :3], 2)
    t = np.linspace(0, 1, 213)[:, None, None]
    sky = np.broadcast_to(np.array([40, 90, 200]) + np.array([150, 125, 45]) * t, (213, 320, 3))
    paths = {"motorcycle": folder / "motorcycle_lr.png", "sky": folder / "sky_lr.png"}
    write_image(paths["motorcycle"], Photo(np.ascontiguousarray(lr, np.float32)))
    write_image(paths["sky"], Photo(np.ascontiguousarray(sky / 255.0, np.float32)))
    return paths


def upscale(path: Path, backend: str, artifacts: Path | None, model) -> tuple[np.ndarray, object]:
    """8-bit RGB output and the tile plan of `path` through `backend`."""
    options = UpscaleOptions(backend=backend, artifacts=str(artifacts) if artifacts else None)
    engine = open_engine(None, options, model=model if backend == "torch" else None)
    photo = read_image(path)
    job = plan_job(engine, photo, None, options)
    out = assemble(run_job(engine, job, photo, options), photo, job, options)
    return to_uint(out, "PNG").astype(np.float64), job.plan


def per_tile_statistics(path: Path, model) -> np.ndarray:
    """The same tiles, each normalised by its own statistics (the photo's tokens kept): what an
    export without statistics inputs computed. 8-bit RGB."""
    options = UpscaleOptions()
    engine = open_engine(None, options, model=model)
    photo = read_image(path)
    plan, runner = plan_job(engine, photo, None, options).plan, engine.runner
    view = resize(photo.rgb, plan.tile, plan.tile).transpose(2, 0, 1)[None]
    tokens = runner.run("conditioner", {"lr": np.ascontiguousarray(view)})["tokens"]
    canvas = pad_reflect(photo.rgb, *plan.canvas[::-1])
    acc = np.zeros((plan.canvas[1] * plan.scale, plan.canvas[0] * plan.scale, 3), np.float32)
    for tile in plan.tiles:  # the chain on one tile alone measures that tile's statistics
        crop = canvas[tile.lr.y0:tile.lr.y1, tile.lr.x0:tile.lr.x1].transpose(2, 0, 1)[None]
        sr = run_chain(runner, {"lr": np.ascontiguousarray(crop), "tokens": tokens})["sr"]
        acc[tile.out.y0:tile.out.y1, tile.out.x0:tile.out.x1] += (
            sr[0].transpose(1, 2, 0) * plan.weights(tile)[..., None])
    w, h = plan.out_size
    return to_uint(photo.with_pixels(np.clip(acc[:h, :w], 0, 1), None), "PNG").astype(np.float64)


def host_bench(out: Path, work: Path) -> dict:
    """Per runtime: the statistics pass and the tiles of a 12 MP photo, in s and peak MB."""
    report = work / "bench.json"
    subprocess.run([sys.executable, "-m", "android_bench", "--artifacts", str(out), "--host",
                    "--runs", "3", "--warmup", "1", "--json", str(report)], check=True)
    data = json.loads(report.read_text())
    rows = {}
    for e in data["end_to_end"]:
        per = {r["graph"]: r for r in data["results"]
               if (r["backend"], r["precision"]) == (e["backend"], e["precision"])}
        ms = {g: r["median_ms"] or r["mean_ms"] for g, r in per.items()}
        rows[e["backend"]] = {
            "photo_s": e["seconds_per_photo"], "tiles": e["tiles"],
            "statistics_s": ms["statistics"] * e["calls"]["statistics"] / 1e3,
            "conditioner_s": ms["conditioner"] / 1e3,
            "tiles_s": sum(ms[g] * e["calls"][g] for g in GRAPHS if g not in PHOTO_GRAPHS) / 1e3,
            "statistics_peak_mb": per["statistics"]["peak_memory_mb"],
            "tile_graphs_peak_mb": max(per[g]["peak_memory_mb"] or 0 for g in GRAPHS
                                       if g not in PHOTO_GRAPHS)}
    return rows


def decoder_partitions(model, work: Path) -> dict:
    """Integer partitions of the TFLite w8a8 decoder, with its own GroupNorms (their reductions
    in float) and with statistics as inputs; calibrated on the same held-in tiles."""
    import copy

    from f2i_mobile.calibration import quant_tflite
    from f2i_mobile.calibration.capture import capture
    from f2i_mobile.calibration.quantize import torch_inputs
    from f2i_mobile.core.contract import GraphSpec
    from f2i_mobile.export import tflite
    from f2i_mobile.models.graphs import graph_modules, graph_specs
    from f2i_mobile.models.lora import merge_lora

    calib = capture(model, work / "calibration", tiles=8)
    inputs = torch_inputs(calib, "decoder")
    spec = graph_specs(model.config)["decoder"]
    new = work / "decoder.w8a8.tflite"
    quant_tflite.quantize(graph_modules(model)["decoder"], spec, inputs, "w8a8", new, work)
    merged = copy.deepcopy(model).eval()
    merge_lora(merged.vae)
    own = merged.stages()["decoder"]  # plain GroupNorms: statistics of its own input
    own_spec = GraphSpec("decoder", "", spec.inputs[:1], spec.outputs)
    float_path = work / "decoder_own.fp32.tflite"
    tflite.lower(own, own_spec, float_path, "fp32")
    old = work / "decoder_own.w8a8.tflite"
    quant_tflite.quantize_recipe(float_path, quant_tflite.channel_last(
        [args[:1] for args in inputs], own_spec), "w8a8", old, (quant_tflite.GROUP_NORM,))
    return {"own_statistics": quant_tflite.integer_partitions(old),
            "statistics_inputs": quant_tflite.integer_partitions(new)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="export folder (default: a temporary one)")
    ap.add_argument("--backends", default="onnx,tflite,executorch")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    quiet_libraries()
    torch.manual_seed(0)
    model = load_model(None)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = Path(args.out) if args.out else work / "export"
        backends = [b.name for b in parse_backends(args.backends)]
        _, failures = export_model(model, out, parse_backends(backends))
        if failures:
            raise SystemExit("export failed: " + "; ".join(map(str, failures)))
        paths = photos(work)
        reference, plan = upscale(paths["motorcycle"], "torch", None, model)
        agreement = {b: psnr(upscale(paths["motorcycle"], b, out, model)[0], reference, 255.0)
                     for b in backends}
        print(f"motorcycle ({plan.count} tiles): PSNR against the torch path "
              + ", ".join(f"{b} {v:.1f} dB" for b, v in agreement.items()), flush=True)
        sky, sky_plan = upscale(paths["sky"], "torch", None, model)
        seams = {"torch": seam_steps(sky / 255.0, sky_plan),
                 "per-tile statistics": seam_steps(per_tile_statistics(paths["sky"], model) / 255.0,
                                                   sky_plan)}
        for b in backends:
            seams[b] = seam_steps(upscale(paths["sky"], b, out, model)[0] / 255.0, sky_plan)
        for name, (border, inside) in seams.items():
            print(f"sky ({sky_plan.count} tiles), {name}: largest step across a border "
                  f"{border:.2f} levels, inside a tile {inside:.2f}", flush=True)
        cost = host_bench(out, work)
        for b, row in cost.items():
            print(f"{b}: statistics pass {row['statistics_s']:.2f} s and "
                  f"{row['statistics_peak_mb'] or 0:.0f} MB peak; {row['tiles']} tiles "
                  f"{row['tiles_s']:.1f} s (tile graphs peak {row['tile_graphs_peak_mb']:.0f} MB)"
                  f" per 12 MP photo", flush=True)
        partitions = decoder_partitions(model, work)
        print(f"TFLite w8a8 decoder integer partitions: {partitions['own_statistics']} with its "
              f"own GroupNorms, {partitions['statistics_inputs']} with statistics as inputs")
    write_result("statistics", {
        "model": model.config.name, "agreement_psnr_db": agreement,
        "agreement_tiles": plan.count,
        "seams": {k: {"border_levels": v[0], "inside_levels": v[1]} for k, v in seams.items()},
        "seam_tiles": sky_plan.count, "cost_12mp": cost, "tflite_decoder_partitions": partitions,
    }, args.json)


if __name__ == "__main__":
    main()
