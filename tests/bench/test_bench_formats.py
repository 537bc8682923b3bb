"""The bench's parsers on the real tools' formats (tests/bench/fixtures), and its statistics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from android_bench import formats
from android_bench.compare import compare, format_comparison
from android_bench.report import BenchReport, EndToEnd, GraphResult, format_report, set_speedups
from android_bench.stats import Summary, compare_summaries
from f2i_mobile.core.cpu import parse_cpuinfo

FIX = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIX / name).read_text()


def test_adb_devices_long_listing():
    (d,) = formats.parse_adb_devices(fixture("adb_devices_l.txt"))
    assert (d.serial, d.state) == ("28201FDH2004T6", "device")
    assert d.attrs == {"usb": "2-1", "product": "panther", "model": "Pixel_7",
                       "device": "panther", "transport_id": "3"}
    states = {d.serial: d.state for d in formats.parse_adb_devices(
        fixture("adb_devices_l_states.txt"))}
    assert states == {"0A291FDD4003BK": "unauthorized", "28201FDH2004T6": "device",
                      "emulator-5554": "offline"}
    assert formats.parse_adb_devices(fixture("adb_devices_l_none.txt")) == []
    # the short listing and a no-permissions state, whose name has spaces
    short = formats.parse_adb_devices(
        "List of devices attached\nABC\tdevice\nXYZ\tno permissions (user in plugdev group; "
        "are your udev rules wrong?); see [http://developer.android.com/tools/device.html]\n")
    assert [(d.serial, d.state) for d in short] == [("ABC", "device"),
                                                    ("XYZ", "no permissions")]


def test_device_properties():
    props = formats.parse_getprop(fixture("getprop.txt"))
    assert props["ro.product.model"] == "Pixel 7"
    assert props["ro.product.cpu.abilist32"] == ""
    cpu = parse_cpuinfo(fixture("proc_cpuinfo.txt"))
    assert cpu.cores == 8 and "asimddp" in cpu.features and "avx2" not in cpu.features
    assert formats.parse_meminfo(fixture("proc_meminfo.txt")) == 7869428 * 1024
    freq = formats.parse_cpufreq(fixture("cpufreq_max.txt"))
    assert freq[0] == 1803000 and freq[7] == 2850000
    assert formats.big_cores(freq) == [4, 5, 6, 7]
    assert formats.cpu_mask([4, 5, 6, 7]) == "f0"
    assert formats.big_cores({0: 2000, 1: 2000}) == [0, 1]  # one cluster: every core
    assert formats.cpu_mask([0, 9]) == "201"


def test_thermal():
    cool = formats.parse_thermalservice(fixture("dumpsys_thermalservice.txt"))
    hot = formats.parse_thermalservice(fixture("dumpsys_thermalservice_hot.txt"))
    assert (cool.status, cool.name, cool.cpu_temp_c) == (0, "none", 46.4)
    assert (hot.status, hot.name, hot.cpu_temp_c) == (2, "moderate", 78.9)
    assert formats.parse_thermalservice("").status is None


def test_executor_runner_per_iteration():
    m = formats.parse_executor_runner(fixture("executor_runner.txt"), warmup=2)
    timed = [12.911, 13.052, 12.874, 13.406, 12.987]
    assert m.samples_ms == timed and m.warmup == 2
    assert m.first_ms == 14.213 and m.load_ms == 36.487
    s = m.summary
    assert s.runs == 5 and s.median_ms == 12.987 and s.min_ms == 12.874 and s.max_ms == 13.406
    assert s.mean_ms == pytest.approx(np.mean(timed))
    assert s.p90_ms == pytest.approx(np.percentile(timed, 90))
    assert s.stdev_ms == pytest.approx(np.std(timed, ddof=1))
    # the android PAL build logs to logcat: the same numbers from the threadtime format
    lc = formats.parse_executor_runner(fixture("executor_runner_logcat.txt"), warmup=2)
    assert lc.samples_ms == timed and lc.load_ms == 36.487
    assert not formats.has_executor_runner_timings(fixture("executor_runner_android_stdout.txt"))


def test_executor_runner_old_and_failed():
    old = formats.parse_executor_runner(fixture("executor_runner_v1.0.txt"), warmup=2)
    assert old.summary.runs == 7 and old.summary.mean_ms == pytest.approx(92.548 / 7)
    assert old.summary.stdev_ms is None and old.summary.median_ms is None and old.notes
    with pytest.raises(ValueError):
        formats.parse_executor_runner(fixture("executor_runner_crash.txt").replace(
            "Iteration", "x"), warmup=0)
    assert "Execution of method forward failed" in formats.last_error_line(
        fixture("executor_runner_crash.txt"))


def test_benchmark_model_litert():
    m = formats.parse_benchmark_model(fixture("benchmark_model.txt"))
    s = m.summary
    assert m.warmup == 2 and s.runs == 5
    assert s.mean_ms == pytest.approx(13.0666) and s.median_ms == pytest.approx(13.012)
    assert (s.min_ms, s.max_ms) == (pytest.approx(12.876), pytest.approx(13.391))
    assert s.p90_ms is None  # benchmark_model prints p5/median/p95, not p90: not guessed
    assert s.stdev_ms == pytest.approx(0.178 * np.sqrt(5 / 4))  # population -> sample
    assert m.load_ms == pytest.approx(48.213) and m.first_ms == pytest.approx(15.121)
    assert m.peak_memory_mb == pytest.approx(41.2695)


def test_benchmark_model_tensorflow_format():
    m = formats.parse_benchmark_model(fixture("benchmark_model_tf2.txt"))
    assert m.warmup == 1 and m.summary.runs == 8
    assert m.summary.median_ms is None and m.summary.mean_ms == pytest.approx(20.0979)
    assert m.peak_memory_mb is None and m.notes
    with pytest.raises(ValueError):
        formats.parse_benchmark_model(fixture("benchmark_model_crash.txt"))
    assert formats.last_error_line(fixture("benchmark_model_crash.txt")) == (
        "ERROR: Benchmarking failed.")


def _report(samples: dict[str, list[float]], label: str = "dev") -> dict:
    results = []
    for graph, s in samples.items():
        q = Summary.of(s)
        results.append(GraphResult(graph, "onnx", "fp32", "python:onnxruntime", 1, q.runs,
                                   q.mean_ms, q.min_ms, q.median_ms, q.p90_ms, q.max_ms,
                                   q.stdev_ms, samples_ms=s))
    return BenchReport(device={"label": label}, transport="host", settings={}, model={},
                       results=results).to_dict()


def test_compare_separates_change_from_noise(tmp_path):
    rng = np.random.default_rng(0)
    base = {g: list(10 + rng.normal(0, 0.3, 20)) for g in ("encoder", "unet", "decoder")}
    again = {g: list(10 + rng.normal(0, 0.3, 20)) for g in base}  # same speed, new noise
    again["unet"] = list(13 + rng.normal(0, 0.3, 20))  # 30 % slower
    again["decoder"] = list(8 + rng.normal(0, 0.3, 20))  # 20 % faster
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_report(base)))
    b.write_text(json.dumps(_report(again)))
    verdicts = {k[2]: ch.verdict for k, ch in compare(a, b).rows}
    assert verdicts == {"encoder": "within noise", "unet": "slower", "decoder": "faster"}
    text = format_comparison(compare(a, b))
    assert "slower" in text and "faster" in text and "within noise" in text
    # a noisy run hides the same mean shift
    noisy = {g: list(13 + rng.normal(0, 6, 5)) for g in base}
    b.write_text(json.dumps(_report(noisy)))
    assert compare(a, b).rows[1][1].verdict == "within noise"


def test_compare_without_spread_gives_no_verdict():
    a, b = Summary(runs=7, mean_ms=10.0), Summary(runs=7, mean_ms=12.0)
    ch = compare_summaries(a, b)
    assert ch.p_value is None and ch.verdict == "no spread reported" and not ch.significant


def test_compare_cli_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = subprocess.run([sys.executable, "-m", "android_bench", "compare", str(bad), str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "not a bench result" in r.stderr and "Traceback" not in r.stderr


def test_end_to_end_reports_each_precision_against_its_own_backends_fp32():
    """The speed-up column divides by the same backend's fp32, never another runtime's; a
    variant whose backend has no fp32 in the run gets none rather than a guess."""
    def row(backend, precision, seconds):
        return EndToEnd(backend, precision, 4000, 3000, 80, {}, seconds, seconds / 12, 1.0,
                        1.0, "plan")

    rows = [row("onnx", "fp32", 60.0), row("onnx", "w8a8", 40.0), row("tflite", "fp32", 90.0),
            row("tflite", "w8a8", 60.0), row("executorch", "w8a8", 30.0)]
    set_speedups(rows)
    assert [r.speedup_over_fp32 for r in rows] == [None, 1.5, None, 1.5, None]
    report = BenchReport(device={"label": "dev"}, transport="host", settings={}, model={},
                         end_to_end=rows)
    lines = format_report(report).splitlines()
    assert "vs fp32" in next(x for x in lines if x.startswith("backend"))
    assert next(x for x in lines if x.startswith("onnx       w8a8")).endswith("1.50x")
    assert BenchReport.from_dict(report.to_dict()).end_to_end[1].speedup_over_fp32 == 1.5
