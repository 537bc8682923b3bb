"""The result record and the report: JSON (the source of truth), CSV and a table for people.

One `GraphResult` per graph, backend and precision; an `EndToEnd` per backend and precision that has
all four graphs: their medians combined with the tile plan of a 12 MP photo.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from f2i_mobile.core.atomic import atomic_file
from f2i_mobile.core.errors import F2IError

FORMAT = "f2i-mobile-bench/1"


@dataclass
class GraphResult:
    graph: str
    backend: str
    precision: str
    runner: str
    warmup: int
    runs: int
    mean_ms: float
    min_ms: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    max_ms: float | None = None
    stdev_ms: float | None = None
    peak_memory_mb: float | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    flops: int = 0  # per call, from the manifest
    threads: int | None = None
    cpu_mask: str | None = None
    thermal_before: dict | None = None
    thermal_after: dict | None = None
    samples_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log: str | None = None  # the runner's raw log, next to the JSON

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.backend, self.precision, self.graph)

    @property
    def typical_ms(self) -> float:
        return self.median_ms if self.median_ms is not None else self.mean_ms

    @property
    def gflops_per_s(self) -> float | None:
        return self.flops / (self.typical_ms * 1e-3) / 1e9 if self.flops else None

    def summary(self):
        from android_bench.stats import Summary

        return Summary(self.runs, self.mean_ms, self.min_ms, self.median_ms, self.p90_ms,
                       self.max_ms, self.stdev_ms)


@dataclass
class EndToEnd:
    backend: str
    precision: str
    width: int
    height: int
    tiles: int
    calls: dict[str, int]  # graph -> invocations per photo (tiles / batch)
    seconds_per_photo: float
    seconds_per_megapixel: float
    gflop_per_photo: float
    achieved_gflops_per_s: float
    plan: str  # which planner made the plan
    # fp32 seconds / these seconds, the same backend's fp32 timed in the same run (None for fp32
    # itself, or when the run has no fp32 of this backend)
    speedup_over_fp32: float | None = None


@dataclass
class Skipped:
    backend: str
    precision: str
    reason: str


@dataclass
class BenchReport:
    device: dict
    transport: str
    settings: dict
    model: dict
    results: list[GraphResult] = field(default_factory=list)
    end_to_end: list[EndToEnd] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # runner failures (the run went on)
    error: str | None = None  # the fault that stopped the run
    partial: bool = False
    cleanup: str | None = None  # why the work folder could not be removed, if it could not
    files: dict[str, str] = field(default_factory=dict)  # json, csv, plot, logs as written
    created: str = ""
    format: str = FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BenchReport:
        d = dict(d)
        d["results"] = [GraphResult(**r) for r in d.get("results", [])]
        d["end_to_end"] = [EndToEnd(**e) for e in d.get("end_to_end", [])]
        d["skipped"] = [Skipped(**s) for s in d.get("skipped", [])]
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> BenchReport:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise F2IError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise F2IError(f"{path}: not a bench result (invalid JSON: {exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise F2IError(f"{path}: not a bench result (expected format {FORMAT})")
        try:
            return cls.from_dict(d)
        except TypeError as exc:
            raise F2IError(f"{path}: malformed bench result ({exc})") from None

    def save_json(self, path: Path) -> None:
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def save_csv(self, path: Path) -> None:
        names = [f.name for f in fields(GraphResult) if f.name not in ("samples_ms", "notes",
                                                                       "thermal_before",
                                                                       "thermal_after")]
        with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["device", *names, "gflops_per_s", "thermal_before", "thermal_after"])
            for r in self.results:
                w.writerow([self.device.get("label", ""), *(getattr(r, n) for n in names),
                            r.gflops_per_s,
                            (r.thermal_before or {}).get("name", ""),
                            (r.thermal_after or {}).get("name", "")])


def set_speedups(rows: list[EndToEnd]) -> None:
    """Each reduced-precision variant's photo time against its own backend's fp32 from the
    same run: what the runtime's int8 (or fp16) kernels give on this device, with the machine's
    load and clocks shared by both."""
    fp32 = {e.backend: e.seconds_per_photo for e in rows if e.precision == "fp32"}
    for e in rows:
        if e.precision != "fp32" and e.backend in fp32:
            e.speedup_over_fp32 = fp32[e.backend] / e.seconds_per_photo


def _fmt(v, digits: int = 4) -> str:
    """Significant digits, so 0.047 ms and 1234 ms both read well."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _thermal(t: dict | None) -> str:
    if not t:
        return "-"
    temp = f" {t['cpu_temp_c']:.0f}C" if t.get("cpu_temp_c") is not None else ""
    return (t["name"] if t.get("status") is not None else "") + temp or "-"


def format_report(r: BenchReport) -> str:
    d = r.device
    ram = f"{d['ram_bytes'] / 2**30:.1f} GiB" if d.get("ram_bytes") else "? GiB"
    big = d.get("big_cores") or []
    lines = [f"device   {d.get('label', '?')}: {d.get('soc', '')}, {d.get('os', '')}, "
             f"{d.get('abi', '')}, {d.get('cores', '?')} cores, {ram}"
             + (f"; {' '.join(d['cpu_features'])}" if d.get("cpu_features") else ""),
             f"settings {r.settings.get('warmup')} warm-up + {r.settings.get('runs')} timed runs"
             + (f", pinned to cores {big} (mask {r.settings.get('cpu_mask')})"
                if r.settings.get("pin_big_cores") else ", not pinned"),
             ""]
    head = (f"{'graph':<12} {'backend':<10} {'precision':<9} {'runs':>4} {'median':>9} "
            f"{'mean':>9} {'p90':>9} {'min':>9} {'max':>9} {'stdev':>7} {'peak MB':>8} "
            f"{'GFLOP/s':>8}  thermal")
    lines += [head + "   (times in ms)", "-" * len(head)]
    for x in r.results:
        th = _thermal(x.thermal_after or x.thermal_before)
        lines.append(f"{x.graph:<12} {x.backend:<10} {x.precision:<9} {x.runs:>4} "
                     f"{_fmt(x.median_ms):>9} {_fmt(x.mean_ms):>9} {_fmt(x.p90_ms):>9} "
                     f"{_fmt(x.min_ms):>9} {_fmt(x.max_ms):>9} {_fmt(x.stdev_ms, 3):>7} "
                     f"{_fmt(x.peak_memory_mb, 3):>8} {_fmt(x.gflops_per_s, 3):>8}  {th}")
    if not r.results:
        lines.append("(no results)")
    if r.end_to_end:
        e0 = r.end_to_end[0]
        lines += ["", f"end to end: one {e0.width}x{e0.height} photo "
                      f"({e0.width * e0.height / 1e6:.1f} MP), {e0.tiles} tiles, medians x calls "
                      f"({e0.plan})",
                  f"{'backend':<10} {'precision':<9} {'s/photo':>9} {'s/MP':>8} "
                  f"{'GFLOP/photo':>12} {'GFLOP/s':>9} {'vs fp32':>8}"]
        for e in r.end_to_end:
            gain = "-" if e.speedup_over_fp32 is None else f"{e.speedup_over_fp32:.2f}x"
            lines.append(f"{e.backend:<10} {e.precision:<9} {e.seconds_per_photo:>9.2f} "
                         f"{e.seconds_per_megapixel:>8.3f} {e.gflop_per_photo:>12.1f} "
                         f"{e.achieved_gflops_per_s:>9.1f} {gain:>8}")
    for s in r.skipped:
        lines.append(f"skipped  {s.backend} {s.precision}: {s.reason}")
    for f in r.failures:
        lines.append(f"failed   {f}")
    for note in sorted({(x.backend, x.precision, n) for x in r.results for n in x.notes}):
        lines.append(f"note     {note[0]} {note[1]}: {note[2]}")
    if r.partial:
        lines.append(f"PARTIAL  {r.error or 'some runs failed'}")
    return "\n".join(lines)
