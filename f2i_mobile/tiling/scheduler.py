"""Runs the graphs over a tile plan through any `GraphRunner`, and blends the SR tiles into
output bands, top to bottom.

Per photo, first, the photo graphs on the whole photo resized to one tile: the conditioner's
tokens (in `image` conditioning) and the statistics pass's GroupNorm statistics, which every
tile then takes, so every tile is normalised as the whole photo is. Then the tiles, in one of
two orders (`Schedule.order`):
- `tile`: each batch of tiles goes through the chain before the next; the first band is out
  early and only one batch of intermediates is alive.
- `stage`: every tile through one graph before the next graph starts, so one graph is resident
  (`runner.release` after its stage); the tensors between stages are kept in memory or, when the
  budget says so, spilled to a temporary file.
Graphs are wired by the contract's tensor names (`runners.run_chain`), never by position.

Blending happens in the output domain, with the planner's partition-of-unity weights. Blending
latents instead would save the decoder's overlap but needs the decoder's receptive field covered
by a second margin anyway (the decoder is the widest graph), and an averaged latent is not one
the decoder was trained on; blending pixels is exact when the overlap covers the receptive field
and degrades gracefully when it does not.

Conditioning (`plan.conditioning`): `image` (default) computes the tokens once from the whole LR
photo resized to one tile and gives them to every tile; `tile` gives each tile the tokens of its
own crop (the paper's "each tile gets its own DINOv2 features"). `image` is the default because
the conditioner attends globally: with per-tile tokens, two tiles condition their shared overlap
differently and can never agree there exactly, whatever the overlap.

This module imports no torch: the same scheduler drives the torch runner and the exported ones.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from f2i_mobile.core.contract import GRAPHS, PHOTO_GRAPHS, RESULT, SOURCE
from f2i_mobile.core.imaging import pad_reflect, resize, to_nchw
from f2i_mobile.core.planner import Schedule, Tile, TilePlan
from f2i_mobile.runners.base import GraphRunner, run_chain
from f2i_mobile.tiling.colorfix import color_fix


class TensorStore:
    """Per-tile tensors between stages: in memory, or spilled to a file on disk. A spilled tensor
    is read and written through a short-lived numpy memmap of just its bytes, so pages do not
    stay mapped (and counted as resident) after use."""

    def __init__(self, count: int, spill_dir: str | Path | None):
        self.count, self.items, self.path = count, {}, None
        self.shape = self.dtype = None
        if spill_dir is not None:
            fd, name = tempfile.mkstemp(prefix="f2i-spill-", suffix=".bin", dir=spill_dir)
            os.close(fd)
            self.path = Path(name)

    def put(self, index: int, value: np.ndarray) -> None:
        if self.path is None:
            self.items[index] = value
            return
        if self.shape is None:
            self.shape, self.dtype = value.shape, value.dtype
            with open(self.path, "r+b") as f:
                f.truncate(self.count * value.nbytes)
        mm = np.memmap(self.path, self.dtype, "r+", index * value.nbytes, self.shape)
        mm[...] = value
        mm.flush()
        del mm

    def get(self, index: int) -> np.ndarray:
        """The tile's tensor; each is read once (by the one graph that takes it)."""
        if self.path is None:
            return self.items.pop(index)
        nbytes = int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize
        return np.array(np.memmap(self.path, self.dtype, "r", index * nbytes, self.shape))

    def close(self) -> None:
        self.items.clear()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class TileScheduler:
    def __init__(self, runner: GraphRunner, plan: TilePlan, schedule: Schedule, *,
                 color: str = "none", spill_dir: str | Path | None = None,
                 progress: bool = True):
        self.runner, self.plan, self.schedule = runner, plan, schedule
        self.color, self.progress = color, progress
        self.spill_dir = spill_dir if spill_dir is not None else tempfile.gettempdir()
        self.shared: dict[str, np.ndarray] = {}  # per-photo tensors every tile takes

    # --- the run ---
    def bands(self, rgb: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Super-resolve an H x W x 3 float32 photo; yields (first output row, rows x (scale W)
        x 3 float32) bands that together cover the output exactly once, top to bottom."""
        plan = self.plan
        cw, ch = plan.canvas
        canvas = pad_reflect(rgb.astype(np.float32, copy=False), ch, cw)
        self.shared = self._photo_pass(rgb)
        crops = (canvas[t.lr.y0:t.lr.y1, t.lr.x0:t.lr.x1] for t in plan.tiles)
        sr_tiles = (self._tile_order(canvas) if self.schedule.order == "tile"
                    else self._stage_order(canvas))
        yield from self._blend(zip(plan.tiles, crops, sr_tiles))

    def _photo_pass(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """The photo graphs on the whole photo resized to one tile: what every tile shares
        (per tile, without the batch axis). A photo of one tile is its own view."""
        if self.plan.count == 1:
            tile = self.plan.tiles[0]
            view = pad_reflect(rgb.astype(np.float32, copy=False), *self.plan.canvas[::-1])
            view = view[tile.lr.y0:tile.lr.y1, tile.lr.x0:tile.lr.x1]
        else:
            view = resize(rgb, self.plan.tile, self.plan.tile)
        values = {SOURCE: to_nchw([view])}
        for graph in PHOTO_GRAPHS:
            names = self.runner.specs[graph].input_names
            values.update(self._run(graph, {n: values[n] for n in names}))
            if self.schedule.order == "stage":
                self.runner.release(graph)
        shared = {n: v[0] for n, v in values.items() if n != SOURCE}
        if self.plan.conditioning == "tile":
            del shared["tokens"]  # each tile gets its own
        return shared

    def _graphs(self) -> list[str]:
        """The graphs each tile runs: those whose outputs are not shared by the whole photo."""
        return [g for g in GRAPHS
                if not all(n in self.shared for n in self.runner.specs[g].output_names)]

    # --- batches ---
    def _batches(self) -> list[list[int]]:
        b = self.schedule.batch
        return [list(range(i, min(i + b, self.plan.count))) for i in range(0, self.plan.count, b)]

    def _padded(self, values: dict[str, np.ndarray], n: int, graph: str) -> dict[str, np.ndarray]:
        """Per-tile arrays of `n` tiles, padded up to the runner's fixed batch (if it has one)
        by repeating the last tile."""
        fixed = self.runner.batch_size(graph)
        if not fixed or fixed == n:
            return values
        return {k: np.concatenate([v, np.repeat(v[-1:], fixed - n, axis=0)])
                for k, v in values.items()}

    def _run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        out = self.runner.run(graph, self._padded(inputs, n, graph))
        return {k: v[:n] for k, v in out.items()}

    def _tile_inputs(self, canvas: np.ndarray, batch: list[int],
                     names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Of `names`, the LR crops and the shared tensors of a batch of tiles, batched."""
        values = {n: np.repeat(self.shared[n][None], len(batch), axis=0)
                  for n in names if n in self.shared}
        if SOURCE in names:
            values[SOURCE] = to_nchw([_crop(canvas, self.plan.tiles[i]) for i in batch])
        return values

    def _bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="tile", disable=not self.progress, leave=False)

    def _tile_order(self, canvas: np.ndarray) -> Iterator[np.ndarray]:
        graphs = self._graphs()
        with self._bar(self.plan.count, "tiles") as bar:
            for batch in self._batches():
                values = self._tile_inputs(canvas, batch, (SOURCE, *self.shared))
                values = self._padded(values, len(batch), graphs[0])
                for out in run_chain(self.runner, values, graphs)[RESULT][:len(batch)]:
                    bar.update()
                    yield out

    def _stage_order(self, canvas: np.ndarray) -> Iterator[np.ndarray]:
        plan, graphs = self.plan, self._graphs()
        stores: dict[str, TensorStore] = {}
        try:
            with self._bar(plan.count * len(graphs), "tiles x graphs") as bar:
                for graph in graphs:
                    spec = self.runner.specs[graph]
                    for batch in self._batches():
                        inputs = self._tile_inputs(canvas, batch, spec.input_names)
                        inputs.update({n: np.stack([stores[n].get(i) for i in batch])
                                       for n in spec.input_names if n not in inputs})
                        out = self._run(graph, inputs)
                        bar.update(len(batch))
                        if graph == graphs[-1]:
                            yield from out[RESULT]
                            continue
                        for name, value in out.items():
                            store = stores.setdefault(name, TensorStore(
                                plan.count, self.spill_dir if self.schedule.spill else None))
                            for i, v in zip(batch, value):
                                store.put(i, v)
                    self.runner.release(graph)
        finally:
            for s in stores.values():
                s.close()

    # --- blending ---
    def _blend(self, stream) -> Iterator[tuple[int, np.ndarray]]:
        plan, s = self.plan, self.plan.scale
        ow, oh = plan.out_size
        band_h, step = plan.out_tile, plan.stride * s
        acc = np.zeros((band_h, plan.canvas[0] * s, 3), np.float32)
        done_in_row = 0
        for tile, crop, sr in stream:
            sr = np.ascontiguousarray(sr.transpose(1, 2, 0))
            if self.color != "none":
                sr = color_fix(sr, resize(crop, sr.shape[1], sr.shape[0]), self.color)
            acc[:, tile.out.x0:tile.out.x1] += sr * plan.weights(tile)[..., None]
            done_in_row += 1
            if done_in_row < plan.cols:
                continue
            done_in_row = 0
            top = tile.out.y0
            last = tile.row == plan.rows - 1
            rows = band_h if last else step
            if top < oh:
                yield top, acc[: min(rows, oh - top), :ow].copy()
            if not last:
                acc[: band_h - step] = acc[step:]
                acc[band_h - step:] = 0.0


def _crop(canvas: np.ndarray, tile: Tile) -> np.ndarray:
    return canvas[tile.lr.y0:tile.lr.y1, tile.lr.x0:tile.lr.x1]
