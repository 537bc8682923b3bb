"""Atomic publishing: a reader (or a crash) never sees a half-written file or folder.

One primitive, `staged`: the writer fills a private work folder beside the destination (same
filesystem), and on success its result is moved into place with `os.replace`, atomic on POSIX;
on error the work folder is removed and the destination is unchanged. `atomic_file` and
`atomic_dir` are its two common shapes. A process killed mid-write leaves only a hidden
`.<name>.*.tmp` work folder, which `sweep` removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

SUFFIX = ".tmp"


@contextlib.contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """Yield a work folder; what the writer puts there as `<work>/<path.name>` (a file or a
    folder) replaces `path` on success. Other files written beside it (an ONNX graph's external
    data) are moved next to `path` first, so the graph never appears without them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=SUFFIX, dir=path.parent))
    try:
        yield work
        result = work / path.name
        if not result.exists():
            raise FileNotFoundError(f"nothing was written for {path}")
        for extra in work.iterdir():
            if extra.name != path.name:
                os.replace(extra, path.parent / extra.name)
        _replace(result, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replace(src: Path, dst: Path) -> None:
    if dst.is_dir() and not dst.is_symlink():  # os.replace cannot replace a folder in one step:
        trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=SUFFIX, dir=dst.parent))
        os.replace(dst, trash / dst.name)  # the old one moves aside first
        try:
            os.replace(src, dst)
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write (named like `path`, for writers that pick the format from
    the name); on success it replaces `path`."""
    path = Path(path)
    with staged(path) as work:
        yield work / path.name


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it replaces `path` (an old folder is
    removed only after the new one is in place)."""
    path = Path(path)
    with staged(path) as work:
        (work / path.name).mkdir()
        yield work / path.name


def sweep(folder: str | Path) -> None:
    """Remove the work folders that killed writers left in `folder`."""
    for stale in Path(folder).glob(f".*{SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)
