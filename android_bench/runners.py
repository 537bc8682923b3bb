"""The runners the harness drives, one per runtime, behind one small interface.

    executor_runner  ExecuTorch's portable runner (examples/portable/executor_runner), built by
                     the user for the device; one process per graph, `--num_executions`.
    benchmark_model  LiteRT's benchmark tool (tflite/tools/benchmark); one process per graph.
    python           this machine's Python runtimes (ExecuTorch runtime, LiteRT interpreter,
                     ONNX Runtime) through `android_bench.worker`; one process per variant.

Each runner pushes what it needs into the transport's work folder, runs one shell line per
invocation (pinned with taskset when asked, output redirected to a log on the device), pulls the
log back, parses it and yields one `GraphResult` per graph.
"""

from __future__ import annotations

import json
import shlex
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from android_bench import formats
from android_bench.formats import Measurement
from android_bench.report import GraphResult
from android_bench.transport import BenchFault, Transport
from f2i_mobile.core.contract import BACKENDS
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import Manifest
from f2i_mobile.runners import why_not_runnable

RUNNER_TIMEOUT_S = 1800


@dataclass
class Session:
    """What every runner needs: where to run, what to run, how, and where logs go."""

    transport: Transport
    manifest: Manifest
    artifacts: Path
    logs: Path  # local folder for the runners' raw logs
    warmup: int
    runs: int
    pin_big_cores: bool = False
    cooldown_s: float = 120.0
    cooldown_poll_s: float = 10.0
    installed: dict[str, str] = field(default_factory=dict)

    @property
    def cores(self) -> list[int]:
        return self.transport.info.big_cores if self.pin_big_cores else []

    @property
    def mask(self) -> str | None:
        return formats.cpu_mask(self.cores) if self.cores else None

    @property
    def threads(self) -> int | None:
        return len(self.cores) or None

    def pinned(self, command: str) -> str:
        return f"taskset {self.mask} {command}" if self.mask else command

    def install(self, local: Path, step: str) -> str:
        """Push a runner binary once per session; returns its path on the device."""
        if str(local) not in self.installed:
            remote = f"{self.transport.work}/{local.name}"
            self.transport.push(local, remote, step)
            self.transport.must(f"chmod 755 {shlex.quote(remote)}", step)
            self.installed[str(local)] = remote
        return self.installed[str(local)]

    def fetch_log(self, remote: str, name: str, step: str) -> tuple[str, str]:
        local = self.logs / name
        self.logs.mkdir(parents=True, exist_ok=True)
        self.transport.pull(remote, local, step)
        return local.read_text(errors="replace"), local.name


def _exit(name: str, rc: int) -> str:
    """`executor_runner crashed (killed by SIGSEGV)` or `benchmark_model failed (exit 1)`."""
    if rc > 128:
        import signal

        try:
            return f"{name} crashed (killed by {signal.Signals(rc - 128).name})"
        except ValueError:
            pass
    return f"{name} failed (exit {rc})"


class Runner(ABC):
    name = ""
    backend = ""

    @abstractmethod
    def measure(self, s: Session, precision: str, graphs: list[str]) -> Iterator[GraphResult]:
        """Yield a result per graph; raise BenchFault when a run fails."""

    def result(self, s: Session, graph: str, precision: str, m: Measurement, **extra
               ) -> GraphResult:
        q = m.summary
        return GraphResult(
            graph=graph, backend=self.backend, precision=precision, runner=self.name,
            warmup=m.warmup, runs=q.runs, mean_ms=q.mean_ms, min_ms=q.min_ms,
            median_ms=q.median_ms, p90_ms=q.p90_ms, max_ms=q.max_ms, stdev_ms=q.stdev_ms,
            peak_memory_mb=m.peak_memory_mb, load_ms=m.load_ms, first_ms=m.first_ms,
            flops=s.manifest.graphs[graph].flops, threads=s.threads, cpu_mask=s.mask,
            samples_ms=m.samples_ms, notes=m.notes, **extra)


class BinaryRunner(Runner):
    """A runner binary the user built for the device, run once per graph."""

    log_tag = ""  # the logcat tag a build may log to instead of stderr

    def __init__(self, binary: Path):
        self.binary = Path(binary)

    @abstractmethod
    def command(self, binary: str, model: str, s: Session) -> str: ...

    @abstractmethod
    def parse(self, text: str, s: Session) -> Measurement: ...

    def measure(self, s: Session, precision: str, graphs: list[str]) -> Iterator[GraphResult]:
        t = s.transport
        binary = s.install(self.binary, f"push {self.name}")
        for graph in graphs:
            art = s.manifest.artifact(self.backend, graph, precision)
            what = f"{graph} ({self.backend} {precision})"
            model = f"{t.work}/{Path(art.path).name}"
            t.push(s.artifacts / art.path, model, f"push {what}")
            before = t.wait_cool(s.cooldown_s, s.cooldown_poll_s)
            name = f"{graph}.{self.backend}.{precision}.log"
            log = f"{t.work}/{name}"
            if self.log_tag:
                t.clear_logcat()
            r = t.shell(s.pinned(self.command(binary, model, s))
                        + f" > {shlex.quote(log)} 2>&1", f"run {what}", RUNNER_TIMEOUT_S)
            text, local = s.fetch_log(log, name, f"pull results of {what}")
            if self.log_tag and not formats.has_executor_runner_timings(text):
                text += t.logcat(self.log_tag)
            after = t.thermal()
            t.shell(f"rm -f {shlex.quote(model)} {shlex.quote(log)}", f"remove {what}")
            if r.rc != 0:
                raise BenchFault(t.label, f"run {what}", f"{_exit(self.name, r.rc)}: "
                                 f"{formats.last_error_line(text + r.err)}", fatal=False)
            try:
                m = self.parse(text, s)
            except ValueError as exc:
                raise BenchFault(t.label, f"run {what}", f"{exc}: "
                                 f"{formats.last_error_line(text)}", fatal=False) from None
            yield self.result(s, graph, precision, m, thermal_before=before.to_dict(),
                              thermal_after=after.to_dict(), log=local)


class ExecutorRunner(BinaryRunner):
    name = "executor_runner"
    backend = "executorch"
    log_tag = "ExecuTorch"  # the android PAL (cmake preset android-arm64-v8a) logs to logcat

    def command(self, binary: str, model: str, s: Session) -> str:
        cmd = (f"{shlex.quote(binary)} --model_path={shlex.quote(model)} "
               f"--num_executions={s.warmup + s.runs}")
        return cmd + (f" --cpu_threads={s.threads}" if s.threads else "")

    def parse(self, text: str, s: Session) -> Measurement:
        m = formats.parse_executor_runner(text, s.warmup)
        expected = s.warmup + s.runs
        got = m.warmup + m.summary.runs
        if m.samples_ms and got != expected:
            raise ValueError(f"executor_runner reported {got} executions, expected {expected}")
        return m


class BenchmarkModel(BinaryRunner):
    name = "benchmark_model"
    backend = "tflite"

    def command(self, binary: str, model: str, s: Session) -> str:
        # min_secs=0 so the run counts are exactly the ones asked for (the tool's defaults
        # would keep running for at least 1 s, and warm up for 0.5 s).
        cmd = (f"{shlex.quote(binary)} --graph={shlex.quote(model)} "
               f"--warmup_runs={s.warmup} --warmup_min_secs=0 --num_runs={s.runs} "
               f"--min_secs=0 --report_peak_memory_footprint=true")
        return cmd + (f" --num_threads={s.threads}" if s.threads else "")

    def parse(self, text: str, s: Session) -> Measurement:
        m = formats.parse_benchmark_model(text)
        if m.summary.runs < s.runs:
            m.notes.append(f"benchmark_model stopped after {m.summary.runs} of {s.runs} runs "
                           "(its --max_secs limit, 150 s by default)")
        return m


class PythonRunner(Runner):
    """The host's Python runtimes, through `python -m android_bench.worker`."""

    def __init__(self, backend: str):
        self.backend = backend
        self.name = f"python:{BACKENDS[backend].runtime}"

    def measure(self, s: Session, precision: str, graphs: list[str]) -> Iterator[GraphResult]:
        t = s.transport
        what = f"{self.backend} {precision}"
        folder = f"{t.work}/{self.backend}_{precision}"
        t.push(s.artifacts / "manifest.json", f"{folder}/manifest.json", f"push {what}")
        for graph in graphs:
            art = s.manifest.artifact(self.backend, graph, precision)
            t.push(s.artifacts / art.path, f"{folder}/{art.path}", f"push {graph} ({what})")
        before = t.wait_cool(s.cooldown_s, s.cooldown_poll_s)
        name = f"{self.backend}.{precision}.log"
        log = f"{t.work}/{name}"
        cmd = (f"{shlex.quote(sys.executable)} -m android_bench.worker "
               f"--artifacts {shlex.quote(folder)} --backend {self.backend} "
               f"--precision {precision} --graphs {','.join(graphs)} "
               f"--warmup {s.warmup} --runs {s.runs}")
        r = t.shell(s.pinned(cmd) + f" > {shlex.quote(log)} 2>&1", f"run {what}",
                    RUNNER_TIMEOUT_S)
        text, local = s.fetch_log(log, name, f"pull results of {what}")
        after = t.thermal()
        t.shell(f"rm -rf {shlex.quote(folder)} {shlex.quote(log)}", f"remove {what}")
        done = []
        for line in text.splitlines():
            if line.startswith("F2I_BENCH "):
                rec = json.loads(line[len("F2I_BENCH "):])
                done.append(rec["graph"])
                m = Measurement(formats.Summary.of(rec["samples_ms"]), rec["warmup"],
                                rec["samples_ms"], rec["open_ms"], rec["first_ms"],
                                rec["peak_rss_mb"], rec["notes"])
                yield self.result(s, rec["graph"], precision, m, thermal_before=before.to_dict(),
                                  thermal_after=after.to_dict(), log=local)
        if r.rc != 0 or len(done) < len(graphs):
            failed = next((g for g in graphs if g not in done), graphs[-1])
            raise BenchFault(t.label, f"run {failed} ({what})",
                             f"{_exit('the python worker', r.rc)}: "
                             f"{formats.last_error_line(text)}", fatal=False)


# --- choosing a runner ------------------------------------------------------------------------

_ELF_MACHINE = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}

BUILD_HELP = "see docs/bench.md, 'Building the runners for arm64'"


def check_binary(path: Path, flag: str, abi: str) -> None:
    """Fail early, in one line, on a runner binary that is missing or built for another CPU."""
    if not path.is_file():
        raise F2IError(f"{flag} {path}: no such file ({BUILD_HELP})")
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        raise F2IError(f"{flag} {path}: not an executable for Android (no ELF header); "
                       f"{BUILD_HELP}")
    arch = _ELF_MACHINE.get(int.from_bytes(head[18:20], "little"), "an unknown CPU")
    if abi and arch != abi:
        raise F2IError(f"{flag} {path}: built for {arch}, but the device's ABI is {abi}; "
                       f"rebuild it for {abi} ({BUILD_HELP})")


def device_runner(backend: str, executor_runner: Path | None, benchmark_model: Path | None
                  ) -> Runner | str:
    """The phone's runner for a backend, or why there is none."""
    if backend == "executorch":
        if executor_runner is None:
            return ("needs ExecuTorch's executor_runner built for the phone: pass "
                    f"--executor-runner PATH ({BUILD_HELP})")
        return ExecutorRunner(executor_runner)
    if backend == "tflite":
        if benchmark_model is None:
            return ("needs LiteRT's benchmark_model built for the phone: pass "
                    f"--benchmark-model PATH ({BUILD_HELP})")
        return BenchmarkModel(benchmark_model)
    if backend == "coreml":
        return "Core ML models run on Apple devices, not Android"
    return f"no phone runner for {backend} artifacts in this harness"


def host_runner(backend: str) -> Runner | str:
    """This machine's runner for a backend, or why there is none."""
    why = why_not_runnable(backend)
    return PythonRunner(backend) if why is None else why
