"""ONNX Runtime on a 1000x750 photo at several export tiles and intra-op thread counts: what the
default path (`f2i-mobile upscale` without `--backend`) builds and runs.

    python benchmarks/onnx_tiles.py                                  # tiles 128 192 224 256, threads 1 2
    python benchmarks/onnx_tiles.py --tiles 192 224 --threads 2 --exports out/tiles   # keep exports

Larger tiles with the same seam-safe overlap compute fewer LR pixels twice, but how many tiles a
photo needs jumps with its size, and the statistics pass (once per photo, on one tile) grows with
the tile. Per tile size the bundled model is exported to ONNX fp32 (`f2i-mobile export --backends
onnx --tile T`, timed; reused when `--exports DIR` already holds it); then, per thread count
(`F2I_ORT_THREADS`):
- each graph is run on its example inputs in this process, once to warm up and then `--repeats`
  times, and the fastest run counts (robust to other work on the machine); the graph seconds
  for the photo are the plan's calls times those;
- scikit-image's astronaut resized to 1000x750 is upscaled to 4000x3000 PNG through the export
  (`--backend onnx`) under `/usr/bin/time -v`: wall seconds and peak RSS, end to end.
With the plan (tiles, LR px computed per photo px) and GFLOP/s over its FLOPs. Writes
benchmarks/results/onnx_tiles.json; the machine's load average is recorded with each run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import write_result
from tiling_bench import cli, make_input, timed

SIZE = (1000, 750)


def export(tile: int, folder: Path) -> float | None:
    """Seconds to export the bundled model's ONNX graphs at `tile` into `folder`, or None when
    `folder` already holds them."""
    from f2i_mobile.core.manifest import Manifest

    if (folder / "manifest.json").is_file() and ("onnx", "fp32") in Manifest.load(folder).variants():
        return None
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "f2i_mobile.cli", "export", "--out", str(folder),
                    "--backends", "onnx", "--tile", str(tile)], check=True, capture_output=True)
    return time.perf_counter() - start


def plan_record(folder: Path) -> dict:
    from f2i_mobile.core.manifest import Manifest
    from f2i_mobile.core.planner import photo_calls

    manifest = Manifest.load(folder)
    plan, _ = photo_calls(manifest, SIZE[0] * manifest.scale, SIZE[1] * manifest.scale)
    return {"tiles": plan.count, "overlap": plan.overlap, "gflops": plan.gflops,
            "computed_per_photo_px": plan.count * plan.tile ** 2 / (SIZE[0] * SIZE[1])}


def graph_seconds(folder: Path, threads: int, repeats: int) -> dict[str, float]:
    """Per graph, the fastest of `repeats` runs through ONNX Runtime with `threads` threads."""
    from f2i_mobile.core.manifest import Manifest
    from f2i_mobile.runners import open_runner

    os.environ["F2I_ORT_THREADS"] = str(threads)  # read when each session is created
    manifest, best = Manifest.load(folder), {}
    with open_runner("onnx", folder) as runner:
        for graph, spec in manifest.graphs.items():
            inputs = spec.examples()
            runner.run(graph, inputs)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                runner.run(graph, inputs)
                times.append(time.perf_counter() - start)
            best[graph] = min(times)
            runner.release(graph)
    return best


def photo_graph_seconds(folder: Path, per_call: dict[str, float]) -> float:
    from f2i_mobile.core.manifest import Manifest
    from f2i_mobile.core.planner import photo_calls

    manifest = Manifest.load(folder)
    _, calls = photo_calls(manifest, SIZE[0] * manifest.scale, SIZE[1] * manifest.scale)
    return sum(n * per_call[g] for g, n in calls.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, nargs="+", default=[128, 192, 224, 256])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--exports", default=None, metavar="DIR",
                    help="keep (and reuse) the exports in DIR/tile<T> (default: a temporary folder)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per graph (fastest counts)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        work, exports = Path(tmp), Path(args.exports or tmp)
        src, dst = work / "photo.png", work / "photo_x4.png"
        make_input(SIZE, src)
        runs = []
        for tile in args.tiles:
            folder = exports / f"tile{tile}"
            seconds = export(tile, folder)
            record = {"tile": tile, "export_seconds": seconds, **plan_record(folder)}
            for threads in args.threads:
                per_call = graph_seconds(folder, threads, args.repeats)
                graphs = photo_graph_seconds(folder, per_call)
                load = os.getloadavg()[0]
                run = timed(cli(str(src), "-o", str(dst), "--backend", "onnx", "--artifacts",
                                str(folder)), env={"F2I_ORT_THREADS": str(threads)})
                runs.append({**record, "threads": threads, "seconds": run.seconds,
                             "peak_rss_bytes": run.peak_rss_bytes,
                             "gflops_per_s": record["gflops"] / run.seconds,
                             "graph_seconds_per_call": per_call, "graph_seconds": graphs,
                             "load_before": load, "load_after": os.getloadavg()[0]})
                print(f"tile {tile:>3}, {threads} thread(s): {run.seconds:6.1f} s end to end "
                      f"(graphs {graphs:5.1f} s at their fastest), peak RSS "
                      f"{run.peak_rss_bytes / 2**30:.2f} GiB, {record['tiles']} tiles, "
                      f"{record['computed_per_photo_px']:.2f} LR px computed per photo px, "
                      f"{runs[-1]['gflops_per_s']:.0f} GFLOP/s; load {load:.1f}", flush=True)
    best = min(runs, key=lambda r: r["seconds"])
    print(f"fastest: tile {best['tile']}, {best['threads']} thread(s), {best['seconds']:.1f} s")
    write_result("onnx_tiles", {"input": f"{SIZE[0]}x{SIZE[1]}", "output":
                                f"{SIZE[0] * 4}x{SIZE[1] * 4}", "runs": runs,
                                "fastest": {k: best[k] for k in ("tile", "threads", "seconds")}},
                 args.json)


if __name__ == "__main__":
    main()
