"""android_bench: the latency harness for phones over adb, and for this machine.

It needs only an export's manifest and artifacts (no torch, no model code): a phone-lab machine
runs it with numpy, matplotlib, scipy and the torch-free `f2i_mobile.core.manifest`.

    from android_bench import BenchOptions, bench, compare
    report = bench(BenchOptions(artifacts="out", host=True))

`f2i-mobile bench` and `python -m android_bench` are its command line.
"""

from android_bench.compare import compare
from android_bench.harness import BenchOptions, bench

__all__ = ["BenchOptions", "bench", "compare"]
