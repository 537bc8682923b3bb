"""Runs the four graphs over a tile plan through any `GraphRunner`, and blends the SR tiles into
output bands, top to bottom.

Two orders (`Schedule.order`):
- `tile`: each batch of tiles goes through conditioner, encoder, U-Net and decoder before the next;
  the first band is out early and only one batch of intermediates is alive.
- `stage`: every tile through one graph before the next graph starts, so one graph is resident
  (`runner.release` after its stage); the latents between stages are kept in memory or, when the
  budget says so, spilled to a temporary file.

Blending happens in the output domain, with the planner's partition-of-unity weights. Blending
latents instead would save the decoder's overlap but needs the decoder's receptive field covered
by a second margin anyway (the decoder is the widest graph, design.md section 3), and an averaged
latent is not one the decoder was trained on; blending pixels is exact when the overlap covers the
receptive field and degrades gracefully when it does not.

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

# OpenCV at import, not at first use: its 30 MiB are then in the resident memory that
# `--memory-budget` starts from, instead of arriving unplanned with the first tile.
import cv2
import numpy as np
from tqdm import tqdm

from f2i_mobile.runners.base import GraphRunner
from f2i_mobile.tiling.colorfix import color_fix
from f2i_mobile.tiling.planner import REFERENCE_TILES, Schedule, TilePlan



def pad_reflect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad H x W (x C) at the bottom/right to height x width, mirroring the border (numpy's
    reflect repeats the mirror for pads longer than the image; a 1-pixel edge is repeated)."""
    pads = [(0, height - image.shape[0]), (0, width - image.shape[1])]
    pads += [(0, 0)] * (image.ndim - 2)
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"
    return np.pad(image, pads, mode=mode)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area when shrinking, bicubic when enlarging (OpenCV), clipped to [0, 1]."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrink = width < image.shape[1]
    out = cv2.resize(image, (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def to_nchw(images: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2), dtype=np.float32)


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

    # --- running graphs in batches ---
    def _run(self, graph: str, inputs: dict[str, list[np.ndarray]]) -> np.ndarray:
        """One graph on a list of per-tile inputs (padded up to a runner's fixed batch);
        returns the stacked outputs for the real tiles only."""
        n = len(next(iter(inputs.values())))
        fixed = self.runner.batch_size(graph)
        pad = (fixed - n) if fixed else 0
        feed = {k: np.ascontiguousarray(np.stack(v + [v[-1]] * pad), dtype=np.float32)
                for k, v in inputs.items()}
        (out,) = self.runner.run(graph, feed).values()
        return out[:n]

    def _batches(self) -> list[list[int]]:
        b = self.schedule.batch
        return [list(range(i, min(i + b, self.plan.count))) for i in range(0, self.plan.count, b)]

    # --- the run ---
    def bands(self, rgb: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Super-resolve an H x W x 3 float32 photo; yields (first output row, rows x (scale W)
        x 3 float32) bands that together cover the output exactly once, top to bottom."""
        plan = self.plan
        cw, ch = plan.canvas
        canvas = pad_reflect(rgb.astype(np.float32, copy=False), ch, cw)
        self._tokens = None
        if plan.conditioning == "image":
            self._tokens = self._run("conditioner", {"lr": [self._global_view(rgb)]})[0]
        calibrate = getattr(self.runner, "calibrate", None)
        if calibrate is not None:
            tokens = (self._tokens if self._tokens is not None
                      else self._run("conditioner", {"lr": [self._global_view(rgb)]})[0])
            calibrate(to_nchw([self._reference_view(canvas)]), tokens[None])
        tiles = plan.tiles
        crops = (canvas[t.lr.y0:t.lr.y1, t.lr.x0:t.lr.x1] for t in tiles)
        sr_tiles = (self._tile_order(canvas) if self.schedule.order == "tile"
                    else self._stage_order(canvas))
        yield from self._blend(zip(tiles, crops, sr_tiles))

    def _global_view(self, rgb: np.ndarray) -> np.ndarray:
        """The whole photo resized to one tile (3 x tile x tile): the conditioner's input in
        `image` mode."""
        return np.ascontiguousarray(resize(rgb, self.plan.tile, self.plan.tile).transpose(2, 0, 1))

    def _reference_view(self, canvas: np.ndarray) -> np.ndarray:
        """The canvas itself when small, else resized to about REFERENCE_TILES tiles' area (sides
        multiples of the LR multiple): where image-wide normalisation statistics come from."""
        h, w = canvas.shape[:2]
        limit = REFERENCE_TILES * self.plan.tile ** 2
        if h * w <= limit:
            return canvas
        f, m = (limit / (h * w)) ** 0.5, self.plan.multiple
        return resize(canvas, max(m, int(w * f) // m * m), max(m, int(h * f) // m * m))

    def _tokens_for(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        if self._tokens is not None:
            return [self._tokens] * len(crops)
        return list(self._run("conditioner", {"lr": crops}))

    def _bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="tile", disable=not self.progress, leave=False)

    def _tile_order(self, canvas: np.ndarray) -> Iterator[np.ndarray]:
        tiles = self.plan.tiles
        with self._bar(self.plan.count, "tiles") as bar:
            for batch in self._batches():
                crops = [_crop_chw(canvas, tiles[i]) for i in batch]
                tokens = self._tokens_for(crops)
                latent = self._run("encoder", {"lr": crops})
                latent_sr = self._run("unet", {"latent": list(latent), "tokens": tokens})
                sr = self._run("decoder", {"latent_sr": list(latent_sr)})
                for out in sr:
                    bar.update()
                    yield out

    def _stage_order(self, canvas: np.ndarray) -> Iterator[np.ndarray]:
        plan, tiles, spill = self.plan, self.plan.tiles, self.schedule.spill
        stores = {k: TensorStore(plan.count, self.spill_dir if spill else None)
                  for k in ("tokens", "latent", "latent_sr")}
        graphs = ["encoder", "unet", "decoder"]
        if plan.conditioning == "tile":
            graphs.insert(0, "conditioner")
        try:
            with self._bar(plan.count * len(graphs), "tiles x graphs") as bar:
                for graph in graphs:
                    for batch in self._batches():
                        if graph in ("conditioner", "encoder"):
                            crops = [_crop_chw(canvas, tiles[i]) for i in batch]
                            out = self._run(graph, {"lr": crops})
                            store = stores["tokens" if graph == "conditioner" else "latent"]
                            for i, o in zip(batch, out):
                                store.put(i, o)
                        elif graph == "unet":
                            tokens = ([stores["tokens"].get(i) for i in batch]
                                      if plan.conditioning == "tile"
                                      else [self._tokens] * len(batch))
                            out = self._run("unet", {"latent": [stores["latent"].get(i)
                                                                for i in batch],
                                                     "tokens": tokens})
                            for i, o in zip(batch, out):
                                stores["latent_sr"].put(i, o)
                        else:
                            out = self._run("decoder", {"latent_sr": [stores["latent_sr"].get(i)
                                                                      for i in batch]})
                            for o in out:
                                bar.update()
                                yield o
                            continue
                        bar.update(len(batch))
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


def _crop_chw(canvas: np.ndarray, tile) -> np.ndarray:
    return np.ascontiguousarray(canvas[tile.lr.y0:tile.lr.y1, tile.lr.x0:tile.lr.x1]
                                .transpose(2, 0, 1))
