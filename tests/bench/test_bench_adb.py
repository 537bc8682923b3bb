"""The adb transport end to end, against a stand-in `adb` first on PATH (tests/bench/fake_adb/adb)
that records its arguments and answers in the real tools' formats (tests/bench/fixtures).
Every fault the harness promises to survive is played here; the real adb binary is checked
with no phone attached."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_manifest

from android_bench import BenchOptions, bench
from android_bench.harness import BenchIncomplete
from android_bench.report import BenchReport
from f2i_mobile.core.contract import GRAPHS
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import Artifact

FAKE_ADB = Path(__file__).parent / "fake_adb"
SERIAL = "28201FDH2004T6"
ARTIFACT_BYTES = 4096


def _elf(machine: int) -> bytes:
    head = bytearray(64)
    head[:4], head[18:20] = b"\x7fELF", machine.to_bytes(2, "little")
    return bytes(head)


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """An export folder with executorch and tflite artifacts, runner binaries built for arm64,
    and the fake adb's state folder. The artifact files are placeholders: the fake phone never
    loads them, it only stores what the harness pushes."""
    out = tmp_path / "out"
    m = make_manifest()
    for backend, ext in (("executorch", "pte"), ("tflite", "tflite")):
        for g in GRAPHS:
            rel = f"{backend}/{g}.{ext}"
            (out / backend).mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(os.urandom(ARTIFACT_BYTES))
            m.add(Artifact(backend, g, "fp32", rel, ARTIFACT_BYTES,
                           hashlib.sha256((out / rel).read_bytes()).hexdigest()))
    m.save(out)
    for name in ("executor_runner", "benchmark_model"):
        (tmp_path / name).write_bytes(_elf(183))
    state = tmp_path / "adb_state"
    (state / "root").mkdir(parents=True)
    monkeypatch.setenv("FAKE_ADB_STATE", str(state))
    monkeypatch.setenv("PATH", f"{FAKE_ADB}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ADB", raising=False)
    return tmp_path


def scenario(phone: Path, **kw) -> None:
    (phone / "adb_state" / "scenario.json").write_text(json.dumps(kw))


def options(phone: Path, **kw) -> BenchOptions:
    base = dict(artifacts=phone / "out", executor_runner=phone / "executor_runner",
                benchmark_model=phone / "benchmark_model", warmup=2, runs=5,
                json=phone / "res" / "bench.json", cooldown_s=0, cooldown_poll_s=0,
                progress=False)
    return BenchOptions(**{**base, **kw})


def calls(phone: Path) -> list[list[str]]:
    return [json.loads(line) for line in (phone / "adb_state" / "calls.jsonl").open()]


def shells(phone: Path) -> list[str]:
    return [c[3] for c in calls(phone) if c[:1] == ["-s"] and c[2] == "shell"]


def device_files(phone: Path) -> list[Path]:
    return [p for p in (phone / "adb_state" / "root").rglob("*") if p.is_file()]


def test_bench_over_adb(phone):
    scenario(phone)
    report = bench(options(phone, pin_big_cores=True))
    dev = report.device
    assert dev["model"] == "Google Pixel 7" and dev["soc"] == "Google GS201"
    assert dev["abi"] == "arm64-v8a" and dev["cores"] == 8 and dev["big_cores"] == [4, 5, 6, 7]
    assert dev["os"] == "Android 14 (API 34)" and dev["thermal"]["name"] == "none"
    assert dev["cpu_features"] == ["asimd", "asimdhp", "asimddp"]  # the dot products int8 uses
    assert [(r.backend, r.graph) for r in report.results] == (
        [("executorch", g) for g in GRAPHS] + [("tflite", g) for g in GRAPHS])
    et, tfl = report.results[0], report.results[len(GRAPHS)]
    assert et.runner == "executor_runner" and et.runs == 5 and et.warmup == 2
    assert et.median_ms == 12.987 and et.samples_ms == [12.911, 13.052, 12.874, 13.406, 12.987]
    assert tfl.runner == "benchmark_model" and tfl.median_ms == pytest.approx(13.012)
    assert tfl.peak_memory_mb == pytest.approx(41.2695)
    assert et.gflops_per_s == pytest.approx(2 / 0.012987)
    assert not report.partial and report.cleanup is None

    cmds = shells(phone)
    work = next(c for c in cmds if c.startswith("rm -rf") and "mkdir" in c).split()[2]
    assert work.startswith("/data/local/tmp/f2i_bench_")
    run_et = [c for c in cmds if "executor_runner --model_path" in c]
    run_tfl = [c for c in cmds if "benchmark_model --graph" in c]
    assert len(run_et) == len(run_tfl) == len(GRAPHS)
    assert run_et[0] == (f"taskset f0 {work}/executor_runner --model_path={work}/conditioner.pte"
                         f" --num_executions=7 --cpu_threads=4 > "
                         f"{work}/conditioner.executorch.fp32.log 2>&1")
    assert ("--warmup_runs=2 --warmup_min_secs=0 --num_runs=5 --min_secs=0 "
            "--report_peak_memory_footprint=true --num_threads=4") in run_tfl[0]
    pushes = [c for c in calls(phone) if c[2:3] == ["push"]]
    assert [Path(c[3]).name for c in pushes] == (
        ["executor_runner"] + [f"{g}.pte" for g in GRAPHS]
        + ["benchmark_model"] + [f"{g}.tflite" for g in GRAPHS])
    assert cmds[-1] == f"rm -rf {work}" and device_files(phone) == []

    saved = BenchReport.load(phone / "res" / "bench.json")
    assert saved.results[3].samples_ms == report.results[3].samples_ms
    assert (phone / "res" / "bench.png").stat().st_size > 10_000
    csv = (phone / "res" / "bench.csv").read_text().splitlines()
    assert len(csv) == 1 + 2 * len(GRAPHS)
    assert csv[0].startswith("device,graph,backend,precision,runner")
    assert (phone / "res" / "bench_logs" / "unet.tflite.fp32.log").read_text().startswith(
        "INFO: STARTING!")


def test_runner_logging_to_logcat(phone):
    """An executor_runner built with the android preset logs to logcat, not stderr."""
    scenario(phone, executor_runner="executor_runner_android_stdout.txt",
             logcat="executor_runner_logcat.txt")
    report = bench(options(phone, backends=["executorch"]))
    assert report.results[0].samples_ms == [12.911, 13.052, 12.874, 13.406, 12.987]
    seen = calls(phone)
    assert [c[2:] for c in seen if c[2:3] == ["logcat"]][:2] == [
        ["logcat", "-c"], ["logcat", "-d", "-s", "ExecuTorch:I"]]
    assert report.settings["pin_big_cores"] is False
    assert not any(c.startswith("taskset") for c in shells(phone))


def test_waits_for_a_hot_phone_to_cool(phone):
    scenario(phone, thermal=["dumpsys_thermalservice.txt", "dumpsys_thermalservice_hot.txt",
                             "dumpsys_thermalservice_hot.txt", "dumpsys_thermalservice.txt"])
    report = bench(options(phone, backends=["tflite"], cooldown_s=30))
    # open() reads once; before the first run the phone is hot twice, then cool; then one
    # reading before and one after each run
    assert report.results[0].thermal_before["name"] == "none"
    assert shells(phone).count("dumpsys thermalservice") == 1 + 2 + len(GRAPHS) * 2


def test_no_adb(phone, monkeypatch, tmp_path):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(F2IError, match="adb not found on PATH.*apt-get install adb"):
        bench(options(phone))


@pytest.mark.parametrize("devices, message", [
    ("adb_devices_l_none.txt", "no Android device attached"),
    ("adb_devices_l_states.txt", "3 devices attached .*choose one with --serial"),
])
def test_no_device_or_too_many(phone, devices, message):
    scenario(phone, devices=devices)
    with pytest.raises(F2IError, match=message):
        bench(options(phone))


@pytest.mark.parametrize("serial, message", [
    ("0A291FDD4003BK", "device 0A291FDD4003BK: unauthorized: unlock the phone and accept"),
    ("emulator-5554", "device emulator-5554: offline: reconnect"),
    ("NOSUCHPHONE", "device NOSUCHPHONE not attached"),
])
def test_unusable_device(phone, serial, message):
    scenario(phone, devices="adb_devices_l_states.txt")
    with pytest.raises(F2IError, match=message):
        bench(options(phone, serial=serial))
    assert not (phone / "res").exists()  # nothing half-written


def test_device_disconnects_mid_run(phone):
    scenario(phone, disconnect_at="unet.tflite.fp32.log")
    with pytest.raises(BenchIncomplete) as exc:
        bench(options(phone, backends=["tflite"]))
    msg = str(exc.value)
    assert msg.startswith(f"{SERIAL} (Google Pixel 7): run unet (tflite fp32): device "
                          "disconnected; partial results in")
    saved = BenchReport.load(phone / "res" / "bench.json")
    assert saved.partial and saved.error.endswith("device disconnected")
    assert [r.graph for r in saved.results] == ["conditioner", "statistics", "encoder"]
    assert "clean up" in saved.cleanup  # the phone is gone: said, not hidden


def test_device_storage_full(phone):
    # room for the runner and three models, then the phone's storage is full
    scenario(phone, full_after=4)
    with pytest.raises(BenchIncomplete, match=r"push unet \(tflite fp32\): device storage full"):
        bench(options(phone, backends=["tflite"]))
    saved = BenchReport.load(phone / "res" / "bench.json")
    assert saved.partial and len(saved.results) == 3
    assert device_files(phone) == []  # the work folder was removed


def test_runner_crash_keeps_the_rest(phone):
    scenario(phone, crash="executor_runner")
    with pytest.raises(BenchIncomplete) as exc:
        bench(options(phone))
    assert str(exc.value).startswith(
        f"{SERIAL} (Google Pixel 7): run conditioner (executorch fp32): executor_runner "
        "crashed (killed by SIGABRT): F 00:00:00.061420")
    saved = BenchReport.load(phone / "res" / "bench.json")
    assert saved.partial and saved.error is None and len(saved.failures) == 1
    assert {r.backend for r in saved.results} == {"tflite"} and len(saved.results) == len(GRAPHS)
    assert device_files(phone) == []


def test_missing_or_foreign_runner_binaries(phone):
    scenario(phone)
    report = bench(options(phone, executor_runner=None))
    assert {r.backend for r in report.results} == {"tflite"}
    (skip,) = report.skipped
    assert skip.backend == "executorch" and "--executor-runner PATH" in skip.reason
    with pytest.raises(F2IError, match="nothing to run on .*executor_runner.*benchmark_model"):
        bench(options(phone, executor_runner=None, benchmark_model=None))
    (phone / "benchmark_model").write_bytes(_elf(62))
    with pytest.raises(F2IError, match="built for x86_64, but the device's ABI is arm64-v8a"):
        bench(options(phone, executor_runner=None))
    with pytest.raises(F2IError, match="no_such_runner: no such file"):
        bench(options(phone, executor_runner=phone / "no_such_runner"))


def test_cli_one_line_errors(phone):
    scenario(phone, crash="benchmark_model")
    r = subprocess.run([sys.executable, "-m", "android_bench", "--artifacts",
                        str(phone / "out"), "--benchmark-model", str(phone / "benchmark_model"),
                        "--warmup", "2", "--runs", "5", "--json", str(phone / "r.json")],
                       capture_output=True, text=True, env=os.environ)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        f"f2i-mobile: error: {SERIAL} (Google Pixel 7): run conditioner (tflite fp32): "
        f"benchmark_model failed (exit 1): ERROR: Benchmarking failed.; partial results in "
        f"{phone / 'r.json'}")
    assert "Traceback" not in r.stderr
    assert "skipped  executorch fp32" in r.stdout and "PARTIAL" in r.stdout


def test_real_adb_without_a_phone(tmp_path):
    adb = shutil.which("adb")  # Debian's adb; .ci/run installs it on a fresh machine
    if adb is None:
        pytest.skip("adb is not installed (apt-get install adb)")
    env = {**os.environ, "ADB": adb, "ANDROID_ADB_SERVER_PORT": "5099"}
    (tmp_path / "out").mkdir()
    make_manifest().save(tmp_path / "out")
    try:
        r = subprocess.run([sys.executable, "-m", "android_bench", "--artifacts",
                            str(tmp_path / "out")], capture_output=True, text=True, env=env,
                           timeout=120)
    finally:  # stop the adb server this test started, on its own port
        subprocess.run([adb, "-P", "5099", "kill-server"], capture_output=True, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "f2i-mobile: error: no Android device attached (adb devices -l lists none): connect a "
        "phone with USB debugging on, or bench this machine with --host"]
