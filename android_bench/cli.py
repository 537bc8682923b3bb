"""The bench's command line, shared by `f2i-mobile bench` and `python -m android_bench`.

    bench --artifacts OUT [--serial ID | --host] [--backends B ...] [--runs N] [--warmup N]
          [--json FILE] [--plot FILE] [--executor-runner PATH] [--benchmark-model PATH]
          [--pin-big-cores] [--cooldown S]
    bench compare A.json B.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from f2i_mobile.core.errors import guarded

DESCRIPTION = ("Time every graph of an export per backend and precision on a phone over adb "
               "(executor_runner, benchmark_model) or on this machine (--host: ExecuTorch "
               "runtime, LiteRT interpreter, ONNX Runtime); write JSON, CSV and a plot; "
               "estimate a 12 MP photo. 'bench compare A.json B.json' shows the change between "
               "two runs, noise aware.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", type=Path, default=None,
                   help="an export folder (with manifest.json), from f2i-mobile export")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--serial", default=None,
                       help="the phone's adb serial (default: the only one attached)")
    where.add_argument("--host", action="store_true",
                       help="bench this machine with its Python runtimes instead of a phone")
    p.add_argument("--backends", nargs="+", default=None, metavar="BACKEND",
                   help="executorch, tflite, onnx, coreml (default: every one in the manifest)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per graph (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs per graph (default 3)")
    p.add_argument("--json", type=Path, default=None,
                   help="results file (default bench-<device>.json); the CSV, the plot and "
                        "the runners' logs go beside it")
    p.add_argument("--plot", type=Path, default=None, help="plot file (default: JSON name .png)")
    p.add_argument("--executor-runner", type=Path, default=None, metavar="PATH",
                   help="ExecuTorch's executor_runner built for the phone")
    p.add_argument("--benchmark-model", type=Path, default=None, metavar="PATH",
                   help="LiteRT's benchmark_model built for the phone")
    p.add_argument("--pin-big-cores", action="store_true",
                   help="run on the big cores only (taskset; mask from cpufreq max "
                        "frequencies) with one thread per big core")
    p.add_argument("--cooldown", type=float, default=120.0, metavar="S",
                   help="wait up to S seconds before a run while the device reports "
                        "moderate or worse thermal throttling (default 120)")
    sub = p.add_subparsers(dest="action", metavar="compare")
    c = sub.add_parser("compare", help="the change between two bench results, noise aware")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--alpha", type=float, default=0.01,
                   help="significance level of Welch's t-test (default 0.01)")


def main(argv: list[str] | None = None) -> int:
    """`python -m android_bench`: the bench alone, without the rest of the toolkit."""
    from f2i_mobile.core.quiet import quiet_libraries

    quiet_libraries()
    parser = argparse.ArgumentParser(prog="python -m android_bench", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return guarded(lambda: run(args))


def run(args) -> int:
    from f2i_mobile.core.errors import F2IError

    if args.action == "compare":
        from android_bench.compare import compare, format_comparison

        print(format_comparison(compare(args.before, args.after, alpha=args.alpha)))
        return 0
    if args.artifacts is None:
        raise F2IError("bench needs --artifacts OUT (an export folder); or use "
                       "'bench compare A.json B.json'")
    from android_bench.harness import BenchIncomplete, BenchOptions, bench
    from android_bench.report import format_report

    options = BenchOptions(
        artifacts=args.artifacts, serial=args.serial, host=args.host, backends=args.backends,
        runs=args.runs, warmup=args.warmup, json=args.json, plot=args.plot,
        executor_runner=args.executor_runner, benchmark_model=args.benchmark_model,
        pin_big_cores=args.pin_big_cores, cooldown_s=args.cooldown)
    try:
        report = bench(options)
    except BenchIncomplete as exc:  # show what was measured, then the one-line error
        print(format_report(exc.report))
        raise
    print(format_report(report))
    print("wrote " + ", ".join(report.files.values()))
    return 0
