"""Where benchmark figures go: `benchmarks/results/<name>.json`, with the command that made
them, when, and on what machine. The docs cite these files; rerunning a benchmark rewrites
its file (atomically)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from f2i_mobile.core.atomic import atomic_file
from f2i_mobile.core.cpu import this_cpu

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """The machine, with its CPU's name and vector features: two CPUs of one name ran the same
    benchmark 2.7x apart (f2i_mobile/core/cpu.py)."""
    cpu = this_cpu()
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu": cpu.name, "cpu_features": list(cpu.features),
            "python": platform.python_version()}


def write_result(name: str, data, path: str | Path | None = None) -> Path:
    """Write `data` under `name` (to `path` when given) and return the path."""
    path = Path(path) if path else RESULTS / f"{name}.json"
    record = {"benchmark": name,
              "command": "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}",
                                               *sys.argv[1:]]),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
              "results": data}
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"written {path}")
    return path
