"""ONNX Runtime's int8 on this CPU, graph by graph, in one run: the w8a8 recipe's QDQ graphs run
fused (ONNX Runtime's int8 kernels) and unfused (dequantize, float op: what the runner runs on
an x86 CPU without VNNI), and fused with the weights that such a CPU sums exactly (7-bit,
`reduce_range`; uint8, its u8 x u8 kernels), each against fp32 in time and PSNR.

    python benchmarks/onnx_int8.py --artifacts OUT    # an export folder with ONNX fp32 graphs
                                                      # (the default path's cache folder is one)

Inputs are the fp32 graphs' own on real LR tiles: a centre crop of one tile from each of the
first 6 calibration images (to calibrate on) and of 2 held-out images (to time and check), each
tile with its photo's statistics (the statistics graph on the image resized to one tile, as the
tiler runs it). Each variant: median of 3 runs after a warm-up, on the check tiles in turns;
PSNR against the fp32 graph on the check tiles (peak 1 for the decoder's image, the fp32
output's largest magnitude for latents). The machine record names the CPU's vector features.
Writes benchmarks/results/onnx_int8.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import write_result

from f2i_mobile.core.errors import guarded

GRAPHS = ("encoder", "unet", "decoder")  # the tile graphs: what w8a8 quantizes and a photo repeats
CALIBRATION_IMAGES, CHECK_IMAGES = 6, 2
RUNS = 3


def variants():
    """(name, quantize_static options over quant_onnx's, run fused)."""
    from onnxruntime.quantization import QuantType

    return [("int8 weights (the recipe)", {}, True),
            ("int8 weights, unfused", {}, False),
            ("7-bit weights (reduce_range)", {"reduce_range": True}, True),
            ("uint8 weights", {"weight_type": QuantType.QUInt8}, True)]


def tiles(runner, tile: int, names: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
    """Every graph's inputs (and outputs) on a centre tile of each image, by the fp32 graphs."""
    import cv2

    from f2i_mobile.core.samples import bundled_images
    from f2i_mobile.runners.base import run_chain

    def nchw(a):
        return np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float32)

    out = []
    for image in bundled_images(names):
        rgb = image.pixels
        short = min(rgb.shape[:2])
        if short < tile:  # up to one tile on its short side
            rgb = cv2.resize(rgb, None, fx=tile / short, fy=tile / short,
                             interpolation=cv2.INTER_CUBIC)
        h, w = rgb.shape[:2]
        crop = rgb[(h - tile) // 2:(h + tile) // 2, (w - tile) // 2:(w + tile) // 2]
        view = cv2.resize(rgb, (tile, tile), interpolation=cv2.INTER_AREA)
        photo = run_chain(runner, {"lr": nchw(view)}, ["conditioner", "statistics"])
        shared = {k: v for k, v in photo.items() if k != "lr"}
        out.append(run_chain(runner, {"lr": nchw(crop), **shared}, GRAPHS))
    return out


def measure(path: Path, fused: bool, feeds: list[dict], refs: list[np.ndarray],
            peak: float) -> dict:
    import onnxruntime as ort

    from f2i_mobile.runners.onnx_runner import intra_op_threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads()
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outs = [session.run(None, f)[0] for f in feeds]  # the warm-up
    seconds = []
    for i in range(RUNS):
        start = time.perf_counter()
        session.run(None, feeds[i % len(feeds)])
        seconds.append(time.perf_counter() - start)
    errors = [float(np.mean((o - r) ** 2)) for o, r in zip(outs, refs)]
    psnr = [10 * np.log10(peak ** 2 / e) if e > 0 else float("inf") for e in errors]
    return {"ms": 1000 * float(np.median(seconds)), "psnr_db": psnr}


def bench_graph(folder: Path, graph: str, spec, calib: list[dict], check: list[dict],
                work: Path) -> list[dict]:
    import torch

    from f2i_mobile.calibration import quant_onnx

    names = list(spec.input_names)
    [output] = spec.output_names
    float_path = folder / "onnx" / f"{graph}.onnx"
    feeds = [{n: c[n] for n in names} for c in check]
    refs = [c[output] for c in check]
    peak = 1.0 if graph == "decoder" else max(float(np.abs(r).max()) for r in refs)
    inputs = [tuple(torch.from_numpy(c[n]) for n in names) for c in calib]
    rows = [{"variant": "fp32", **measure(float_path, True, feeds, refs, peak)}]
    quantized: dict[str, Path] = {}
    for name, options, fused in variants():
        key = repr(sorted(options.items()))
        if key not in quantized:
            quantized[key] = work / f"{graph}-{len(quantized)}.onnx"
            quant_onnx.quantize(float_path, inputs, names, quantized[key], **options)
        rows.append({"variant": name, **measure(quantized[key], fused, feeds, refs, peak)})
    for row in rows:
        row["speedup_over_fp32"] = rows[0]["ms"] / row["ms"]
        psnr = ", ".join(f"{p:6.2f}" for p in row["psnr_db"])
        print(f"{graph:<8} {row['variant']:<30} {row['ms']:8.0f} ms  "
              f"{row['speedup_over_fp32']:5.2f}x  PSNR {psnr}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", required=True, help="an export folder with ONNX fp32 graphs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from f2i_mobile.core.cpu import this_cpu
    from f2i_mobile.core.manifest import Manifest
    from f2i_mobile.core.quiet import quiet_libraries
    from f2i_mobile.core.samples import CALIBRATION, HELD_OUT
    from f2i_mobile.runners import open_runner
    from f2i_mobile.runners.onnx_runner import int8_kernels_exact

    quiet_libraries()
    folder = Path(args.artifacts)
    manifest = Manifest.load(folder)
    cpu = this_cpu()
    print(f"{cpu.describe()}; int8 sums exact: {int8_kernels_exact()}; tile {manifest.tile}")
    with open_runner("onnx", folder) as runner:
        calib = tiles(runner, manifest.tile, CALIBRATION[:CALIBRATION_IMAGES])
        check = tiles(runner, manifest.tile, HELD_OUT[:CHECK_IMAGES])
        specs = runner.specs
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for graph in GRAPHS:
            results[graph] = bench_graph(folder, graph, specs[graph], calib, check, Path(work))
    write_result("onnx_int8", {
        "artifacts": str(folder), "model": manifest.model.name, "tile": manifest.tile,
        "int8_sums_exact": int8_kernels_exact(), "calibration_images":
        list(CALIBRATION[:CALIBRATION_IMAGES]), "check_images": list(HELD_OUT[:CHECK_IMAGES]),
        "runs": RUNS, "graphs": results}, args.json)


if __name__ == "__main__":
    sys.exit(guarded(main, prog="onnx_int8.py"))
