"""Resident memory of this process, and the allocator setting that keeps it near what tensors
actually hold (the tiler's `--memory-budget` depends on both)."""

from __future__ import annotations

import resource
from collections.abc import Callable


def _status(key: str) -> int | None:
    """A size line of /proc/self/status in bytes (VmRSS, VmHWM); None off Linux."""
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith(key)),
                        None)
    except OSError:
        return None


def resident_bytes() -> int:
    """This process's resident memory now (Linux), or its peak so far elsewhere."""
    now = _status("VmRSS:")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# Under a memory budget, tensors of this size and larger go back to the OS when freed. glibc
# otherwise raises its mmap threshold after the first large free and serves later tensors from a
# heap that fragments: measured on the bundled model, 1.58 GiB peak RSS instead of 1.18 GiB for
# the same 12 tiles (batch 4), for about 13 % more time. No library sets this; ctypes does.
MMAP_THRESHOLD = 8 << 20


def return_freed_memory() -> None:
    """Pin glibc's mmap threshold (Linux with glibc; elsewhere nothing happens)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def reset_peak() -> bool:
    """Reset the process's resident high-water mark (Linux 4.0+: writing 5 to clear_refs).
    This also resets what `getrusage`/`time -v` report as the peak, so call it before the
    heavy part of a run, not after. False where it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_resident() -> int | None:
    """The resident high-water mark in bytes (since the last `reset_peak`), where Linux says."""
    return _status("VmHWM:")


def peak_rise(work: Callable[[], object]) -> int | None:
    """Bytes resident memory rose by, at its highest, while `work()` ran; None where the
    high-water mark cannot be reset and read."""
    if not reset_peak():
        return None
    before = _status("VmRSS:")
    work()
    peak = peak_resident()
    return None if before is None or peak is None else max(0, peak - before)
