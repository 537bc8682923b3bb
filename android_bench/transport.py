"""Where the runners run: a phone over adb, or this machine. Both speak one protocol.

    open()      find the device and read it (SoC, Android, ABI, cores, RAM, thermal state)
    prepare()   make a fresh work folder
    push()      copy an artifact or a runner binary into the work folder
    shell()     run one shell command line there (runner, taskset pinning, log redirection)
    pull()      copy a runner's log back
    thermal()   read the thermal state between runs
    cleanup()   remove the work folder (always; never raises)

Every failure is a `BenchFault` naming the device and the step. A device that went away (or a
full disk) is fatal to the whole run; a runner that failed is not.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

from android_bench import formats
from android_bench.formats import Thermal
from f2i_mobile.core.cpu import parse_cpuinfo, this_cpu
from f2i_mobile.core.errors import F2IError

SHELL_TIMEOUT_S = 120
PUSH_TIMEOUT_S = 1200


class BenchFault(F2IError):
    """One line: `device: step: problem`. `fatal` stops the run (the device is gone or full);
    otherwise only the variant being measured is given up."""

    def __init__(self, device: str, step: str, problem: str, fatal: bool = True):
        super().__init__(f"{device}: {step}: {problem}")
        self.device, self.step, self.problem, self.fatal = device, step, problem, fatal


@dataclass
class DeviceInfo:
    kind: str  # android or host
    serial: str
    model: str
    soc: str
    os: str
    abi: str
    cores: int
    ram_bytes: int | None
    cpu_max_khz: dict[int, int] = field(default_factory=dict)
    big_cores: list[int] = field(default_factory=list)
    cpu_features: list[str] = field(default_factory=list)  # core.cpu.FEATURES it has
    thermal: dict | None = None

    @property
    def label(self) -> str:
        return f"{self.serial} ({self.model})" if self.model else self.serial

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label,
                "cpu_max_khz": {str(k): v for k, v in self.cpu_max_khz.items()}}


@dataclass
class ShellResult:
    rc: int
    out: str
    err: str


class Transport(ABC):
    kind = ""
    info: DeviceInfo
    work: str = ""  # the work folder on the device

    @property
    def label(self) -> str:
        return self.info.label if hasattr(self, "info") else self.kind

    @abstractmethod
    def open(self) -> DeviceInfo: ...

    @abstractmethod
    def shell(self, command: str, step: str, timeout: float = SHELL_TIMEOUT_S) -> ShellResult:
        """Run a `sh` command line on the device; a non-zero exit is returned, not raised."""

    @abstractmethod
    def push(self, local: Path, remote: str, step: str) -> None: ...

    @abstractmethod
    def pull(self, remote: str, local: Path, step: str) -> None: ...

    @abstractmethod
    def thermal(self) -> Thermal: ...

    def logcat(self, tag: str) -> str:
        """Log lines a runner sent to the system log instead of stderr (Android only)."""
        return ""

    def clear_logcat(self) -> None:
        pass

    def prepare(self, work: str) -> str:
        self.work = work
        self.must(f"rm -rf {shlex.quote(work)} && mkdir -p {shlex.quote(work)}",
                  "make the work folder")
        return work

    def must(self, command: str, step: str) -> str:
        r = self.shell(command, step)
        if r.rc != 0:
            raise BenchFault(self.label, step, (r.err or r.out).strip() or f"exit {r.rc}")
        return r.out

    def cleanup(self) -> str | None:
        """Remove the work folder; returns why that failed, or None."""
        if not self.work:
            return None
        try:
            self.must(f"rm -rf {shlex.quote(self.work)}", "clean up")
            return None
        except (BenchFault, OSError) as exc:
            return str(exc)

    def wait_cool(self, limit_s: float, poll_s: float = 10.0) -> Thermal:
        """Wait (up to `limit_s`) while the device reports moderate or worse throttling, so a
        run does not start hot; returns the state the run starts with."""
        state = self.thermal()
        deadline = time.monotonic() + limit_s
        while state.status is not None and state.status >= 2 and time.monotonic() < deadline:
            time.sleep(poll_s)
            state = self.thermal()
        return state


# --- adb --------------------------------------------------------------------------------------

def find_adb() -> str:
    adb = os.environ.get("ADB") or shutil.which("adb")
    if not adb:
        raise F2IError("adb not found on PATH: install Android platform-tools (Debian: "
                       "apt-get install adb) or set ADB=/path/to/adb; or bench this machine "
                       "with --host")
    return adb


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                          timeout=timeout, stdin=subprocess.DEVNULL)


def list_devices(adb: str) -> list[formats.AdbDevice]:
    try:
        r = _run([adb, "devices", "-l"], 60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise F2IError(f"adb devices -l failed: {exc}") from None
    if r.returncode != 0:
        raise F2IError(f"adb devices -l failed: {(r.stderr or r.stdout).strip()}")
    return formats.parse_adb_devices(r.stdout)


_STATE_HELP = {
    "unauthorized": "unauthorized: unlock the phone and accept the 'Allow USB debugging?' "
                    "prompt, then run again",
    "offline": "offline: reconnect the cable or run 'adb reconnect', then run again",
    "no permissions": "not accessible (no permissions): add a udev rule for the phone or run "
                      "adb as a user in the plugdev group",
}


class AdbTransport(Transport):
    kind = "adb"

    def __init__(self, serial: str | None = None, adb: str | None = None):
        self.adb = adb or find_adb()
        self.serial = serial

    def open(self) -> DeviceInfo:
        devices = list_devices(self.adb)
        if not devices:
            raise F2IError("no Android device attached (adb devices -l lists none): connect a "
                           "phone with USB debugging on, or bench this machine with --host")
        if self.serial is None:
            if len(devices) > 1:
                names = ", ".join(f"{d.serial} ({d.state})" for d in devices)
                raise F2IError(f"{len(devices)} devices attached ({names}): choose one with "
                               "--serial")
            self.serial = devices[0].serial
        found = [d for d in devices if d.serial == self.serial]
        if not found:
            names = ", ".join(d.serial for d in devices)
            raise F2IError(f"device {self.serial} not attached (adb devices -l lists {names})")
        dev = found[0]
        if dev.state != "device":
            help_ = _STATE_HELP.get(dev.state, f"in state '{dev.state}', not ready")
            raise F2IError(f"device {self.serial}: {help_}")
        self.info = self._read_device(dev)
        return self.info

    def _read_device(self, dev: formats.AdbDevice) -> DeviceInfo:
        step = "read the device"
        props = formats.parse_getprop(self.must("getprop", step))
        cpu = parse_cpuinfo(self.must("cat /proc/cpuinfo", step))
        ram = formats.parse_meminfo(self.must("cat /proc/meminfo", step))
        freq = formats.parse_cpufreq(self.shell(
            "grep -H . /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq", step).out)
        soc = " ".join(p for p in (props.get("ro.soc.manufacturer"), props.get("ro.soc.model"))
                       if p) or props.get("ro.board.platform") or props.get("ro.hardware", "")
        model = " ".join(p for p in (props.get("ro.product.manufacturer"),
                                     props.get("ro.product.model")) if p)
        info = DeviceInfo(
            kind="android", serial=self.serial, model=model or dev.attrs.get("model", ""),
            soc=soc, os=f"Android {props.get('ro.build.version.release', '?')} "
                        f"(API {props.get('ro.build.version.sdk', '?')})",
            abi=props.get("ro.product.cpu.abi", ""), cores=cpu.cores, ram_bytes=ram,
            cpu_max_khz=freq, big_cores=formats.big_cores(freq), cpu_features=list(cpu.features))
        self.info = info
        info.thermal = self.thermal().to_dict()
        return info

    def _adb(self, args: list[str], step: str, timeout: float) -> subprocess.CompletedProcess:
        try:
            r = _run([self.adb, "-s", self.serial, *args], timeout)
        except subprocess.TimeoutExpired:
            if not self._attached():
                raise BenchFault(self.label, step, "device disconnected") from None
            raise BenchFault(self.label, step, f"no answer within {timeout:.0f} s",
                             fatal=False) from None
        except OSError as exc:
            raise BenchFault(self.label, step, f"cannot run adb: {exc}") from None
        if r.returncode != 0 and not self._attached():
            raise BenchFault(self.label, step, "device disconnected")
        return r

    def _attached(self) -> bool:
        try:
            return any(d.serial == self.serial and d.state == "device"
                       for d in list_devices(self.adb))
        except F2IError:
            return False

    def shell(self, command: str, step: str, timeout: float = SHELL_TIMEOUT_S) -> ShellResult:
        r = self._adb(["shell", command], step, timeout)
        return ShellResult(r.returncode, r.stdout, r.stderr)

    def push(self, local: Path, remote: str, step: str) -> None:
        r = self._adb(["push", str(local), remote], step, PUSH_TIMEOUT_S)
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            msg = msg[-1] if msg else f"adb push exit {r.returncode}"
            if "No space left" in msg:
                raise BenchFault(self.label, step, f"device storage full ({msg})")
            raise BenchFault(self.label, step, msg)

    def pull(self, remote: str, local: Path, step: str) -> None:
        r = self._adb(["pull", remote, str(local)], step, PUSH_TIMEOUT_S)
        if r.returncode != 0:
            raise BenchFault(self.label, step, (r.stderr or r.stdout).strip() or "adb pull failed",
                             fatal=False)

    def thermal(self) -> Thermal:
        return formats.parse_thermalservice(
            self.shell("dumpsys thermalservice", "read the thermal state").out)

    def clear_logcat(self) -> None:
        self._adb(["logcat", "-c"], "clear logcat", SHELL_TIMEOUT_S)

    def logcat(self, tag: str) -> str:
        return self._adb(["logcat", "-d", "-s", f"{tag}:I"], "read logcat", SHELL_TIMEOUT_S).stdout


# --- this machine -----------------------------------------------------------------------------

class HostTransport(Transport):
    """This machine, through the same protocol: a temporary work folder, `sh -c` for commands."""

    kind = "host"

    def open(self) -> DeviceInfo:
        cpu = this_cpu()
        meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
        freq = {}
        for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
            freq[int(p.parent.parent.name[3:])] = int(p.read_text())
        usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        big = [c for c in formats.big_cores(freq) if c in usable] if freq else usable
        self.info = DeviceInfo(
            kind="host", serial="host", model=platform.node(), soc=cpu.name or platform.processor(),
            os=f"{platform.system()} {platform.release()}", abi=platform.machine(),
            cores=cpu.cores or os.cpu_count() or 0, ram_bytes=formats.parse_meminfo(meminfo),
            cpu_max_khz=freq, big_cores=big, cpu_features=list(cpu.features))
        self.info.thermal = self.thermal().to_dict()
        return self.info

    def prepare(self, work: str | None = None) -> str:
        self.work = tempfile.mkdtemp(prefix="f2i_bench_")
        return self.work

    def shell(self, command: str, step: str, timeout: float = SHELL_TIMEOUT_S) -> ShellResult:
        try:
            r = _run(["sh", "-c", command], timeout)
        except subprocess.TimeoutExpired:
            raise BenchFault(self.label, step, f"no answer within {timeout:.0f} s",
                             fatal=False) from None
        return ShellResult(r.returncode, r.stdout, r.stderr)

    def push(self, local: Path, remote: str, step: str) -> None:
        try:
            Path(remote).parent.mkdir(parents=True, exist_ok=True)
            if Path(local).is_dir():
                shutil.copytree(local, remote, dirs_exist_ok=True)
            else:
                shutil.copyfile(local, remote)
        except OSError as exc:
            full = getattr(exc, "errno", None) == 28
            raise BenchFault(self.label, step,
                             f"disk full ({exc})" if full else str(exc)) from None

    def pull(self, remote: str, local: Path, step: str) -> None:
        try:
            shutil.copyfile(remote, local)
        except OSError as exc:
            raise BenchFault(self.label, step, str(exc), fatal=False) from None

    def thermal(self) -> Thermal:
        temps = []
        for zone in Path("/sys/class/thermal").glob("thermal_zone*"):
            try:
                kind = (zone / "type").read_text().strip().lower()
                if any(k in kind for k in ("cpu", "x86_pkg", "soc", "core")):
                    temps.append(int((zone / "temp").read_text()) / 1000)
            except (OSError, ValueError):
                continue
        return Thermal(None, max(temps) if temps else None)

    def cleanup(self) -> str | None:
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)
        return None
