"""The tile plan of one photo, for the end-to-end estimate.

The tiler owns tiling; the bench only asks it how many times each graph runs for a photo of a
given output size. This module is the one place that asks, so the planner behind it can change
without touching the rest of the bench.
"""

from __future__ import annotations

from dataclasses import dataclass

from f2i_mobile.core.manifest import Manifest
from f2i_mobile.core.planner import photo_calls

PHOTO_12MP = (4000, 3000)  # output width, height: a 12 MP phone photo


@dataclass
class PhotoPlan:
    tiles: int
    calls: dict[str, int]  # graph -> invocations per photo
    source: str  # which planner, in words


def photo_plan(manifest: Manifest, width: int, height: int) -> PhotoPlan:
    """How often each graph runs for one width x height output."""
    tiles, calls = photo_calls(manifest, width, height)
    return PhotoPlan(tiles.count, calls,
                     f"f2i_mobile.core.planner: {tiles.cols}x{tiles.rows} tiles of "
                     f"{tiles.tile} LR px, overlap {tiles.overlap}, conditioning "
                     f"{tiles.conditioning} (one conditioner call per photo)")
