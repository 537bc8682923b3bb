"""Photos through the model: every run goes through the tiling scheduler (a photo that fits one
tile is the one-tile case), on the torch model or on an export's artifacts through any runner.

`plan_upscale` works out the tile plan and schedule (and raises at once when the memory budget
cannot be met); `upscale_file` runs it and streams the output to disk band by band;
`upscale_photo` is the in-memory form. Alpha is upscaled bicubically beside the model, band by
band. `--scale` other than the model's own is reached Real-ESRGAN's way: run at the model's
scale, then resize (the output is then assembled in memory).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from f2i_mobile.errors import F2IError
from f2i_mobile.image import Photo, check_output_path, read_image, to_uint, write_image
from f2i_mobile.manifest import Manifest
from f2i_mobile.memory import resident_bytes, return_freed_memory
from f2i_mobile.tiling.colorfix import METHODS, color_fix
from f2i_mobile.tiling.planner import (
    GraphCost, Schedule, TilePlan, choose_schedule, default_overlap, format_size, min_overlap,
    plan_tiles)
from f2i_mobile.tiling.scheduler import TileScheduler, resize

BUNDLED_MODEL = Path(__file__).parent / "weights" / "mobile"
BACKENDS = ("torch", "executorch", "tflite", "onnx")


class SeamWarning(UserWarning):
    """The overlap does not cover the receptive field: tiles may show seams."""


def load_model(path: str | Path | None):
    """A checkpoint folder, or the bundled default when `path` is None."""
    from f2i_mobile.models import build_model, from_pretrained, preset

    if path is not None:
        return from_pretrained(path)
    if BUNDLED_MODEL.is_dir():
        return from_pretrained(BUNDLED_MODEL)
    return build_model(preset("mobile"), seed=0, metadata={
        "origin": "no bundled checkpoint yet: an untrained mobile model built from its config "
                  "with seed 0"})


def lr_multiple(config) -> int:
    """LR sizes (and tile origins) must be multiples of this so that scale * size fits the VAE
    and U-Net."""
    m = config.pixel_multiple
    return m // math.gcd(m, config.scale)


@dataclass
class UpscaleOptions:
    tile: int | None = None  # LR px; default: the model's (or the export's) tile
    overlap: int | None = None  # LR px; default: seam-safe for the measured receptive field
    order: str | None = None  # tile | stage; default: the fastest that fits the budget
    batch: int | None = None
    memory_budget: int | None = None  # bytes of peak resident memory
    color_fix: str = "none"  # none | adain | wavelet
    color_scope: str = "tile"  # tile | image (image: the whole output is held in memory)
    conditioning: str = "image"  # image | tile (see tiling.scheduler)
    scale: float | None = None
    backend: str = "torch"
    artifacts: str | None = None  # export folder (backends other than torch)
    precision: str = "fp32"
    progress: bool = False


@dataclass
class Engine:
    """What runs the graphs, and what the planner knows about them. For the torch model the
    receptive field and costs are measured on first use only (a one-tile photo needs neither
    unless a budget or a plan is asked for)."""

    runner: object
    scale: int
    tile: int
    multiple: int
    model: object = None
    manifest: Manifest | None = None  # the export's, when the runner runs its artifacts
    origin: str = ""
    weights_in_base: bool = True  # weights already resident before the run (torch)

    @cached_property
    def costs(self) -> dict[str, GraphCost]:
        if self.model is None:
            from f2i_mobile.tiling.runner_costs import cached_artifact_costs
            return cached_artifact_costs(self.runner, self.manifest)
        from f2i_mobile.tiling.measure import cached_costs
        return cached_costs(self.model, self.tile)

    @cached_property
    def receptive_field(self) -> dict | None:
        if self.model is None:
            rf = self.manifest.model.get("receptive_field")
            return rf if isinstance(rf, dict) else None
        from f2i_mobile.tiling.measure import cached_receptive_fields
        return cached_receptive_fields(self.model)


def open_engine(model_path: str | Path | None, options: UpscaleOptions, model=None) -> Engine:
    if options.backend not in BACKENDS:
        raise F2IError(f"--backend must be one of {', '.join(BACKENDS)}, not {options.backend!r}")
    if options.backend == "torch":
        from f2i_mobile.tiling.context import ImageContextRunner

        model = model if model is not None else load_model(model_path)
        tile = options.tile or model.config.tile
        multiple = lr_multiple(model.config)
        if tile % multiple:
            raise F2IError(f"--tile {tile} must be a multiple of {multiple} LR px for this model")
        return Engine(ImageContextRunner(model), model.config.scale, tile, multiple, model,
                      origin=model.metadata.get("origin", ""))
    if options.artifacts is None:
        raise F2IError(f"--backend {options.backend} needs --artifacts (an export folder)")
    try:
        from f2i_mobile.runners import open_runner
    except ImportError:
        raise F2IError(f"--backend {options.backend}: this checkout has no exported-graph "
                       f"runners yet (f2i_mobile.runners.open_runner)") from None
    manifest = Manifest.load(options.artifacts)
    if options.tile and options.tile != manifest.tile:
        raise F2IError(f"--tile {options.tile}: the graphs in {options.artifacts} were exported "
                       f"for tile {manifest.tile}")
    runner = open_runner(options.backend, artifacts=options.artifacts,
                         precision=options.precision)
    return Engine(runner, manifest.scale, manifest.tile,
                  int(manifest.model.get("lr_multiple", 1)), manifest=manifest,
                  origin=manifest.model.get("origin", ""), weights_in_base=False)


def output_size(photo_size: tuple[int, int], scale: float) -> tuple[int, int]:
    if not 0 < scale <= 16:
        raise F2IError(f"--scale must be in (0, 16], not {scale}")
    w, h = photo_size
    return max(1, round(w * scale)), max(1, round(h * scale))


@dataclass
class Job:
    plan: TilePlan
    schedule: Schedule
    out_size: tuple[int, int]
    whole_output: bool
    notes: list[str]

    def describe(self) -> str:
        s = self.schedule
        lines = [self.plan.describe(),
                 f"schedule: {s.order} order, batch {s.batch}"
                 f"{', intermediates spilled to disk' if s.spill else ''}; "
                 f"peak memory estimate {format_size(s.peak_bytes)}"
                 f"{'; output assembled in memory' if self.whole_output else '; output streamed'}"]
        return "\n".join(lines + self.notes)


def plan_job(engine: Engine, photo_size: tuple[int, int], output: str | Path | None,
             options: UpscaleOptions, channels: int = 4, describe: bool = False) -> Job:
    """The tile plan and a schedule that fits the budget; warns (SeamWarning) when the overlap
    does not cover the receptive field."""
    if options.color_fix not in METHODS:
        raise F2IError(f"--color-fix must be one of {', '.join(METHODS)}, "
                       f"not {options.color_fix!r}")
    if options.color_scope not in ("tile", "image"):
        raise F2IError(f"--color-scope must be tile or image, not {options.color_scope!r}")
    scale = float(options.scale or engine.scale)
    out_size = output_size(photo_size, scale)
    one_tile = plan_tiles(*photo_size, scale=engine.scale, tile=engine.tile, overlap=0,
                          multiple=engine.multiple).count == 1
    rf = None if one_tile else engine.receptive_field
    chain = None if rf is None else int(rf["chain"])
    overlap = options.overlap if options.overlap is not None else default_overlap(
        chain, engine.tile, engine.multiple)
    need_costs = describe or options.memory_budget is not None
    plan = plan_tiles(*photo_size, scale=engine.scale, tile=engine.tile, overlap=overlap,
                      multiple=engine.multiple, conditioning=options.conditioning,
                      receptive_field=chain, costs=engine.costs if need_costs else {})
    notes = []
    if rf is not None and rf.get("saturated"):
        notes.append(f"note: the receptive field reached across the {rf['probe']} px probe; "
                     f"it may be wider than {chain} LR px")
    if engine.origin and "untrained" in engine.origin:
        notes.append(f"note: {engine.origin}")
    if plan.seam_safe is False:
        warnings.warn(SeamWarning(
            f"overlap {plan.overlap} LR px is below the {min_overlap(chain, engine.multiple)} "
            f"LR px that keeps seams under 1e-3 (receptive field {chain} LR px on each side); "
            f"expect visible seams"), stacklevel=2)
    if rf is None and plan.count > 1:
        notes.append("note: receptive field not measured for these artifacts; seams not checked")
    fmt = check_output_path(output) if output is not None else "PNG"
    whole = fmt == "JPEG" or out_size != plan.out_size or (
        options.color_fix != "none" and options.color_scope == "image")
    fixed = None
    if hasattr(engine.runner, "batch_size"):
        fixed = {engine.runner.batch_size(g) for g in ("encoder", "unet", "decoder")} - {None}
        fixed = max(fixed) if fixed else None
    costs = plan.costs
    if engine.weights_in_base:  # torch holds every weight from the start; no graph to release
        plan = _without_weights(plan)
    schedule = choose_schedule(plan, options.memory_budget, order=options.order,
                               batch=options.batch, fixed_batch=fixed,
                               base_bytes=resident_bytes(), out_channels=channels,
                               whole_output=whole,
                               context_pass=hasattr(engine.runner, "calibrate"))
    plan = _with_costs(plan, costs)
    return Job(plan, schedule, out_size, whole, notes)


def _without_weights(plan: TilePlan) -> TilePlan:
    from dataclasses import replace

    return replace(plan, costs={g: replace(c, weight_bytes=0) for g, c in plan.costs.items()})


def _with_costs(plan: TilePlan, costs) -> TilePlan:
    from dataclasses import replace

    return replace(plan, costs=costs)


def _alpha_band(alpha: np.ndarray, scale: int, width: int, y0: int, rows: int) -> np.ndarray:
    """Output rows [y0, y0 + rows) of the bicubic upscale of `alpha`, from the LR rows they need
    (OpenCV's bicubic reads 2 rows each side; 3 kept for rounding)."""
    h = alpha.shape[0]
    a = max(0, (y0 // scale) - 3)
    b = min(h, -(-(y0 + rows) // scale) + 3)
    band = resize(alpha[a:b], width, (b - a) * scale)
    return band[y0 - a * scale: y0 - a * scale + rows]


def _photo_bands(scheduler: TileScheduler, photo: Photo, scale: int, fmt: str,
                 ) -> Iterator[np.ndarray]:
    for y0, rgb in scheduler.bands(photo.rgb):
        alpha = (None if photo.alpha is None
                 else _alpha_band(photo.alpha, scale, rgb.shape[1], y0, rgb.shape[0]))
        yield to_uint(photo.with_pixels(rgb, alpha), fmt)


def _run_whole(scheduler: TileScheduler, photo: Photo, job: Job, options: UpscaleOptions,
               ) -> Photo:
    rgb = np.concatenate([band for _, band in scheduler.bands(photo.rgb)], axis=0)
    width, height = job.out_size
    if options.color_fix != "none" and options.color_scope == "image":
        rgb = color_fix(rgb, resize(photo.rgb, rgb.shape[1], rgb.shape[0]), options.color_fix)
    if rgb.shape[:2] != (height, width):
        rgb = resize(rgb, width, height)
    alpha = None if photo.alpha is None else resize(photo.alpha, width, height)
    return photo.with_pixels(rgb, alpha)


def _scheduler(engine: Engine, job: Job, options: UpscaleOptions, spill_dir) -> TileScheduler:
    color = options.color_fix if options.color_scope == "tile" else "none"
    return TileScheduler(engine.runner, job.plan, job.schedule, color=color,
                         spill_dir=spill_dir, progress=options.progress)


def upscale_photo(model, photo: Photo, scale: float | None = None,
                  options: UpscaleOptions | None = None) -> Photo:
    """A photo through the torch model, in memory (for outputs that fit in memory)."""
    from dataclasses import replace

    options = replace(options or UpscaleOptions(), **({"scale": scale} if scale else {}))
    engine = open_engine(None, options, model=model)
    job = plan_job(engine, photo.size, None, options)
    job.whole_output = True
    return _run_whole(_scheduler(engine, job, options, None), photo, job, options)


def plan_upscale(input_path: str | Path, output: str | Path, model_path: str | Path | None,
                 options: UpscaleOptions) -> Job:
    """The plan `upscale_file` would run, without running it."""
    check_output_path(output)
    photo = read_image(input_path)
    engine = open_engine(model_path, options)
    return plan_job(engine, photo.size, output, options, _channels(photo), describe=True)


def _channels(photo: Photo) -> int:
    return (1 if photo.grayscale else 3) + (photo.alpha is not None)


def upscale_file(input_path: str | Path, output: str | Path, model_path: str | Path | None,
                 options: UpscaleOptions) -> tuple[tuple[int, int], tuple[int, int], Job]:
    """Super-resolve an image file into `output`, streamed band by band unless the output must
    be assembled (JPEG, another scale, image-wide colour fix). Returns (input size, output
    size, job)."""
    from f2i_mobile.tiling.writer import write_bands

    fmt = check_output_path(output)
    if options.memory_budget is not None:
        return_freed_memory()
    photo = read_image(input_path)
    engine = open_engine(model_path, options)
    job = plan_job(engine, photo.size, output, options, _channels(photo))
    spill_dir = Path(output).resolve().parent
    scheduler = _scheduler(engine, job, options, spill_dir if os.access(spill_dir, os.W_OK)
                           else None)
    try:
        if job.whole_output:
            write_image(output, _run_whole(scheduler, photo, job, options))
        else:
            width, height = job.out_size
            depth = np.uint8 if photo.bit_depth == 8 else np.uint16
            write_bands(output, width, height, _channels(photo), depth,
                        _photo_bands(scheduler, photo, engine.scale, fmt))
    finally:
        close = getattr(engine.runner, "close", None)
        if close is not None:
            close()
    return photo.size, job.out_size, job
