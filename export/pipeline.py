"""`f2i-mobile export`: the model's graphs -> OUT/<backend>/<graph>.<ext> + OUT/manifest.json.

Every artifact is lowered inside a hidden work folder next to its final place and moved into
place only when complete (`core.atomic.staged`), and the manifest is rewritten (atomically) after
each one: a crash or a kill leaves complete artifacts listed in the manifest and, at worst, a
hidden work folder that the next export into OUT sweeps away. A failing graph is reported with
its backend and reason; the others still export, and the command exits non-zero at the end
(`--fail-fast` stops at the first failure instead).

The manifest is written in full here: besides the graphs and artifacts, the tiling record (LR
multiple, the receptive field measured on the model, the seam-safe overlap), so a runtime plans
tiles exactly as the torch path does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from f2i_mobile.core.atomic import staged, sweep
from f2i_mobile.core.contract import (
    BACKENDS,
    FLOAT_PRECISIONS,
    GRAPHS,
    Backend,
    artifact_name,
)
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import (
    Artifact,
    Manifest,
    ModelRecord,
    TilingRecord,
    path_size,
    sha256_path,
)
from f2i_mobile.core.planner import default_overlap
from f2i_mobile.core.quiet import quiet_libraries
from f2i_mobile.export import lowering
from f2i_mobile.export.common import Lowered
from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.checkpoint import lr_multiple, weights_hash
from f2i_mobile.models.graphs import described_specs, graph_modules, norm_layout, one_step_record


@dataclass
class Failure:
    backend: str
    graph: str
    reason: str

    def __str__(self) -> str:
        return f"{self.backend}/{self.graph}: {self.reason}"


def tiling_record(model: F2IDiffSR, tile: int) -> TilingRecord:
    """What the tiler needs to plan the exported graphs, measured on the torch model (the
    exported graphs compute the same functions)."""
    from f2i_mobile.tiling.measure import cached_receptive_fields

    multiple = lr_multiple(model.config)
    rf = cached_receptive_fields(model)
    return TilingRecord(lr_multiple=multiple, overlap=default_overlap(rf.chain, tile, multiple),
                        receptive_field=rf, statistics={
                            g: list(norms) for g, norms in norm_layout(model.config).items()})


def model_record(model: F2IDiffSR) -> ModelRecord:
    config = model.config
    return ModelRecord(config.name, config.hash(), model.metadata.get("origin", ""),
                       config.to_dict(), weights_hash(model))


def new_manifest(model: F2IDiffSR, tile: int, batch: int = 1,
                 record: ModelRecord | None = None) -> Manifest:
    config = model.config
    return Manifest(
        model=record or model_record(model),
        scale=config.scale, tile=tile, output_tile=tile * config.scale, batch=batch,
        one_step=one_step_record(config), tiling=tiling_record(model, tile),
        graphs=described_specs(model, tile, batch))


def open_manifest(out: Path, model: F2IDiffSR, tile: int, batch: int = 1) -> Manifest:
    """A manifest for this model and tile that keeps the artifacts already in OUT; refuses an
    OUT that holds another model's or tile's export."""
    if not (out / "manifest.json").is_file():
        return new_manifest(model, tile, batch)
    old, record = Manifest.load(out), model_record(model)
    if not old.model.same_model(record) or (old.tile, old.batch) != (tile, batch):
        raise F2IError(f"{out} holds an export of another model or tile (config "
                       f"{old.model.config_hash}, weights {old.model.weights_hash or '?'}, tile "
                       f"{old.tile}; this one: {record.config_hash}, {record.weights_hash}, "
                       f"{tile}); use a new --out")
    fresh = new_manifest(model, tile, batch, record)  # measured only for an OUT it may add to
    fresh.artifacts = old.artifacts
    return fresh


def publish(manifest: Manifest, out: Path, backend: str, graph: str, precision: str,
            write: Callable[[Path], Lowered]) -> Artifact:
    """Write one artifact atomically (`write(path)` fills a work folder), add it to the
    manifest and save the manifest."""
    final = out / backend / artifact_name(graph, precision, BACKENDS[backend].ext)
    sweep(final.parent)
    with staged(final) as work:
        lowered = write(work / final.name)
    artifact = Artifact(backend, graph, precision, final.relative_to(out).as_posix(),
                        path_size(final), sha256_path(final), lowered.io_layout, lowered.details)
    manifest.add(artifact)
    manifest.save(out)
    return artifact


def export_model(model: F2IDiffSR, out: str | Path, backends: list[Backend],
                 tile: int | None = None, precision: str = "fp32", fail_fast: bool = False,
                 progress: bool = True) -> tuple[Manifest, list[Failure]]:
    if precision not in FLOAT_PRECISIONS:
        raise F2IError(f"--precision must be one of {', '.join(FLOAT_PRECISIONS)}, not "
                       f"{precision!r}; quantized precisions come from --quant")
    quiet_libraries()  # again: importing torch reset the exporters' loggers to WARNING
    out = Path(out)
    tile = tile or model.config.tile
    manifest = open_manifest(out, model, tile)
    out.mkdir(parents=True, exist_ok=True)
    modules = graph_modules(model)
    failures: list[Failure] = []
    bar = tqdm([(b, g) for b in backends for g in GRAPHS], desc="export", unit="graph",
               disable=not progress)
    for backend, graph in bar:
        bar.set_description(f"export {backend.name}/{graph}")
        lower = lowering.lowerer(backend.name)
        module, spec = modules[graph], manifest.graphs[graph]
        try:
            publish(manifest, out, backend.name, graph, precision,
                    lambda path: lower(module, spec, path, precision))  # noqa: B023
        except Exception as exc:  # any backend's failure is reported, not raised
            failures.append(Failure(backend.name, graph, _reason(exc)))
            bar.write(f"failed: {failures[-1]}")
            if fail_fast:
                break
    bar.close()
    manifest.save(out)
    return manifest, failures


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
