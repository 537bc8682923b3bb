"""Parsers for what the device tools and the runners print.

Each parser reads one tool's real output format (tests/bench/fixtures/README.md says where each
format comes from) and returns plain values; nothing here runs a command. They are written by
hand because these are log formats meant for people, and no library parses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from android_bench.stats import Summary, sample_stdev


@dataclass
class Measurement:
    """What one runner invocation says about one graph."""

    summary: Summary
    warmup: int
    samples_ms: list[float] = field(default_factory=list)  # timed runs, when printed one by one
    load_ms: float | None = None
    first_ms: float | None = None  # the first inference (cold caches, lazy init)
    peak_memory_mb: float | None = None
    notes: list[str] = field(default_factory=list)


# --- adb ---------------------------------------------------------------------------------------

@dataclass
class AdbDevice:
    serial: str
    state: str  # device, offline, unauthorized, no permissions, recovery, ...
    attrs: dict[str, str]  # usb, product, model, device, transport_id


_ATTR = re.compile(r"(?:^|\s)(usb|product|model|device|transport_id):(\S+)")


def parse_adb_devices(text: str) -> list[AdbDevice]:
    """`adb devices [-l]`: a header line, then `serial<TAB>state` or, with -l,
    `%-22s %s` serial and state followed by `usb:... product:... model:... device:...
    transport_id:N` (adb's transport.cpp, append_transport)."""
    devices = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith(("List of devices", "*", "adb server")):
            continue
        if line.startswith("(no serial number)"):
            serial, rest = "(no serial number)", line[len("(no serial number)"):].strip()
        else:
            serial, _, rest = line.partition("\t") if "\t" in line else line.partition(" ")
            rest = rest.strip()
        if rest.startswith("no permissions"):
            state = "no permissions"
        else:
            state = rest.split(" ", 1)[0] if rest else "unknown"
        devices.append(AdbDevice(serial, state, dict(_ATTR.findall(rest))))
    return devices


# --- device properties ---------------------------------------------------------------------------

_PROP = re.compile(r"^\[(.+?)\]: \[(.*)\]$")


def parse_getprop(text: str) -> dict[str, str]:
    """`getprop` with no arguments: one `[key]: [value]` per line."""
    props = {}
    for line in text.splitlines():
        m = _PROP.match(line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    return props


def parse_meminfo(text: str) -> int | None:
    """/proc/meminfo: MemTotal in bytes."""
    m = re.search(r"^MemTotal:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def parse_cpufreq(text: str) -> dict[int, int]:
    """`grep -H . /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq`: `path:kHz` lines,
    as {cpu: max kHz}."""
    freqs = {}
    for m in re.finditer(r"/cpu(\d+)/cpufreq/cpuinfo_max_freq:(\d+)", text):
        freqs[int(m.group(1))] = int(m.group(2))
    return freqs


def big_cores(max_khz: dict[int, int]) -> list[int]:
    """The cores outside the slowest cluster (big and prime cores on big.LITTLE phones); every
    core when all clusters run at the same top frequency, or when frequencies are unknown."""
    if not max_khz:
        return []
    slowest = min(max_khz.values())
    big = [c for c, f in max_khz.items() if f > slowest]
    return sorted(big or max_khz)


def cpu_mask(cores: list[int]) -> str:
    """The hexadecimal affinity mask `taskset` takes (toybox and util-linux both read hex)."""
    return format(sum(1 << c for c in cores), "x")


# --- thermal -------------------------------------------------------------------------------------

THERMAL_STATUS = ("none", "light", "moderate", "severe", "critical", "emergency", "shutdown")
CPU_TEMPERATURE = 0  # android.os.Temperature.TYPE_CPU


@dataclass
class Thermal:
    status: int | None  # PowerManager.THERMAL_STATUS_*; None where the device has no service
    cpu_temp_c: float | None = None

    @property
    def name(self) -> str:
        if self.status is None:
            return "unknown"
        return THERMAL_STATUS[self.status] if self.status < len(THERMAL_STATUS) else str(
            self.status)

    def to_dict(self) -> dict:
        return {"status": self.status, "name": self.name, "cpu_temp_c": self.cpu_temp_c}


_TEMP = re.compile(r"Temperature\{mValue=([-\d.eE]+), mType=(-?\d+), mName=([^,]*)")


def parse_thermalservice(text: str) -> Thermal:
    """`dumpsys thermalservice` (ThermalManagerService.dump): the `Thermal Status: N` line and
    `Temperature{mValue=.., mType=.., mName=.., mStatus=..}` entries; the hottest CPU sensor."""
    m = re.search(r"^Thermal Status: (\d+)", text, re.MULTILINE)
    cpu = [float(v) for v, t, _ in _TEMP.findall(text) if int(t) == CPU_TEMPERATURE]
    return Thermal(int(m.group(1)) if m else None, max(cpu) if cpu else None)


# --- ExecuTorch executor_runner ------------------------------------------------------------------

_ET_ITER = re.compile(r"Iteration (\d+) of (\d+): ([\d.]+) ms")
_ET_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in ([\d.]+) ms")
_ET_LOAD = re.compile(r"Model loaded in ([\d.]+) ms")


def has_executor_runner_timings(text: str) -> bool:
    return bool(_ET_TOTAL.search(text) or _ET_ITER.search(text))


def parse_executor_runner(text: str, warmup: int) -> Measurement:
    """executor_runner's ET_LOG lines, from stderr (posix PAL: `I 00:00:00.001 executorch:
    executor_runner.cpp:N] msg`) or logcat (android PAL, tag ExecuTorch): the messages are found
    wherever they sit in a line. ExecuTorch >= 1.3 logs `Iteration i of n: t ms` per execution;
    older runners log only the total, which then includes the warm-up executions."""
    iters = [(int(i), float(t)) for i, _, t in _ET_ITER.findall(text)]
    total = _ET_TOTAL.search(text)
    load = _ET_LOAD.search(text)
    load_ms = float(load.group(1)) if load else None
    notes: list[str] = []
    if iters:
        times = [t for _, t in sorted(iters)]
        timed = times[warmup:]
        if not timed:
            raise ValueError(f"executor_runner printed {len(times)} iterations, all warm-up")
        return Measurement(Summary.of(timed), warmup, timed, load_ms, times[0], None, notes)
    if total:
        count, ms = int(total.group(1)), float(total.group(2))
        notes.append("this executor_runner prints only a total (ExecuTorch < 1.3): the mean "
                     "includes the warm-up executions and no spread is known")
        return Measurement(Summary(runs=count, mean_ms=ms / count), 0, [], load_ms, None, None,
                           notes)
    raise ValueError("no timing lines from executor_runner")


# --- LiteRT benchmark_model -----------------------------------------------------------------------

_KV = re.compile(r"\b(count|first|curr|min|max|avg|std|p5|median|p95)=([-\d.eE+]+|nan)")


def _stat(line: str) -> dict[str, float]:
    """One `Stat::OutputToStream` line: `count=50 first=.. curr=.. min=.. max=.. avg=.. std=..`
    (LiteRT adds ` p5=.. median=.. p95=..`); all-equal runs print `count=N curr=X(all same)`."""
    values = {k: float(v) for k, v in _KV.findall(line)}
    if "count" in values and "min" not in values and "curr" in values:
        values.update(min=values["curr"], max=values["curr"], avg=values["curr"], std=0.0)
    return values


def parse_benchmark_model(text: str) -> Measurement:
    """benchmark_model's TFLITE_LOG lines (`INFO: ...` on stdout): the stat line after each
    `Running benchmark for at least ...` (warm-up, then timed runs), `Inference timings in us:
    Init: .., First inference: .., ...`, and with --report_peak_memory_footprint `Overall peak
    memory footprint (MB) via periodic monitoring: X`. Times are in microseconds."""
    phases: list[dict[str, float]] = []
    expect_stat = False
    for line in text.splitlines():
        if "Running benchmark for at least" in line:
            expect_stat = True
        elif expect_stat and "count=" in line:
            phases.append(_stat(line))
            expect_stat = False
    if len(phases) < 2 or not phases[1].get("count"):
        raise ValueError("no timed-run statistics from benchmark_model")
    warm, run = phases[0], phases[1]
    n = int(run["count"])
    us = 1e-3
    summary = Summary(
        runs=n, mean_ms=run["avg"] * us, min_ms=run["min"] * us,
        median_ms=run["median"] * us if "median" in run else None, p90_ms=None,
        max_ms=run["max"] * us, stdev_ms=sample_stdev(run["std"], n) * us)
    m = re.search(r"Inference timings in us: Init: ([\d.eE+]+), First inference: ([\d.eE+]+)",
                  text)
    peak = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([\d.eE+]+)",
                     text)
    notes = [] if "median" in run else [
        "this benchmark_model prints no percentiles (TensorFlow Lite before LiteRT)"]
    return Measurement(summary, int(warm.get("count", 0)), [],
                       float(m.group(1)) * us if m else None,
                       float(m.group(2)) * us if m else None,
                       float(peak.group(1)) if peak else None, notes)


def last_error_line(text: str) -> str:
    """The most telling line of a failed runner's log, for a one-line message."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("E ", "F ", "ERROR:", "FATAL:")) or "rror" in ln or "ailed" in ln:
            return ln[:200]
    return lines[-1][:200] if lines else "no output"
