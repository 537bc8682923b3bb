"""Export time and artifact size per backend for the bundled default model, at one tile size.

    python benchmarks/export_bench.py                       # mobile default, tile 128
    python benchmarks/export_bench.py --parity --out OUT

Each backend is exported on its own (`f2i_mobile.export.pipeline.export_model`, the code
`f2i-mobile export` runs), timed wall-clock from the LoRA-merged graphs to the last artifact and
manifest on disk. `--parity` then runs every runnable artifact against torch
(`f2i_mobile.export.parity.check_all`) and adds its report. Writes
benchmarks/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from results import write_result

from f2i_mobile.core.contract import DEFAULT_BACKENDS, parse_backends
from f2i_mobile.export.pipeline import export_model


def bench(out: Path, tile: int, backends: list[str], parity: bool) -> dict:
    from f2i_mobile.core.quiet import quiet_libraries
    from f2i_mobile.models import load_model

    quiet_libraries()
    model = load_model(None)
    report = {"model": model.config.name, "config_hash": model.config.hash(),
              "origin": model.metadata.get("origin", "bundled checkpoint"), "tile": tile,
              "backends": {}}
    for name in backends:
        start = time.perf_counter()
        manifest, failures = export_model(model, out, parse_backends(name), tile=tile)
        seconds = time.perf_counter() - start
        sizes = {a.graph: a.bytes for a in manifest.artifacts
                 if a.backend == name and a.precision == "fp32"}
        report["backends"][name] = {"export_s": seconds, "bytes": sizes,
                                    "total_bytes": sum(sizes.values()),
                                    "failures": [str(f) for f in failures]}
    if parity:
        from f2i_mobile.export.parity import check_all

        parity_report = check_all(model, out)
        report["parity"] = json.loads(parity_report.to_json())
        report["parity_table"] = parity_report.table()
    return report


def format_report(report: dict) -> str:
    graphs = ("conditioner", "encoder", "unet", "decoder")
    lines = [f"model {report['model']} (config {report['config_hash']}): {report['origin']}",
             f"tile {report['tile']} (LR {report['tile']}x{report['tile']})",
             "", f"{'backend':<11}{'export s':>9}" + "".join(f"{g + ' MB':>15}" for g in graphs)
             + f"{'total MB':>10}"]
    for name, r in report["backends"].items():
        lines.append(f"{name:<11}{r['export_s']:9.1f}"
                     + "".join(f"{r['bytes'].get(g, 0) / 1e6:15.2f}" for g in graphs)
                     + f"{r['total_bytes'] / 1e6:10.2f}")
        lines += [f"  FAILED {f}" for f in r["failures"]]
    if "parity_table" in report:
        lines += ["", report["parity_table"]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--backends", default=",".join(DEFAULT_BACKENDS))
    ap.add_argument("--out", default=None, help="export folder (default: a temporary one)")
    ap.add_argument("--parity", action="store_true", help="also check every artifact")
    ap.add_argument("--json", default=None, help="results file (default: "
                    "benchmarks/results/export.json)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        report = bench(out, args.tile, args.backends.split(","), args.parity)
    print(format_report(report))
    write_result("export", report, args.json)


if __name__ == "__main__":
    main()
