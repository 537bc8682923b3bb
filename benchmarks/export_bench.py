"""Export time and artifact size per backend for the bundled default model, at one tile size.

    python benchmarks/export_bench.py                       # mobile default, tile 128
    python benchmarks/export_bench.py --parity --out OUT --json out/export_bench.json

Each backend is exported on its own (`export.pipeline.export_model`, the code `f2i-mobile export`
runs), timed wall-clock from the LoRA-merged graphs to the last artifact and manifest on disk.
With no bundled checkpoint the model is the untrained seed-0 mobile model (the output says so):
export time and size depend on the architecture, not on the weights. `--parity` then runs every
runnable artifact against torch (`export.parity.check_all`) and adds the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from f2i_mobile.export.pipeline import BACKENDS, DEFAULT_BACKENDS, export_model


def bench(out: Path, tile: int, backends: list[str], parity: bool) -> dict:
    from f2i_mobile.core.quiet import quiet_libraries
    from f2i_mobile.pipeline import load_model

    quiet_libraries()
    model = load_model(None)
    report = {"model": model.config.name, "config_hash": model.config.hash(),
              "origin": model.metadata.get("origin", "bundled checkpoint"), "tile": tile,
              "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
              "backends": {}}
    for name in backends:
        start = time.perf_counter()
        manifest, failures = export_model(model, out, [BACKENDS[name]], tile=tile)
        seconds = time.perf_counter() - start
        sizes = {a.graph: a.bytes for a in manifest.artifacts
                 if a.backend == name and a.precision == "fp32"}
        report["backends"][name] = {"export_s": seconds, "bytes": sizes,
                                    "total_bytes": sum(sizes.values()),
                                    "failures": [str(f) for f in failures]}
    if parity:
        from f2i_mobile.export.parity import check_all

        report["parity"] = [r.to_dict() for r in check_all(model, out)]
    return report


def format_report(report: dict) -> str:
    graphs = ("conditioner", "encoder", "unet", "decoder")
    lines = [f"model {report['model']} (config {report['config_hash']}): {report['origin']}",
             f"tile {report['tile']} (LR {report['tile']}x{report['tile']}), {report['machine']}",
             "", f"{'backend':<11}{'export s':>9}" + "".join(f"{g + ' MB':>15}" for g in graphs)
             + f"{'total MB':>10}"]
    for name, r in report["backends"].items():
        lines.append(f"{name:<11}{r['export_s']:9.1f}"
                     + "".join(f"{r['bytes'].get(g, 0) / 1e6:15.2f}" for g in graphs)
                     + f"{r['total_bytes'] / 1e6:10.2f}")
        lines += [f"  FAILED {f}" for f in r["failures"]]
    if "parity" in report:
        from f2i_mobile.export.parity import Parity, format_table

        lines += ["", format_table([Parity(**p) for p in report["parity"]])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--backends", default=",".join(DEFAULT_BACKENDS))
    ap.add_argument("--out", default=None, help="export folder (default: a temporary one)")
    ap.add_argument("--parity", action="store_true", help="also check every artifact")
    ap.add_argument("--json", default="out/export_bench.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        report = bench(out, args.tile, args.backends.split(","), args.parity)
    print(format_report(report))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
