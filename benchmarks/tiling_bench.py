"""Large photos through the tiler under a memory budget: peak RSS, seconds per output megapixel,
and achieved GFLOP/s against this machine's matrix-product peak, all measured in one run.

    python benchmarks/tiling_bench.py                 # case a: 1000x750 -> 4000x3000
    python benchmarks/tiling_bench.py --case b        # case b: 4000x3000 -> 16000x12000 (TIFF)
    python benchmarks/tiling_bench.py --case a --case b --budget 2GiB

Each case is `f2i-mobile upscale --backend torch` in a subprocess under `/usr/bin/time -v` with
the bundled model (or the untrained seed-0 mobile model when no checkpoint is bundled; the bench
says which); benchmarks/default_path.py times the default backend and the others. The
work (GFLOPs) comes from the tile plan (`--plan`, the graphs' FLOPs counted by torch), so
GFLOP/s counts the tile overlap as work done. Without `--case b`, case b is extrapolated from
case a's GFLOP/s and b's plan. Writes benchmarks/results/tiling.json.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from results import write_result

CASES = {"a": ((1000, 750), ".png"), "b": ((4000, 3000), ".tif")}


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 torch.mm GFLOP/s on this machine, all threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def make_input(size: tuple[int, int], path: Path) -> None:
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut(), size, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), img[..., ::-1])


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "f2i_mobile.cli", "upscale", *args]


@dataclass
class Timed:
    seconds: float  # wall clock
    peak_rss_bytes: int
    stdout: str
    stderr: str


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Timed:
    """`cmd` under `/usr/bin/time -v`: wall seconds and peak resident memory (the process and
    what it waited for). Exits with the command's last lines when it fails."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-25:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.group(1).split(":"))))
    return Timed(seconds, rss_kb * 1024, proc.stdout, proc.stderr)


def run_case(name: str, budget: str, work: Path, execute: bool) -> dict:
    size, suffix = CASES[name]
    src, dst = work / f"{name}_lr.png", work / f"{name}_sr{suffix}"
    make_input(size, src)
    torch = ("--backend", "torch")
    plan = subprocess.run(cli(str(src), "-o", str(dst), *torch, "--memory-budget", budget,
                              "--plan"), capture_output=True, text=True, check=True)
    gflops = float(re.search(r"GFLOPs: ([\d.]+) in all", plan.stdout).group(1))
    result = {"case": name, "input": f"{size[0]}x{size[1]}",
              "output": f"{size[0] * 4}x{size[1] * 4}", "budget": budget, "gflops": gflops,
              "plan": plan.stdout.strip(), "warnings": plan.stderr.strip()}
    if not execute:
        return result
    run = timed(cli(str(src), "-o", str(dst), *torch, "--memory-budget", budget))
    seconds = run.seconds
    result.update(seconds=seconds, peak_rss_bytes=run.peak_rss_bytes,
                  output_bytes=dst.stat().st_size,
                  s_per_output_mp=seconds / (size[0] * size[1] * 16 / 1e6),
                  gflops_per_s=gflops / seconds)
    dst.unlink()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    ap.add_argument("--budget", default="2GiB")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    run = args.case or ["a"]
    peak = matmul_peak()
    from f2i_mobile.core.planner import parse_size

    budget = parse_size(args.budget)
    report = {"matmul_peak_gflops_per_s": peak, "cases": []}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for name in sorted(CASES):
            r = run_case(name, args.budget, Path(tmp), name in run)
            report["cases"].append(r)
    print(f"matrix-product peak (torch.mm fp32, 2048^2): {peak:.1f} GFLOP/s")
    done = [r for r in report["cases"] if "seconds" in r]
    for r in report["cases"]:
        print(f"\ncase {r['case']}: {r['input']} -> {r['output']}, "
              f"{r['gflops']:.0f} GFLOPs planned")
        print("  " + r["plan"].replace("\n", "\n  "))
        if r["warnings"]:
            print("  " + r["warnings"].replace("\n", "\n  "))
        if "seconds" in r:
            under = "under" if r["peak_rss_bytes"] <= budget else "OVER"
            print(f"  {r['seconds']:.1f} s, {r['s_per_output_mp']:.2f} s per output MP, peak RSS "
                  f"{r['peak_rss_bytes'] / 2**30:.2f} GiB ({under} the {args.budget} budget), "
                  f"{r['gflops_per_s']:.1f} GFLOP/s = "
                  f"{r['gflops_per_s'] / peak:.0%} of the matrix-product peak")
        elif done:
            rate = done[0]["gflops_per_s"]
            r["extrapolated_seconds"] = r["gflops"] / rate
            print(f"  not run; at case {done[0]['case']}'s {rate:.1f} GFLOP/s it would take about "
                  f"{r['extrapolated_seconds'] / 60:.0f} min")
    write_result("tiling", report, args.json)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
