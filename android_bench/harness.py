"""`bench()`: measure every runnable backend and precision of an export on one device.

    manifest -> device (adb or host) -> for each (backend, precision): its runner -> per graph
    results -> end-to-end estimate from the tile plan -> JSON, CSV, plot (always, even partial)

A fault that leaves the device unusable (gone, full) stops the run; a runner that fails gives up
its own variant and the run goes on. Either way the results so far are written, marked partial,
the device's work folder is removed, and the fault comes back as one line naming the device and
the step.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from android_bench import plan, runners
from android_bench.report import BenchReport, EndToEnd, Skipped, set_speedups
from android_bench.transport import AdbTransport, BenchFault, HostTransport, Transport
from f2i_mobile.core.contract import BACKENDS, GRAPHS
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import Manifest


@dataclass
class BenchOptions:
    artifacts: Path
    serial: str | None = None
    host: bool = False
    backends: list[str] | None = None
    runs: int = 10
    warmup: int = 3
    json: Path | None = None  # default: bench-<device>.json here; CSV and PNG beside it
    plot: Path | None = None
    executor_runner: Path | None = None
    benchmark_model: Path | None = None
    pin_big_cores: bool = False
    cooldown_s: float = 120.0
    cooldown_poll_s: float = 10.0
    photo: tuple[int, int] = plan.PHOTO_12MP
    progress: bool = True


def _check(o: BenchOptions) -> None:
    if o.runs < 1 or o.warmup < 0:
        raise F2IError(f"--runs must be >= 1 and --warmup >= 0 (got {o.runs}, {o.warmup})")
    if o.host and o.serial:
        raise F2IError("--host and --serial exclude each other")
    unknown = sorted(set(o.backends or []) - set(BACKENDS))
    if unknown:
        raise F2IError(f"unknown backend(s) {', '.join(unknown)}; choose from "
                       f"{', '.join(BACKENDS)}")


def bench(o: BenchOptions) -> BenchReport:
    """Run the bench and write its JSON, CSV and plot; raises F2IError (one line) after writing
    partial results when a fault stopped or cut short the run."""
    _check(o)
    artifacts = Path(o.artifacts)
    manifest = Manifest.load(artifacts)
    transport: Transport = HostTransport() if o.host else AdbTransport(o.serial)
    info = transport.open()
    json_path = Path(o.json or f"bench-{_slug(info.serial)}.json")
    paths = {"json": json_path, "csv": json_path.with_suffix(".csv"),
             "plot": Path(o.plot or json_path.with_suffix(".png")),
             "logs": json_path.with_name(json_path.stem + "_logs")}
    variants = [(b, p) for b, p in manifest.variants()
                if o.backends is None or b in o.backends]
    session = runners.Session(transport, manifest, artifacts, paths["logs"], o.warmup, o.runs,
                              o.pin_big_cores, o.cooldown_s, o.cooldown_poll_s)
    report = BenchReport(
        device=info.to_dict(), transport=transport.kind,
        settings={"warmup": o.warmup, "runs": o.runs, "pin_big_cores": o.pin_big_cores,
                  "cpu_mask": session.mask, "threads": session.threads,
                  "photo": list(o.photo)},
        model={**asdict(manifest.model), "tile": manifest.tile, "output_tile": manifest.output_tile,
               "batch": manifest.batch, "artifacts": str(artifacts)},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if not variants:
        have = sorted({a.backend for a in manifest.artifacts})
        raise F2IError(f"{artifacts}: no complete backend/precision to bench"
                       + (f" among {', '.join(o.backends)}" if o.backends else "")
                       + f" (manifest has: {', '.join(have) or 'no artifacts'})")
    todo = _choose_runners(variants, report, o, info.abi)
    if not todo:
        why = "; ".join(f"{s.backend} {s.precision}: {s.reason}" for s in report.skipped)
        raise F2IError(f"nothing to run on {info.label}: {why}")
    try:
        _measure(session, todo, report, o)
    except BaseException as exc:  # an interrupt or a bug: still write what was measured
        report.error = report.error or (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else
            f"{info.label}: {type(exc).__name__}: {exc}")
        raise
    finally:
        report.cleanup = transport.cleanup()
        _end_to_end(report, manifest, o.photo)
        report.partial = bool(report.error or report.failures)
        write_outputs(report, paths)
    if report.partial:
        first = report.error or report.failures[0]
        raise BenchIncomplete(f"{first}; partial results in {paths['json']}", report)
    return report


class BenchIncomplete(F2IError):
    """The run was stopped or cut short; `report` holds what was measured (already written)."""

    def __init__(self, message: str, report: BenchReport):
        super().__init__(message)
        self.report = report


def _choose_runners(variants: list[tuple[str, str]], report: BenchReport, o: BenchOptions,
                    abi: str) -> list[tuple[runners.Runner, str]]:
    todo = []
    for backend, precision in variants:
        r = (runners.host_runner(backend) if o.host else
             runners.device_runner(backend, o.executor_runner, o.benchmark_model))
        if isinstance(r, str):
            report.skipped.append(Skipped(backend, precision, r))
            continue
        if isinstance(r, runners.BinaryRunner):
            flag = "--executor-runner" if r.backend == "executorch" else "--benchmark-model"
            runners.check_binary(r.binary, flag, abi)
        todo.append((r, precision))
    return todo


def _measure(s: runners.Session, todo: list[tuple[runners.Runner, str]], report: BenchReport,
             o: BenchOptions) -> None:
    t = s.transport
    work = f"/data/local/tmp/f2i_bench_{os.getpid()}" if t.kind == "adb" else None
    try:
        t.prepare(work)
        bar = tqdm(total=len(todo) * len(GRAPHS), desc=f"bench {t.label}", unit="graph",
                   disable=not o.progress, leave=False)
        with bar:
            for runner, precision in todo:
                try:
                    for result in runner.measure(s, precision, list(GRAPHS)):
                        report.results.append(result)
                        bar.update()
                except BenchFault as fault:
                    if fault.fatal:
                        raise
                    report.failures.append(str(fault))
    except BenchFault as fault:
        report.error = str(fault)


def _end_to_end(report: BenchReport, manifest: Manifest, photo: tuple[int, int]) -> None:
    width, height = photo
    p = plan.photo_plan(manifest, width, height)
    by_variant: dict[tuple[str, str], dict] = {}
    for r in report.results:
        by_variant.setdefault((r.backend, r.precision), {})[r.graph] = r
    for (backend, precision), graphs in by_variant.items():
        if set(graphs) != set(GRAPHS):
            continue
        seconds = sum(p.calls[g] * graphs[g].typical_ms for g in GRAPHS) / 1e3
        flop = sum(p.calls[g] * manifest.graphs[g].flops for g in GRAPHS)
        report.end_to_end.append(EndToEnd(
            backend, precision, width, height, p.tiles, dict(p.calls), seconds,
            seconds / (width * height / 1e6), flop / 1e9, flop / 1e9 / seconds, p.source))
    set_speedups(report.end_to_end)


def write_outputs(report: BenchReport, paths: dict[str, Path]) -> None:
    from android_bench.plot import plot_report

    report.files = {"json": str(paths["json"]), "csv": str(paths["csv"])}
    if report.results:
        report.files["plot"] = str(paths["plot"])
    if paths["logs"].is_dir():
        report.files["logs"] = str(paths["logs"])
    report.save_json(paths["json"])
    report.save_csv(paths["csv"])
    if report.results:
        plot_report(report, paths["plot"])


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s) or "device"
