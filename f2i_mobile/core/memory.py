"""Resident memory of this process, and the allocator setting that keeps it near what tensors
actually hold (the tiler's `--memory-budget` depends on both)."""

from __future__ import annotations

import functools
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


def _clear_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def touch_fresh_pages(nbytes: int) -> None:
    """Make `nbytes` of new pages resident, then give them back. An anonymous mmap, not an
    array: malloc may serve an array from heap pages that are already resident, and then
    resident memory does not move at all (what a CI run saw with a 64 MiB numpy block)."""
    import mmap

    block = mmap.mmap(-1, nbytes)
    try:
        for offset in range(0, nbytes, mmap.PAGESIZE):
            block[offset] = 1
    finally:
        block.close()


@functools.cache
def _peak_tracks_freed_memory() -> bool:
    """Whether the kernel resets the high-water mark and raises it for memory that was touched
    and freed again; checked once with 32 MiB of fresh pages."""
    if not _clear_peak():
        return False
    before = _status("VmRSS:")
    touch_fresh_pages(32 << 20)
    peak = _status("VmHWM:")
    return before is not None and peak is not None and peak - before >= 24 << 20


def reset_peak() -> bool:
    """Reset the process's resident high-water mark (Linux 4.0+: writing 5 to clear_refs).
    This also resets what `getrusage`/`time -v` report as the peak, so call it before the
    heavy part of a run, not after. False where the mark cannot be reset or does not see
    freed memory; `peak_resident` then measures nothing that follows."""
    return _peak_tracks_freed_memory() and _clear_peak()


def peak_resident() -> int | None:
    """The resident high-water mark in bytes (since the last `reset_peak`), where Linux says."""
    return _status("VmHWM:")


def peak_rise(work: Callable[[], object]) -> int | None:
    """Bytes resident memory rose by, at its highest, while `work()` ran; None where the
    high-water mark cannot be reset and read. Memory that `work` takes from pages the
    allocator already holds is not a rise: this is what running `work` costs the process."""
    if not reset_peak():
        return None
    before = _status("VmRSS:")
    work()
    peak = peak_resident()
    return None if before is None or peak is None else max(0, peak - before)
