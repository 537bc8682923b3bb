"""What a CPU is, read from /proc/cpuinfo (this machine's, or a phone's over adb): its name, its
cores, and the vector features that decide how fast the runtimes' kernels are on it.

Two machines that both call themselves "AMD EPYC" ran the bundled model's default path 2.7x apart
(one with AVX-512 and VNNI, one with AVX2 only), so every timing record carries the features
with the name (`android_bench` host and phone records, `benchmarks/results`), and the ONNX runner
decides here whether ONNX Runtime's fused int8 kernels are exact on this CPU. Torch-free.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The features that decide a kernel's speed or exactness here: x86 vector width and int8 dot
# products, Arm dot products and matrix extensions. Other flags are left out of the records.
FEATURES = ("fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
            "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")
INT8_DOT_X86 = ("avx512_vnni", "avx_vnni")  # 32-bit sums of int8 products (VPDPBUSD)


@dataclass(frozen=True)
class CpuInfo:
    name: str  # "model name" (x86) or "Hardware" (older Arm kernels); "" when not given
    cores: int  # `processor` entries
    features: tuple[str, ...]  # those of FEATURES the first core lists, in FEATURES' order

    def describe(self) -> str:
        return f"{self.name or 'CPU'} ({', '.join(self.features) or 'no vector features listed'})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """/proc/cpuinfo's text: x86 lists its features as `flags`, Arm as `Features`."""
    cores, name, flags = 0, "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            cores += 1
        elif key in ("Hardware", "model name") and not name:
            name = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return CpuInfo(name, cores, tuple(f for f in FEATURES if f in flags))


def this_cpu(path: Path = CPUINFO) -> CpuInfo:
    """This machine's CPU; an unreadable /proc/cpuinfo gives no features (counted as absent)."""
    try:
        return parse_cpuinfo(path.read_text())
    except OSError:
        return CpuInfo(platform.processor(), 0, ())


def int8_sums_exact(cpu: CpuInfo, machine: str | None = None) -> bool:
    """Whether fused u8 x s8 kernels sum without saturating: any CPU but x86-64, or x86-64 with
    VNNI. Without it, x86 kernels multiply with VPMADDUBSW, whose 16-bit pair sums saturate."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return True
    return any(f in cpu.features for f in INT8_DOT_X86)
