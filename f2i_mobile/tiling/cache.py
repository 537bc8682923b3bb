"""Measurements the planner needs, cached in memory and in `~/.cache/f2i-mobile/` (or
`$XDG_CACHE_HOME/f2i-mobile/`) under a key of what was measured. Torch-free."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from f2i_mobile.core.atomic import atomic_file
from f2i_mobile.core.planner import GraphCost

_CACHE: dict[str, object] = {}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "f2i-mobile"


def cached(kind: str, key: str, compute: Callable[[], object],
           encode: Callable = lambda v: v, decode: Callable = lambda v: v):
    """`compute()` once per (kind, key); an unreadable cache file is measured again, and a
    read-only home only costs the measurement next time."""
    key = f"{kind}-{key}"
    if key in _CACHE:
        return _CACHE[key]
    path = cache_dir() / f"tiling-{key}.json"
    try:
        value = decode(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        value = compute()
        try:
            with atomic_file(path) as tmp:  # another process never reads half a file
                tmp.write_text(json.dumps(encode(value)))
        except OSError:
            pass
    _CACHE[key] = value
    return value


def cached_graph_costs(kind: str, key: str,
                       compute: Callable[[], dict[str, GraphCost]]) -> dict[str, GraphCost]:
    """`cached` for a per-graph GraphCost dict."""
    return cached(kind, key, compute, lambda v: {g: vars(c) for g, c in v.items()},
                  lambda v: {g: GraphCost(**c) for g, c in v.items()})
