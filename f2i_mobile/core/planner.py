"""The tile plan of one photo: which LR crops run, where their outputs go, and how they blend.

Torch-free (the phone-lab bench imports it). Coordinates are in the padded LR *canvas*: the photo
sits at its top-left and is reflect-padded at the bottom/right up to a whole number of tiles, so
every tile is a full `tile x tile` crop (a photo smaller than one tile becomes one padded tile).
Tile origins are multiples of the model's LR multiple, so every tile sees the network's
downsampling grid in the same phase as the untiled run does.

Blend weights are separable Hann (cosine) ramps across each overlap. A tile's output is wrong
within the receptive field `rf` of its edge (the network saw zero padding there, not the
neighbour's pixels), so in the strip shared by two neighbours each tile's outer `margin` (= rf)
gets weight 0, and the middle `overlap - 2 margin` is a cross-fade: one tile fades out as cos^2
while the other fades in as sin^2. The weights are a partition of unity by construction (exactly 1
where one tile covers), and every pixel with weight > 0 is at least `rf` from its tile's edge:
seams stay under the tolerance the receptive field was measured at. Overlap is at most half a
tile, so no pixel is covered by more than two tiles per axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from f2i_mobile.core.contract import GRAPHS, PHOTO_GRAPHS
from f2i_mobile.core.errors import F2IError

CONDITIONING = ("image", "tile")
MAX_BATCH = 4  # the largest batch a schedule picks on its own
# Measured graph memory (what a loaded graph keeps, what its first run leaves, what a run adds)
# is counted with this allowance. The peak RSS of one schedule varies from run to run with how
# threads' frees and allocations interleave (1169-1294 MiB over 7 runs of a 20-tile photo on the
# bundled model, batch 4, where the graphs' working memory was 512 MiB), and a run's own arrays
# (feeds, outputs, blending) fragment the heap that the runtimes' arenas share (exported graphs
# on ONNX Runtime / LiteRT: 5-7 % above the measured graph memory plus the base process).
MEASURED_SPREAD = 1.2
GiB = 1 << 30


@dataclass(frozen=True)
class Box:
    """A half-open pixel box [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Tile:
    index: int
    row: int
    col: int
    lr: Box  # the LR crop, in canvas coordinates
    out: Box  # where its output lands, in output-canvas coordinates


@dataclass(frozen=True)
class ReceptiveField:
    """How far each graph (and `chain`, encoder -> U-Net -> decoder together) reaches: the LR
    px an output pixel needs on each side for its value to be within the tolerance it was
    measured at. `saturated`: the field reached across the `probe` it was measured on."""

    chain: int
    graphs: dict[str, int] = field(default_factory=dict)
    probe: int = 0
    saturated: bool = False


@dataclass(frozen=True)
class GraphCost:
    """What one graph costs per tile: FLOPs from the manifest or `graphs.count_flops`, bytes
    measured by `tiling.measure` (torch) or `tiling.runner_costs` (exported graphs); passed in
    so the planner stays torch-free."""

    gflops: float
    weight_bytes: int = 0
    activation_bytes: int = 0  # peak working memory of one tile inside the graph
    io_bytes: int = 0  # the graph's output per tile (what stage order keeps between graphs)
    retained_bytes: int = 0  # resident memory the graph's first run keeps (kernel caches)


@dataclass(frozen=True)
class TilePlan:
    width: int  # LR photo
    height: int
    scale: int
    tile: int  # LR px
    overlap: int  # LR px
    multiple: int  # LR sizes and tile origins are multiples of this
    cols: int
    rows: int
    conditioning: str = "image"
    receptive_field: int | None = None  # LR px the chained graphs need on each side (measured)
    margin: int = 0  # LR px at each tile edge left out of the blend (weight 0)
    costs: Mapping[str, GraphCost] = field(default_factory=dict)

    # --- geometry ---
    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def canvas(self) -> tuple[int, int]:
        """(width, height) of the padded LR canvas."""
        return (self.tile + (self.cols - 1) * self.stride,
                self.tile + (self.rows - 1) * self.stride)

    @property
    def out_size(self) -> tuple[int, int]:
        """(width, height) of the output photo (the canvas's output cropped to the photo)."""
        return self.width * self.scale, self.height * self.scale

    @property
    def out_tile(self) -> int:
        return self.tile * self.scale

    @property
    def tiles(self) -> list[Tile]:
        s, t, st = self.scale, self.tile, self.stride
        return [Tile(r * self.cols + c, r, c,
                     Box(c * st, r * st, c * st + t, r * st + t),
                     Box(c * st * s, r * st * s, (c * st + t) * s, (r * st + t) * s))
                for r in range(self.rows) for c in range(self.cols)]

    @property
    def count(self) -> int:
        return self.rows * self.cols

    # --- blending ---
    def ramp(self, first: bool, last: bool) -> np.ndarray:
        """1-D weights over one output tile edge: fade in over the overlap unless `first`, fade
        out unless `last`."""
        n, o, mu = self.out_tile, self.overlap * self.scale, self.margin * self.scale
        w = np.ones(n, np.float64)
        if o:
            ramp = o - 2 * mu
            rise = np.zeros(o)
            rise[mu:o - mu] = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
            rise[o - mu:] = 1.0
            if not first:
                w[:o] *= rise
            if not last:
                w[n - o:] *= rise[::-1]
        return w

    def weights(self, tile: Tile) -> np.ndarray:
        """The tile's blend weights, out_tile x out_tile float32."""
        wy = self.ramp(tile.row == 0, tile.row == self.rows - 1)
        wx = self.ramp(tile.col == 0, tile.col == self.cols - 1)
        return np.outer(wy, wx).astype(np.float32)

    # --- cost ---
    def per_photo(self, graph: str) -> bool:
        """Whether `graph` runs once per photo (on its view) rather than once per tile."""
        return graph in PHOTO_GRAPHS and (graph != "conditioner" or self.conditioning == "image")

    def calls(self, batch: int = 1) -> dict[str, int]:
        """Graph invocations for the photo at a fixed batch (a partial last batch is one call)."""
        per_tile = -(-self.count // batch)
        return {g: 1 if self.per_photo(g) else per_tile for g in GRAPHS}

    @property
    def gflops(self) -> float:
        return sum((1 if self.per_photo(g) else self.count) * self.costs[g].gflops
                   for g in GRAPHS if g in self.costs)

    @property
    def overhead(self) -> float:
        """Output pixels computed per output pixel kept (tile overlap and padding)."""
        return self.count * self.tile ** 2 / (self.width * self.height)

    @property
    def seam_safe(self) -> bool | None:
        """Whether the overlap covers the measured receptive field (None: not measured)."""
        if self.receptive_field is None:
            return None
        return self.count == 1 or self.overlap >= min_overlap(self.receptive_field, 1)

    def describe(self) -> str:
        cw, ch = self.canvas
        ow, oh = self.out_size
        rf = ("not measured" if self.receptive_field is None
              else f"{self.receptive_field} LR px, blend margin {self.margin}" + (
                  "" if self.seam_safe else " (overlap too small: seams)"))
        lines = [
            f"input {self.width}x{self.height} -> output {ow}x{oh} ({self.scale}x)",
            f"tiles: {self.count} ({self.cols} x {self.rows}) of {self.tile} LR px "
            f"({self.out_tile} px out), overlap {self.overlap} LR px, stride {self.stride}; "
            f"padded canvas {cw}x{ch}; {self.overhead:.2f}x pixels computed",
            f"conditioning: {self.conditioning}; receptive field: {rf}",
        ]
        if self.costs:
            lines.append(f"GFLOPs: {self.gflops:.1f} in all, "
                         f"{self.gflops / (ow * oh / 1e6):.1f} per output MP")
        return "\n".join(lines)


def plan_tiles(width: int, height: int, *, scale: int, tile: int, overlap: int, multiple: int,
               conditioning: str = "image", receptive_field: int | None = None,
               costs: Mapping[str, GraphCost] | None = None) -> TilePlan:
    """The plan for a `width` x `height` LR photo. `overlap` is rounded up to the LR multiple."""
    if width < 1 or height < 1:
        raise F2IError(f"image size {width}x{height} is empty")
    if conditioning not in CONDITIONING:
        raise F2IError(f"conditioning must be one of {', '.join(CONDITIONING)}, "
                       f"not {conditioning!r}")
    if tile < multiple or tile % multiple:
        raise F2IError(f"--tile {tile} must be a positive multiple of {multiple} LR px "
                       f"for this model")
    if overlap < 0:
        raise F2IError(f"--overlap must be >= 0, not {overlap}")
    overlap = -(-overlap // multiple) * multiple
    if 2 * overlap > tile:
        raise F2IError(f"--overlap {overlap} is more than half of --tile {tile}; use a larger "
                       f"tile or a smaller overlap")
    rf = receptive_field or 0
    # Each side's margin is the receptive field when the overlap leaves room for a cross-fade
    # after it; otherwise half of the overlap fades (seams, warned about by the caller).
    margin = rf if overlap >= 2 * rf + 1 else overlap // 4
    stride = tile - overlap
    cols = 1 + max(0, -(-(width - tile) // stride))
    rows = 1 + max(0, -(-(height - tile) // stride))
    return TilePlan(width, height, scale, tile, overlap, multiple, cols, rows, conditioning,
                    receptive_field, margin, dict(costs or {}))


def min_overlap(receptive_field: int, multiple: int) -> int:
    """The smallest overlap that keeps seams under the receptive field's tolerance: a margin of
    `receptive_field` on both sides and at least one LR px of cross-fade between them."""
    return -(-(2 * receptive_field + 1) // multiple) * multiple


def default_overlap(receptive_field: int | None, tile: int, multiple: int) -> int:
    """The seam-safe overlap with a cross-fade of half the receptive field, at most half a tile;
    a quarter tile when the receptive field is unknown."""
    if receptive_field is None:
        return tile // 4 // multiple * multiple
    want = -(-(2 * receptive_field + max(1, receptive_field // 2)) // multiple) * multiple
    return min(want, tile // 2 // multiple * multiple)


# --- for the bench: how often each graph runs for one photo ---

def photo_calls(manifest, out_width: int, out_height: int, overlap: int | None = None,
                conditioning: str | None = None) -> tuple[TilePlan, dict[str, int]]:
    """The plan and graph invocations for an `out_width` x `out_height` output from an
    export's manifest: its tile, scale, batch, per-graph FLOPs and tiling record (the overlap
    the tiler would use unless one is given)."""
    scale, tile, tiling = manifest.scale, manifest.tile, manifest.tiling
    costs = {g: GraphCost(info.flops / max(1, manifest.batch) / 1e9)
             for g, info in manifest.graphs.items()}
    rf = tiling.receptive_field
    plan = plan_tiles(max(1, round(out_width / scale)), max(1, round(out_height / scale)),
                      scale=scale, tile=tile, multiple=tiling.lr_multiple,
                      overlap=tiling.overlap if overlap is None else overlap,
                      conditioning=conditioning or tiling.conditioning,
                      receptive_field=None if rf is None else rf.chain, costs=costs)
    return plan, plan.calls(max(1, manifest.batch))


# --- memory ---

ORDERS = ("tile", "stage")


@dataclass(frozen=True)
class Schedule:
    order: str  # "tile": each tile through all graphs; "stage": all tiles through each graph
    batch: int
    spill: bool  # stage order: intermediates on disk instead of in memory
    peak_bytes: int  # estimated peak resident memory, base included


def estimate_peak(plan: TilePlan, order: str, batch: int, spill: bool = False, *,
                  base_bytes: int = 0, out_channels: int = 4, whole_output: bool = False,
                  weights_resident: bool = False) -> int:
    """Peak resident bytes of a run: `base_bytes` (the process before the run, with whatever
    weights it already holds) + the LR canvas + what the graphs keep after their first run
    + the graphs' weights (all in tile order, the running one's in stage order) + the larger
    of the photo pass (the per-photo graphs at batch 1) and `batch` tiles' working memory
    + what stage order keeps between graphs (unless spilled) + the output band being blended
    (or the whole output); measured bytes with MEASURED_SPREAD's allowance.
    `weights_resident`: the weights are already in `base_bytes` (the torch model is loaded
    whole before the run; exported graphs load one by one)."""
    costs = {g: _with_allowance(plan.costs.get(g, GraphCost(0.0)), weights_resident)
             for g in GRAPHS}
    photo = [costs[g] for g in GRAPHS if plan.per_photo(g)]
    tiles = [costs[g] for g in GRAPHS if not plan.per_photo(g)]
    cw, ch = plan.canvas
    ow, oh = plan.out_size
    # float RGB canvas + alpha, and what each graph's first run leaves resident
    fixed = base_bytes + cw * ch * 4 * 4 + sum(c.retained_bytes for c in costs.values())
    if whole_output:
        fixed += ow * oh * 4 * 3 + ow * oh * out_channels * 2
    else:  # float accumulator over one tile row; a finished band as floats twice (the copy
        # handed out, the channels put together for the writer) and as integers
        band = plan.out_tile * ow
        fixed += plan.out_tile * cw * plan.scale * 4 * 3 + band * (2 * 4 * 3 + out_channels * 2)
    if order == "tile":  # every graph stays loaded
        work = max([c.activation_bytes + c.io_bytes for c in photo]
                   + [batch * (max(c.activation_bytes for c in tiles)
                               + sum(c.io_bytes for c in tiles))])
        return int(fixed + sum(c.weight_bytes for c in costs.values()) + work)
    # Stage order: one graph loaded at a time; between stages each tile's tensors are kept
    # (or spilled): while tile graph j runs, the outputs of graph j-1 it reads and its own.
    n = plan.count if not spill else batch
    io = [c.io_bytes for c in tiles]
    kept = [n * ((io[j - 1] if j else 0) + (io[j] if j < len(tiles) - 1 else 0))
            for j in range(len(tiles))]
    return int(fixed + max([c.weight_bytes + c.activation_bytes + c.io_bytes for c in photo]
                           + [c.weight_bytes + batch * (c.activation_bytes + c.io_bytes) + k
                              for c, k in zip(tiles, kept)]))


def _with_allowance(cost: GraphCost, weights_resident: bool) -> GraphCost:
    """`cost` with its measured bytes raised by MEASURED_SPREAD (output sizes are exact)."""
    weights = 0 if weights_resident else cost.weight_bytes
    return GraphCost(cost.gflops, int(weights * MEASURED_SPREAD),
                     int(cost.activation_bytes * MEASURED_SPREAD), cost.io_bytes,
                     int(cost.retained_bytes * MEASURED_SPREAD))


def choose_schedule(plan: TilePlan, budget: int | None, *, order: str | None = None,
                    batch: int | None = None, fixed_batch: int | None = None,
                    max_batch: int = MAX_BATCH, base_bytes: int = 0, out_channels: int = 4,
                    whole_output: bool = False, weights_resident: bool = False) -> Schedule:
    """The fastest schedule that fits `budget`: tile order at the largest batch first, then stage
    order, then stage order with intermediates spilled to disk. `order`/`batch` pin a choice;
    `fixed_batch` is a runner's static batch. Raises at once, with the minimum it would need,
    when nothing fits."""
    if order is not None and order not in ORDERS:
        raise F2IError(f"--order must be tile or stage, not {order!r}")
    if batch is not None and batch < 1:
        raise F2IError(f"--batch must be >= 1, not {batch}")
    if fixed_batch is not None and batch is not None and batch != fixed_batch:
        raise F2IError(f"--batch {batch}: this backend's graphs were exported for batch "
                       f"{fixed_batch}")
    batches = ([batch or fixed_batch] if (batch or fixed_batch)
               else list(range(min(max_batch, plan.count), 0, -1)))
    candidates = [Schedule(o, b, spill, estimate_peak(
                      plan, o, b, spill, base_bytes=base_bytes, out_channels=out_channels,
                      whole_output=whole_output, weights_resident=weights_resident))
                  for o in ([order] if order else ORDERS)
                  for spill in ((False,) if o == "tile" else (False, True))
                  for b in batches]
    if budget is None:
        return candidates[0]
    for c in candidates:
        if c.peak_bytes <= budget:
            return c
    need = min(candidates, key=lambda c: c.peak_bytes)
    raise F2IError(
        f"--memory-budget {format_size(budget)} cannot be met: this photo needs at least "
        f"{format_size(need.peak_bytes)} ({need.order} order, batch {need.batch}"
        f"{', intermediates on disk' if need.spill else ''}"
        f"{', whole output in memory' if whole_output else ''}); raise the budget or use a "
        f"smaller --tile")


def parse_size(text: str) -> int:
    """'2GiB', '512MiB', '1.5G', '800M', '1000000' -> bytes."""
    units = {"": 1, "k": 1e3, "kb": 1e3, "kib": 1 << 10, "m": 1e6, "mb": 1e6, "mib": 1 << 20,
             "g": 1e9, "gb": 1e9, "gib": 1 << 30, "t": 1e12, "tb": 1e12, "tib": 1 << 40}
    s = str(text).strip().lower().replace(" ", "")
    num = s.rstrip("kmgtib")
    unit = s[len(num):]
    try:
        value = float(num) * units[unit]
    except (ValueError, KeyError):
        raise F2IError(f"cannot read size {text!r}; write e.g. 2GiB, 512MiB or 1.5G") from None
    if value <= 0:
        raise F2IError(f"size must be positive, not {text!r}")
    return int(value)


def format_size(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"
