"""The export orchestration: every requested backend x graph, one artifact at a time.

Each artifact is written atomically to OUT/<backend>/<graph>.<ext> and the manifest is saved
(atomically) right after it, so a crash or a kill keeps exactly the artifacts that finished.
Exporting again into the same OUT replaces the entries of the same backend, graph and precision
and keeps the others. A failing graph does not stop the rest unless `fail_fast`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from export import BACKENDS, PRECISIONS, backend_module
from export.vendor import require_sdks
from f2i_mobile.errors import F2IError
from f2i_mobile.manifest import (MANIFEST, Artifact, GraphInfo, Manifest, TensorInfo,
                                 path_size, sha256_path)


@dataclass
class ExportResult:
    out: Path
    manifest: Manifest
    written: list[Artifact] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # "backend/graph" -> export time
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{a.path:<28}{a.bytes / 1e6:10.2f} MB  {a.precision}  "
                 f"{self.seconds[f'{a.backend}/{a.graph}']:6.1f} s" for a in self.written]
        lines += [f"FAILED {f}" for f in self.failures]
        lines.append(f"{len(self.written)} artifacts written, {len(self.failures)} failed; "
                     f"manifest {self.out / MANIFEST}")
        return "\n".join(lines)


def parse_backends(backends: str | list[str]) -> list[str]:
    names = backends.split(",") if isinstance(backends, str) else list(backends)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise F2IError(f"unknown backend {', '.join(unknown) or '(none)'}; choose from "
                       f"{', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def check_request(backends: list[str], precision: str) -> None:
    """Everything that can be refused without loading a model, vendor SDKs first."""
    if precision not in PRECISIONS:
        raise F2IError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    require_sdks(backends)


def new_manifest(model, tile: int, batch: int) -> Manifest:
    from f2i_mobile.graphs import count_flops, count_params, graph_specs, one_step_record

    config = model.config
    specs = graph_specs(config, tile, batch)
    params, flops = count_params(model), count_flops(model, tile)
    graphs = {
        name: GraphInfo(name=name, description=spec.description,
                        inputs=[TensorInfo(**t.to_dict()) for t in spec.inputs],
                        outputs=[TensorInfo(**t.to_dict()) for t in spec.outputs],
                        params=params[name], flops=flops[name] * batch)
        for name, spec in specs.items()
    }
    return Manifest(
        model={"name": config.name, "config_hash": config.hash(),
               "origin": model.metadata.get("origin", "checkpoint")},
        scale=config.scale, tile=tile, output_tile=tile * config.scale, batch=batch,
        one_step=one_step_record(config), graphs=graphs)


def open_manifest(out: Path, fresh: Manifest) -> Manifest:
    """The manifest to add to: the one in OUT when it describes the same model, tile and batch
    (its artifacts whose files are still there are kept), else `fresh`."""
    if not (out / MANIFEST).is_file():
        return fresh
    old = Manifest.load(out)
    same = (old.model.get("config_hash"), old.tile, old.batch) == (
        fresh.model["config_hash"], fresh.tile, fresh.batch)
    if not same:
        raise F2IError(f"{out} holds an export of another model or tile ({old.model.get('name')}, "
                       f"tile {old.tile}); choose a new --out or remove it")
    fresh.artifacts = [a for a in old.artifacts if (out / a.path).exists()]
    return fresh


def export_model(model, out: str | Path, backends: str | list[str] = "executorch,tflite,coreml,onnx",
                 tile: int | None = None, precision: str = "fp32", fail_fast: bool = False,
                 batch: int = 1) -> ExportResult:
    """Lower the model's four graphs (LoRA merged) for each backend into `out`."""
    from f2i_mobile.graphs import GRAPHS, graph_modules, graph_specs

    backends = parse_backends(backends)
    check_request(backends, precision)
    out = Path(out)
    tile = tile or model.config.tile
    specs = graph_specs(model.config, tile, batch)
    modules = graph_modules(model)
    manifest = open_manifest(out, new_manifest(model, tile, batch))
    out.mkdir(parents=True, exist_ok=True)
    manifest.save(out)
    result = ExportResult(out=out, manifest=manifest)
    jobs = [(b, g) for b in backends for g in GRAPHS]
    for backend, graph in tqdm(jobs, desc="export", unit="graph"):
        lowering = backend_module(backend)
        rel = f"{backend}/{graph}.{lowering.EXTENSION}"
        start = time.perf_counter()
        try:
            info = lowering.lower(modules[graph], specs[graph], precision, out / rel)
        except F2IError:
            raise
        except Exception as exc:  # any toolchain error: report it, go on with the others
            message = (f"{graph} on {backend} ({precision}) failed: {type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:300]}")
            if fail_fast:
                raise F2IError(message) from exc
            result.failures.append(message)
            continue
        result.seconds[f"{backend}/{graph}"] = time.perf_counter() - start
        artifact = Artifact(backend=backend, graph=graph, precision=precision, path=rel,
                            bytes=path_size(out / rel), sha256=sha256_path(out / rel),
                            io_layout=info.get("io_layout", {}),
                            details={k: v for k, v in info.get("details", {}).items()
                                     if v is not None})
        manifest.add(artifact)
        manifest.save(out)
        result.written.append(artifact)
    return result


def export_and_check(model_path: str | None, out: str | Path, backends: str, tile: int | None,
                     precision: str, fail_fast: bool = False, parity: bool = False):
    """What `f2i-mobile export` runs: refuse bad requests first, then load, export, and (with
    `parity`) check the artifacts against the model. Returns (ExportResult, checks or None)."""
    from f2i_mobile.pipeline import load_model

    check_request(parse_backends(backends), precision)
    model = load_model(model_path)
    result = export_model(model, out, backends, tile, precision, fail_fast)
    if not parity:
        return result, None
    from export.parity import check_parity

    return result, check_parity(model, out)
