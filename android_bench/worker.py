"""The host's "runner binary": times graphs through a Python runtime, in its own process.

    python -m android_bench.worker --artifacts DIR --backend onnx --precision fp32 \
        --graphs conditioner,encoder,unet,decoder --warmup 3 --runs 10

The harness runs this through the host transport exactly as it runs executor_runner or
benchmark_model on a phone (work folder, taskset pinning, a log it pulls back), so the Python
runtimes (ExecuTorch runtime, LiteRT interpreter, ONNX Runtime) sit behind the same protocol, and a
runtime that crashes takes down only this process. For every graph it prints one line
`F2I_BENCH {json}` with the timed runs in milliseconds, the first (cold) run (the first
warm-up), how long opening the runner took, and the peak resident memory of this process while
the graph ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from f2i_mobile.core.manifest import Manifest
from f2i_mobile.core.memory import peak_resident, reset_peak

PREFIX = "F2I_BENCH "


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m android_bench.worker")
    p.add_argument("--artifacts", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--precision", required=True)
    p.add_argument("--graphs", required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--runs", type=int, required=True)
    args = p.parse_args(argv)

    from f2i_mobile.core.quiet import quiet_libraries
    from f2i_mobile.runners import open_runner

    quiet_libraries()
    manifest = Manifest.load(args.artifacts)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    runner = open_runner(args.backend, artifacts=args.artifacts, precision=args.precision)
    open_ms = (time.perf_counter() - start) * 1e3
    with runner:
        for graph in args.graphs.split(","):
            info = manifest.graphs[graph]
            inputs = {t.name: t.example(rng) for t in info.inputs}
            measured = reset_peak()
            times = []
            for _ in range(args.warmup + args.runs):
                t0 = time.perf_counter()
                runner.run(graph, inputs)
                times.append((time.perf_counter() - t0) * 1e3)
            # Since reset_peak: this graph's runs; unknown where the mark cannot be reset.
            peak = peak_resident() if measured else None
            record = {"graph": graph, "open_ms": open_ms, "first_ms": times[0],
                      "warmup": args.warmup, "samples_ms": times[args.warmup:],
                      "peak_rss_mb": None if peak is None else peak / 2 ** 20,
                      "notes": list(runner.notes)}
            print(PREFIX + json.dumps(record), flush=True)
            runner.release(graph)
            open_ms = None  # opening is paid once, by the first graph
    return 0


if __name__ == "__main__":
    sys.exit(main())
