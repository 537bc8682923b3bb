"""A photo's way through `f2i-mobile upscale`: read, plan, run the tiles, colour, write.

    read_image -> open_engine -> plan_job -> TileScheduler.bands -> write_output

`open_engine` picks what runs the graphs (the torch model, or an export's artifacts through a
runtime) and what the planner knows of it (tile, LR multiple, receptive field, memory costs).
`backend="auto"` (the CLI's default) is settled there, when the first photo runs, by the
`resolve` the options carry: the CLI passes `f2i_mobile.export.cache.resolve`, which builds the
model's ONNX graphs once into the user's cache (this module sits below export and cannot).
`plan_job` decides everything before any tile runs: the output's size and whether it is
streamed or assembled in memory, the overlap, the tile plan and a schedule that fits the memory
budget (or one line saying it cannot). The scheduler then yields output bands, colour-fixed per
tile, and `write_output` streams them to disk (or assembles them when the format or an
image-wide colour fix needs the whole output). Alpha is upscaled bicubically beside the model.
`--scale` other than the model's own is reached Real-ESRGAN's way: run at the model's scale,
then resize. `upscale_many` takes a set of photos (files, folders) into one folder on one
engine, photo by photo, a failed photo reported and the rest run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm import tqdm

from f2i_mobile.core.contract import AUTO, DEFAULT_COLOR_FIX, RUNNABLE, TORCH
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.image import (
    READ_SUFFIXES,
    Photo,
    check_output_path,
    output_icc,
    read_image,
    to_uint,
    write_formats,
    write_image,
)
from f2i_mobile.core.imaging import resize
from f2i_mobile.core.manifest import Manifest
from f2i_mobile.core.memory import resident_bytes, return_freed_memory
from f2i_mobile.core.planner import (
    MAX_BATCH,
    GraphCost,
    ReceptiveField,
    Schedule,
    TilePlan,
    choose_schedule,
    default_overlap,
    format_size,
    min_overlap,
    plan_tiles,
)
from f2i_mobile.runners.base import GraphRunner
from f2i_mobile.tiling.colorfix import METHODS, color_fix
from f2i_mobile.tiling.scheduler import TileScheduler
from f2i_mobile.tiling.writer import STREAMED

# Tiles per graph call on a GPU when --batch is not given: of 8, 16 and 32, 16 was fastest for
# the eff preset's 512 px output tiles on an H200 (benchmarks/gpu.py, docs/gpu.md).
GPU_BATCH = 16


class SeamWarning(UserWarning):
    """The overlap does not cover the receptive field: tiles may show seams."""


@dataclass
class UpscaleOptions:
    tile: int | None = None  # LR px; default: the model's (or the export's) tile
    overlap: int | None = None  # LR px; default: seam-safe for the measured receptive field
    order: str | None = None  # tile | stage; default: the fastest that fits the budget
    batch: int | None = None
    memory_budget: int | None = None  # bytes of peak resident memory
    color_fix: str = DEFAULT_COLOR_FIX  # none | adain | wavelet
    color_scope: str = "tile"  # tile | image (image: the whole output is held in memory)
    conditioning: str = "image"  # image | tile (see tiling.scheduler)
    scale: float | None = None
    backend: str = TORCH  # torch, an exported backend (with `artifacts`), or auto (`resolve`)
    artifacts: str | None = None  # export folder (backends other than torch)
    precision: str = "fp32"
    # Where the torch model runs: cpu, or cuda (bf16, channels_last, SDPA; `runners.torch_runner`)
    device: str = "cpu"
    compile: bool = False  # torch.compile each graph at one batch (pays off over many photos)
    progress: bool = False
    # U-Net calls per tile: 1 is the one step the graphs run everywhere; more samples through a
    # diffusers scheduler, on the torch backend only (`models.sr.MultiStepDenoiser`).
    steps: int = 1
    # For backend auto: (model path, these options) -> the options with a concrete backend, and
    # notes on the choice; `f2i_mobile.export.cache.resolve` (`export.cache.default_options`).
    resolve: Callable[[str | Path | None, UpscaleOptions],
                      tuple[UpscaleOptions, list[str]]] | None = field(default=None, repr=False)

    def check(self) -> None:
        if self.backend == AUTO and self.resolve is None:
            raise F2IError("backend auto needs a resolver: f2i_mobile.export.cache.default_options()"
                           " gives options that carry one")
        if self.backend not in (*RUNNABLE, AUTO):
            raise F2IError(f"--backend must be one of {', '.join((AUTO, *RUNNABLE))}, "
                           f"not {self.backend!r}")
        if self.color_fix not in METHODS:
            raise F2IError(f"--color-fix must be one of {', '.join(METHODS)}, "
                           f"not {self.color_fix!r}")
        if self.steps < 1:
            raise F2IError(f"--steps must be at least 1, not {self.steps}")
        if self.steps > 1 and self.backend not in (TORCH, AUTO):
            raise F2IError(f"--steps {self.steps} runs on --backend torch only: exported graphs "
                           "are the one step a phone runs")
        if self.compile and self.device == "cpu" and self.backend != TORCH:
            raise F2IError("--compile compiles the torch model: add --backend torch (or "
                           "--device cuda); exported graphs are compiled by their runtime")
        if self.device != "cpu" and self.backend not in (TORCH, AUTO):
            raise F2IError(f"--device {self.device} runs the torch model; --backend "
                           f"{self.backend} runs on the CPU")
        if self.color_scope not in ("tile", "image"):
            raise F2IError(f"--color-scope must be tile or image, not {self.color_scope!r}")


@dataclass
class Engine:
    """What runs the graphs, and what the planner knows about them. For the torch model the
    receptive field and costs are measured on first use only (a one-tile photo needs neither
    unless a budget or a plan is asked for); an export's are in its manifest and runtime."""

    runner: GraphRunner
    scale: int
    tile: int
    multiple: int
    origin: str = ""
    model: object = None  # the torch model, when the runner runs it
    steps: int = 1  # U-Net calls per tile (torch only)
    manifest: Manifest | None = None  # the export's, when the runner runs its artifacts
    notes: list[str] = field(default_factory=list)  # why this runtime (backend auto)
    max_batch: int = MAX_BATCH  # the largest batch the schedule picks on its own

    @property
    def weights_resident(self) -> bool:
        """Torch holds every weight before the run; exported graphs load one at a time."""
        return self.model is not None

    @cached_property
    def costs(self) -> dict[str, GraphCost]:
        if self.model is None:
            from f2i_mobile.tiling.runner_costs import cached_artifact_costs
            return cached_artifact_costs(self.runner, self.manifest)
        from f2i_mobile.tiling.measure import cached_costs
        return cached_costs(self.model, self.tile)

    @cached_property
    def receptive_field(self) -> ReceptiveField | None:
        if self.model is None:
            return self.manifest.tiling.receptive_field
        from f2i_mobile.tiling.measure import cached_receptive_fields
        return cached_receptive_fields(self.model, self.steps)

    def close(self) -> None:
        self.runner.close()


def open_engine(model_path: str | Path | None, options: UpscaleOptions, model=None) -> Engine:
    options.check()
    notes: list[str] = []
    if options.backend == AUTO and options.steps > 1:
        options = replace(options, backend=TORCH)
        notes.append(f"note: --steps {options.steps} runs the torch model (exported graphs are "
                     "one step)")
    if options.backend == AUTO and options.device != "cpu":
        options = replace(options, backend=TORCH)  # a GPU runs the torch model, not exports
    if options.backend == AUTO:
        options, notes = options.resolve(model_path, options)
        options.check()
    engine = _open_engine(model_path, options, model)
    # what the runtime says of itself (int8 run unfused on this CPU, say) reaches the user too
    engine.notes = notes + [f"note: {n}" for n in engine.runner.notes]
    return engine


def _open_engine(model_path: str | Path | None, options: UpscaleOptions, model) -> Engine:
    if options.backend == TORCH:
        from f2i_mobile.models.checkpoint import load_model, lr_multiple
        from f2i_mobile.runners.torch_runner import TorchRunner, check_device

        device = check_device(options.device)
        model = model if model is not None else load_model(model_path)
        model = model.to(device)  # the receptive field and costs are measured there too, in fp32
        tile, multiple = options.tile or model.config.tile, lr_multiple(model.config)
        if tile % multiple:
            raise F2IError(f"--tile {tile} must be a multiple of {multiple} LR px for this model")
        precision = "bf16" if device.type == "cuda" else "fp32"
        max_batch = GPU_BATCH if device.type == "cuda" else MAX_BATCH
        compile = (options.batch or max_batch) if options.compile else 0
        runner = TorchRunner.of_model(model, tile, options.steps, precision, compile)
        return Engine(runner, model.config.scale,
                      tile, multiple, model.metadata.get("origin", ""), model=model,
                      steps=options.steps, max_batch=max_batch)
    if options.artifacts is None:
        raise F2IError(f"--backend {options.backend} needs --artifacts (an export folder)")
    from f2i_mobile.runners import open_runner

    manifest = Manifest.load(options.artifacts)
    if options.tile and options.tile != manifest.tile:
        raise F2IError(f"--tile {options.tile}: the graphs in {options.artifacts} were exported "
                       f"for tile {manifest.tile}")
    runner = open_runner(options.backend, options.artifacts, options.precision)
    return Engine(runner, manifest.scale, manifest.tile, manifest.tiling.lr_multiple,
                  manifest.model.origin, manifest=manifest)


@dataclass
class Job:
    plan: TilePlan
    schedule: Schedule
    out_size: tuple[int, int]
    whole_output: bool  # assembled in memory (JPEG/WebP/HEIC, another scale, image-wide colour fix)
    notes: list[str]

    def describe(self) -> str:
        s = self.schedule
        lines = [self.plan.describe(),
                 f"schedule: {s.order} order, batch {s.batch}"
                 f"{', intermediates spilled to disk' if s.spill else ''}; "
                 f"peak memory estimate {format_size(s.peak_bytes)}"
                 f"{'; output assembled in memory' if self.whole_output else '; output streamed'}"]
        return "\n".join(lines + self.notes)


def output_size(photo_size: tuple[int, int], scale: float) -> tuple[int, int]:
    if not 0 < scale <= 16:
        raise F2IError(f"--scale must be in (0, 16], not {scale}")
    w, h = photo_size
    return max(1, round(w * scale)), max(1, round(h * scale))


def plan_job(engine: Engine, photo: Photo, output: str | Path | None, options: UpscaleOptions,
             describe: bool = False) -> Job:
    """Everything decided before a tile runs: output size and form, overlap, tile plan and a
    schedule within the budget. Warns (SeamWarning) when the overlap does not cover the
    receptive field."""
    out_size = output_size(photo.size, float(options.scale or engine.scale))
    fmt = check_output_path(output, out_size) if output is not None else "PNG"
    whole = (output is None or fmt not in STREAMED
             or out_size != (photo.size[0] * engine.scale, photo.size[1] * engine.scale)
             or (options.color_fix != "none" and options.color_scope == "image"))
    rf, overlap, notes = _overlap(engine, photo.size, options)
    plan = plan_tiles(*photo.size, scale=engine.scale, tile=engine.tile, overlap=overlap,
                      multiple=engine.multiple, conditioning=options.conditioning,
                      receptive_field=None if rf is None else rf.chain,
                      costs=engine.costs if describe or options.memory_budget else {})
    if plan.seam_safe is False:
        warnings.warn(SeamWarning(
            f"overlap {plan.overlap} LR px is below the {min_overlap(rf.chain, engine.multiple)} "
            f"LR px that keeps seams under 1e-3 (receptive field {rf.chain} LR px on each side); "
            f"expect visible seams"), stacklevel=2)
    schedule = choose_schedule(
        plan, options.memory_budget, order=options.order, batch=options.batch,
        fixed_batch=engine.runner.batch_size("unet"), max_batch=engine.max_batch,
        base_bytes=resident_bytes(),
        out_channels=photo.channels, whole_output=whole,
        weights_resident=engine.weights_resident)
    return Job(plan, schedule, out_size, whole, notes)


def _overlap(engine: Engine, size: tuple[int, int], options: UpscaleOptions,
             ) -> tuple[ReceptiveField | None, int, list[str]]:
    """The receptive field (not needed for a one-tile photo), the overlap and notes on them."""
    one_tile = plan_tiles(*size, scale=engine.scale, tile=engine.tile, overlap=0,
                          multiple=engine.multiple).count == 1
    rf = None if one_tile else engine.receptive_field
    notes = list(engine.notes)
    if rf is not None and rf.saturated:
        notes.append(f"note: the receptive field reached across the {rf.probe} px probe; it may "
                     f"be wider than {rf.chain} LR px")
    if rf is None and not one_tile:
        notes.append("note: receptive field not measured for these artifacts; seams not checked")
    if "untrained" in engine.origin:
        notes.append(f"note: {engine.origin}")
    overlap = options.overlap if options.overlap is not None else default_overlap(
        None if rf is None else rf.chain, engine.tile, engine.multiple)
    return rf, overlap, notes


def run_job(engine: Engine, job: Job, photo: Photo, options: UpscaleOptions,
            spill_dir: str | Path | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """The SR output in bands (first row, rows x W x 3 float32), colour-fixed per tile."""
    color = options.color_fix if options.color_scope == "tile" else "none"
    scheduler = TileScheduler(engine.runner, job.plan, job.schedule, color=color,
                              spill_dir=spill_dir, progress=options.progress)
    return scheduler.bands(photo.rgb)


def assemble(bands: Iterator[tuple[int, np.ndarray]], photo: Photo, job: Job,
             options: UpscaleOptions) -> Photo:
    """The whole output in memory: bands joined, the image-wide colour fix, the final size."""
    rgb = np.concatenate([band for _, band in bands], axis=0)
    if options.color_fix != "none" and options.color_scope == "image":
        rgb = color_fix(rgb, resize(photo.rgb, rgb.shape[1], rgb.shape[0]), options.color_fix)
    width, height = job.out_size
    alpha = None if photo.alpha is None else resize(photo.alpha, width, height)
    return photo.with_pixels(resize(rgb, width, height), alpha)


def write_output(output: str | Path, bands: Iterator[tuple[int, np.ndarray]], photo: Photo,
                 job: Job, options: UpscaleOptions) -> None:
    """Stream the bands to `output` (PNG, TIFF), or assemble and write it whole."""
    if job.whole_output:
        write_image(output, assemble(bands, photo, job, options))
        return
    from f2i_mobile.tiling.writer import write_bands

    fmt = check_output_path(output)
    scale = job.plan.scale

    def rows() -> Iterator[np.ndarray]:
        for y0, rgb in bands:
            alpha = (None if photo.alpha is None
                     else _alpha_band(photo.alpha, scale, rgb.shape[1], y0, rgb.shape[0]))
            yield to_uint(photo.with_pixels(rgb, alpha), fmt)

    width, height = job.out_size
    write_bands(output, width, height, photo.channels,
                np.uint8 if photo.bit_depth == 8 else np.uint16, rows(), output_icc(photo, fmt))


def _alpha_band(alpha: np.ndarray, scale: int, width: int, y0: int, rows: int) -> np.ndarray:
    """Output rows [y0, y0 + rows) of the bicubic upscale of `alpha`, from the LR rows they need
    (OpenCV's bicubic reads 2 rows each side; 3 kept for rounding)."""
    h = alpha.shape[0]
    a = max(0, (y0 // scale) - 3)
    b = min(h, -(-(y0 + rows) // scale) + 3)
    band = resize(alpha[a:b], width, (b - a) * scale)
    return band[y0 - a * scale: y0 - a * scale + rows]


def upscale_photo(model, photo: Photo, options: UpscaleOptions | None = None) -> Photo:
    """A photo through the torch model, in memory."""
    options = replace(options or UpscaleOptions(), backend=TORCH)
    engine = open_engine(None, options, model=model)
    job = plan_job(engine, photo, None, options)
    return assemble(run_job(engine, job, photo, options), photo, job, options)


def plan_upscale(input_path: str | Path, output: str | Path, model_path: str | Path | None,
                 options: UpscaleOptions) -> Job:
    """The plan `upscale_file` would run, without running it."""
    check_output_path(output)
    photo = read_image(input_path)
    return plan_job(open_engine(model_path, options), photo, output, options, describe=True)


def upscale_file(input_path: str | Path, output: str | Path, model_path: str | Path | None,
                 options: UpscaleOptions) -> tuple[Photo, Job]:
    """Super-resolve an image file into `output`; returns the input photo and the job."""
    check_output_path(output)
    if options.memory_budget is not None:
        return_freed_memory()
    photo = read_image(input_path)
    engine = open_engine(model_path, options)
    try:
        job = _upscale_into(engine, photo, output, options)
    finally:
        engine.close()
    return photo, job


def _upscale_into(engine: Engine, photo: Photo, output: str | Path,
                  options: UpscaleOptions) -> Job:
    """Plan and run one photo on an open engine, and write `output`."""
    job = plan_job(engine, photo, output, options)
    folder = Path(output).resolve().parent
    spill = folder if os.access(folder, os.W_OK) else None
    write_output(output, run_job(engine, job, photo, options, spill), photo, job, options)
    return job


# --- several photos: files and folders into one output folder ---

@dataclass
class PhotoResult:
    """One photo of a set: written (`job` set), skipped (its output existed) or failed."""

    input: Path
    output: Path
    size: tuple[int, int] | None = None  # the input's (width, height), once read
    job: Job | None = None
    error: str | None = None  # one line naming the input

    @property
    def status(self) -> str:
        return "failed" if self.error else "written" if self.job else "skipped"


def set_outputs(inputs: list[str | Path], out_dir: str | Path,
                fmt: str = "png") -> list[tuple[Path, Path]]:
    """(input, output) for each photo of a set: a folder stands for the images directly in it
    (by suffix, sorted by name); outputs are `out_dir/<input's base name>.<fmt>`. What would
    go wrong for the whole set is refused here in one line, before any work: an output folder
    given as a file name, a folder without images, two inputs sharing an output name, an output
    that would overwrite its input."""
    out_dir, inputs = Path(out_dir), [Path(p) for p in inputs]
    if out_dir.is_file() or (not out_dir.is_dir() and out_dir.suffix.lower() in write_formats()):
        folder = next((p for p in inputs if p.is_dir()), None)
        raise F2IError(f"{folder}: is a directory; its outputs go into a folder, so -o names one, "
                       f"not {out_dir}" if folder else
                       f"{out_dir}: -o names a folder for several photos or --format (outputs "
                       f"are named after the inputs, with --format's extension)")
    check_output_path(out_dir / f"photo.{fmt}")  # refuses an extension that cannot be written
    pairs, claimed = [], {}
    for src in _expand(inputs):
        dst = out_dir / f"{src.stem}.{fmt}"
        if dst in claimed:
            raise F2IError(f"{dst}: would be written for both {claimed[dst]} and {src}; rename "
                           f"one or run them into different folders")
        if dst.resolve() == src.resolve():
            raise F2IError(f"{src}: its output would overwrite it; use another -o folder or "
                           f"--format")
        claimed[dst] = src
        pairs.append((src, dst))
    return pairs


def _expand(inputs: list[Path]) -> Iterator[Path]:
    for path in inputs:
        if not path.is_dir():
            yield path  # a missing or unreadable file fails on its own, in its turn
            continue
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in READ_SUFFIXES
                        and p.is_file() and not p.name.startswith("."))
        if not images:
            raise F2IError(f"{path}: no images in this folder ({', '.join(READ_SUFFIXES)})")
        yield from images


def upscale_many(inputs: list[str | Path], out_dir: str | Path, model_path: str | Path | None,
                 options: UpscaleOptions, fmt: str = "png",
                 skip_existing: bool = False) -> Iterator[PhotoResult]:
    """Super-resolve photos (files, or folders of them) into `out_dir`, yielding each photo's
    result as it finishes. The model is opened once for the set (on the first photo to run,
    so a finished set resumed with `skip_existing` loads nothing); a photo that fails is
    reported in its result and the rest still run. With `options.progress`, one bar for the
    set and none per photo. What would fail the whole set is refused at the call."""
    pairs = set_outputs(inputs, out_dir, fmt)
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # also where tiles spill
    return _run_set(pairs, model_path, options, skip_existing)


def _run_set(pairs: list[tuple[Path, Path]], model_path: str | Path | None,
             options: UpscaleOptions, skip_existing: bool) -> Iterator[PhotoResult]:
    if options.memory_budget is not None:
        return_freed_memory()
    per_photo = replace(options, progress=False)
    engine = None
    try:
        with tqdm(total=len(pairs), desc="photos", unit="photo",
                  disable=not options.progress) as bar:
            for src, dst in pairs:
                if skip_existing and dst.exists():
                    result = PhotoResult(src, dst)
                else:
                    if engine is None:  # a model that cannot be opened stops the set
                        engine = open_engine(model_path, options)
                    result = _photo_result(engine, src, dst, per_photo)
                bar.update()
                yield result
    finally:
        if engine is not None:
            engine.close()


def _photo_result(engine: Engine, src: Path, dst: Path, options: UpscaleOptions) -> PhotoResult:
    """One photo of a set; whatever goes wrong with it becomes a line in its result."""
    try:
        photo = read_image(src)
        return PhotoResult(src, dst, photo.size, _upscale_into(engine, photo, dst, options))
    except F2IError as exc:
        message = str(exc)
    except MemoryError:
        message = "out of memory; use a smaller input or tile"
    except Exception as exc:  # a bug on one photo should not cost the others, unless debugging
        if os.environ.get("F2I_MOBILE_DEBUG"):
            raise
        message = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
    named = message if message.startswith(str(src)) else f"{src}: {message}"
    return PhotoResult(src, dst, error=named)
