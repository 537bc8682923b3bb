"""`f2i-mobile upscale --precision w8a8` without an export folder: the default path in int8.

The default path (`f2i_mobile.export.cache`) builds a model's fp32 ONNX graphs once into the
user's cache. With `--precision w8a8` it builds their ONNX Runtime w8a8 form there as well, as
`export --backends onnx --quant w8a8` does (static QDQ quantization calibrated on the bundled
calibration images) but starting from the cached fp32 graphs (built first when they are not
there yet; the float export was 77 % of the tiny model's int8 build), and keeps it only when
it passes the quantization gate in the same build: `quant-check` on the first `GATE_TILES`
held-out check tiles, end to end against float, at the w8a8 target (`report.MIN_PSNR`). A
model whose int8 graphs miss it is refused in one line, naming the figure, and the refusal is
remembered like any failed build (delete the `.failed` file beside the cache folder to try
again). There is no silent fall back to fp32: the user asked for int8.

Why here and not in export/cache.py: quantization sits above export in the layers, so the
CLI hands `upscale` this resolver, which leaves every other request to the export layer's.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

from f2i_mobile.core.contract import AUTO
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.model_files import config_header, model_folder
from f2i_mobile.export import cache
from f2i_mobile.upscale import UpscaleOptions

SCHEME = "w8a8"
GATE_TILES = 2  # held-out check tiles the build's gate runs on (the docs' table uses 2 as well)
BUILD_TIME = ("3 to 20 min on 2 CPU cores for the bundled model, by CPU and tile: "
              "calibration, quantization, gate")


def resolve(model_path: str | Path | None, options: UpscaleOptions,
            ) -> tuple[UpscaleOptions, list[str]]:
    """`cache.resolve`, except that the default backend at `--precision w8a8` builds (once)
    and runs the gated int8 ONNX graphs."""
    if options.backend != AUTO or options.artifacts is not None or options.precision != SCHEME:
        return cache.resolve(model_path, options)
    missing = cache.missing_packages()
    if missing:
        raise F2IError(f"--precision {SCHEME} runs int8 ONNX graphs: pip install "
                       f"{' '.join(missing)}")
    folder = model_folder(model_path)
    tile = options.tile or cache.auto_tile(int(config_header(folder)["config"]["tile"]))
    try:
        out = cache.cached_graphs(folder, tile, options.progress, SCHEME,
                                  partial(build_int8, checkpoint=folder), BUILD_TIME)
    except cache.BuildFailed as exc:
        raise F2IError(f"--precision {SCHEME}: {exc}") from None
    return replace(options, backend=cache.BACKEND, artifacts=str(out), tile=tile), []


def build_int8(model, work: Path, tile: int, progress: bool, checkpoint: Path) -> None:
    """The model's w8a8 ONNX graphs into `work`, with their calibration and check sets, or an
    error naming the gate's figure when they are not faithful enough to keep. They are
    quantized from the checkpoint's cached fp32 graphs, which the fp32 default path runs too."""
    from f2i_mobile.calibration.quantize import QuantRequest, quantize_model
    from f2i_mobile.calibration.report import quant_check

    float_export = cache.cached_graphs(checkpoint, tile, progress)
    quantize_model(model, work, QuantRequest(cache.BACKEND, SCHEME), tile=tile,
                   float_export=float_export)
    report = quant_check(work, tiles=GATE_TILES)
    if not report.ok:
        raise RuntimeError(f"its int8 graphs miss the quantization gate on held-out photos "
                           f"({'; '.join(report.failures)}, against float); use fp32, or "
                           f"export and check them yourself")
