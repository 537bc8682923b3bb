"""Parity: every exported artifact against the torch graphs it came from.

Per graph, each runnable artifact (ExecuTorch, TFLite, ONNX runtimes here) and the torch module
run the registry's `example_inputs`; we report the max abs error and the PSNR over the
reference's value range. End to end, the four graphs run chained on a real photo crop (skimage's
chelsea at the tile size) through the artifacts and through torch; PSNR on [0, 1] images.
Core ML cannot predict outside macOS: its saved spec is checked instead (names, shapes, the MIL
program's op types), and the report says prediction was not run.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from f2i_mobile.errors import F2IError
from f2i_mobile.manifest import GRAPH_ORDER, Manifest

GRAPH_PSNR_DB = 60.0  # fp32 targets (issue 4)
END_TO_END_PSNR_DB = 50.0


def psnr(ref: np.ndarray, out: np.ndarray, peak: float | None = None) -> float:
    """PSNR in dB; `peak` defaults to the reference's value range (latents and tokens have no
    fixed range)."""
    peak = float(ref.max() - ref.min()) if peak is None else peak
    mse = float(np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


@dataclass
class Check:
    backend: str
    precision: str
    graph: str  # a graph name, or "end_to_end"
    max_abs: float | None = None
    psnr_db: float | None = None
    target_db: float | None = None
    note: str = ""
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        if self.psnr_db is None:
            return not self.note.startswith("FAILED")
        return self.target_db is None or self.psnr_db >= self.target_db


def photo_tile(size: int) -> np.ndarray:
    """A centre crop of skimage's chelsea (a real photo), 1x3xsize x size in [0, 1]."""
    from skimage import data

    rgb = data.chelsea().astype(np.float32) / 255.0
    h, w = rgb.shape[:2]
    if size > min(h, w):
        raise F2IError(f"tile {size} is larger than the parity photo ({w}x{h})")
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(rgb[y:y + size, x:x + size].transpose(2, 0, 1)[None])


def chain(runner, lr: np.ndarray) -> np.ndarray:
    """The four graphs in pipeline order, through one runner."""
    tokens = runner.run("conditioner", {"lr": lr})["tokens"]
    latent = runner.run("encoder", {"lr": lr})["latent"]
    latent_sr = runner.run("unet", {"latent": latent, "tokens": tokens})["latent_sr"]
    return runner.run("decoder", {"latent_sr": latent_sr})["sr"]


def runtime_checks(model, out: Path, manifest: Manifest, backend: str,
                   precision: str) -> list[Check]:
    from f2i_mobile.graphs import graph_specs
    from f2i_mobile.runners import open_runner
    from f2i_mobile.runners.torch_runner import TorchRunner

    specs = graph_specs(model.config, manifest.tile, manifest.batch)
    reference = TorchRunner(model)
    target = GRAPH_PSNR_DB if precision == "fp32" else None
    checks = []
    with open_runner(backend, out, precision) as runner:
        for graph in GRAPH_ORDER:
            spec = specs[graph]
            inputs = {t.name: x.numpy() for t, x in zip(spec.inputs, spec.example_inputs())}
            ref, got = reference.run(graph, inputs), runner.run(graph, inputs)
            name = spec.outputs[0].name
            checks.append(Check(backend, precision, graph,
                                float(np.abs(ref[name] - got[name]).max()),
                                psnr(ref[name], got[name]), target))
        lr = photo_tile(manifest.tile)
        ref, got = chain(reference, lr), chain(runner, lr)
        checks.append(Check(backend, precision, "end_to_end", float(np.abs(ref - got).max()),
                            psnr(ref, got, peak=1.0),
                            END_TO_END_PSNR_DB if precision == "fp32" else None,
                            note="skimage chelsea centre crop"))
    return checks


def coreml_spec_check(out: Path, manifest: Manifest, graph: str, precision: str) -> Check:
    """Validate a saved .mlpackage: I/O names and shapes against the manifest, and the MIL
    program's op types. No prediction: the Core ML framework exists only on macOS."""
    import coremltools as ct

    artifact = manifest.artifact("coreml", graph, precision)
    spec = ct.models.MLModel(str(out / artifact.path), skip_model_load=True).get_spec()
    info = manifest.graphs[graph]
    problems = []
    for kind, declared, expected in (("input", spec.description.input, info.inputs),
                                     ("output", spec.description.output, info.outputs)):
        got = {d.name: list(d.type.multiArrayType.shape) for d in declared}
        want = {t.name: list(t.shape) for t in expected}
        for name, shape in want.items():
            if name not in got:
                problems.append(f"{kind} {name} missing (has {', '.join(got)})")
            elif got[name] and got[name] != shape:
                problems.append(f"{kind} {name} shape {got[name]} != {shape}")
    ops: Counter = Counter()
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            ops.update(op.type for op in block.operations)
    if not ops:
        problems.append("the MIL program has no operations")
    note = ("FAILED: " + "; ".join(problems)) if problems else (
        "spec valid (I/O names and shapes, MIL ops); prediction not run: Core ML predicts "
        "only on macOS")
    return Check("coreml", precision, graph, note=note,
                 details={"ops": dict(sorted(ops.items())), "spec_version":
                          spec.specificationVersion})


def check_parity(model, out: str | Path) -> list[Check]:
    """Every (backend, precision) export in OUT against `model`, which must be the exported one."""
    from f2i_mobile.runners import RUNNERS

    out = Path(out)
    manifest = Manifest.load(out)
    if manifest.model.get("config_hash") != model.config.hash():
        raise F2IError(f"{out} was exported from another model config "
                       f"({manifest.model.get('name')}, {manifest.model.get('config_hash')})")
    checks = []
    for backend, precision in manifest.variants():
        if backend in RUNNERS:
            checks += runtime_checks(model, out, manifest, backend, precision)
        elif backend == "coreml":
            checks += [coreml_spec_check(out, manifest, g, precision) for g in GRAPH_ORDER]
        else:
            checks.append(Check(backend, precision, "all", note=f"not run: {backend} artifacts "
                                "run only on the vendor's device"))
    return checks


def format_checks(checks: list[Check]) -> str:
    lines = [f"{'backend':<11}{'prec':<6}{'graph':<13}{'max abs':>10}{'PSNR dB':>10}  result"]
    for c in checks:
        err = f"{c.max_abs:10.2e}" if c.max_abs is not None else f"{'-':>10}"
        db = ("inf" if c.psnr_db == math.inf else f"{c.psnr_db:.1f}") if c.psnr_db is not None \
            else "-"
        verdict = "ok" if c.ok else "BELOW TARGET" if c.psnr_db is not None else "FAILED"
        target = f" (target {c.target_db:.0f})" if c.target_db else ""
        note = f"  {c.note}" if c.note and c.psnr_db is None else ""
        lines.append(f"{c.backend:<11}{c.precision:<6}{c.graph:<13}{err}{db:>10}  "
                     f"{verdict}{target}{note}")
    return "\n".join(lines)
