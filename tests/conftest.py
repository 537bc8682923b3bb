"""Shared fixtures: tiny models and checkpoints built from configs (no downloads), the tiny
model's export, and a typed manifest for tests that need no real graphs.

Tiers: `pytest -m "not slow"` runs in minutes; tests marked `slow` lower real graphs (the
shared `exported` fixture), quantize or run fidelity gates. CI runs both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Measurements are cached per model in the user's cache; tests measure afresh, in their own.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="f2i-test-cache-")

# Each xdist worker is a process with its own thread pools. Sized to share the cores, they do not
# spin against each other: OpenMP's busy-wait makes an oversubscribed run many times slower.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "F2I_ORT_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

from f2i_mobile.core.quiet import quiet_libraries  # noqa: E402

quiet_libraries()

CLI = [sys.executable, "-m", "f2i_mobile.cli"]


TINY_IO = {"conditioner": (["lr"], ["tokens"]),
           "statistics": (["lr", "tokens"], ["encoder_stats", "unet_stats", "decoder_stats"]),
           "encoder": (["lr", "encoder_stats"], ["latent"]),
           "unet": (["latent", "tokens", "unet_stats"], ["latent_sr"]),
           "decoder": (["latent_sr", "decoder_stats"], ["sr"])}


def upscale(args, capsys) -> tuple[int, str, str]:
    """`f2i-mobile upscale ARGS` in this process: exit code, stdout, stderr. On torch unless
    ARGS name a backend: tests that are not about the runtime stay off the default path, whose
    first run exports the model to ONNX (minutes; tests/cli/test_default_path.py covers it)."""
    from f2i_mobile.cli import main

    args = [str(a) for a in args]
    code = main(["upscale", *args, *([] if "--backend" in args else ["--backend", "torch"])])
    out, err = capsys.readouterr()
    return code, out, err


def randomize_lora(model, seed: int = 0, std: float = 0.05) -> None:
    """peft initialises LoRA B to zero (no effect); give every adapter weight a value."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def make_manifest(tile: int = 16, scale: int = 4, batch: int = 1, flops: int = 2 * 10**9,
                  overlap: int = 4, multiple: int = 1, receptive_field=None):
    """A valid manifest with the tiny model's four graphs (no artifacts), for tests of readers
    that never run a graph (bench, planner)."""
    from f2i_mobile.core.contract import GraphSpec, TensorSpec
    from f2i_mobile.core.manifest import Manifest, ModelRecord, OneStepRecord, TilingRecord

    def spec(name):
        return TensorSpec(name, (batch, 4, 8, 8), "NCHW")

    graphs = {g: GraphSpec(g, g, tuple(spec(n) for n in i), tuple(spec(n) for n in o),
                           flops=flops) for g, (i, o) in TINY_IO.items()}
    return Manifest(
        model=ModelRecord("tiny", "0" * 16), scale=scale, tile=tile, output_tile=tile * scale,
        batch=batch, one_step=OneStepRecord("unet", 999, 0.0047, "epsilon", 0.5, 14.6, -14.6,
                                            "test"),
        tiling=TilingRecord(lr_multiple=multiple, overlap=overlap,
                            receptive_field=receptive_field),
        graphs=graphs)


def visible_files(folder: Path) -> set[str]:
    """Every file under `folder` that is not hidden (work folders of atomic writes are)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


@pytest.fixture(scope="session")
def tiny_model():
    from f2i_mobile.models import build_model, preset

    model = build_model(preset("tiny"), seed=0)
    randomize_lora(model)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model):
    from f2i_mobile.models import save_pretrained

    return save_pretrained(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny")


def shared_root(tmp_path_factory) -> Path:
    """The run's temporary folder, shared by its pytest-xdist workers."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def shared_export(tmp_path_factory, checkpoint, name: str, backends: str | None,
                  built: dict[str, Path] | None = None):
    """The tiny checkpoint exported once per test run, also when pytest-xdist runs the tests in
    several workers (exports take minutes). Each backend is lowered once, under its own lock, into
    a folder of its own: a worker that asks while another is lowering one backend lowers the
    next, so two workers that both want the export split its backends rather than one waiting
    for all of them. `built` names export folders of this checkpoint and tile that hold a
    backend already. The parts are then merged into one export folder (artifacts, manifest)."""
    from filelock import FileLock

    from f2i_mobile.export.lowering import check_backends

    root = shared_root(tmp_path_factory)
    folders = {b.name: root / f"{name}-{b.name}" for b in check_backends(backends)}
    folders.update(built or {})
    for blocking in (False, True):  # first the parts no one is lowering, then wait for the rest
        for part in set(folders) - set(built or {}):
            lock = FileLock(str(folders[part]) + ".lock")
            try:
                lock.acquire(timeout=-1 if blocking else 0)
            except TimeoutError:
                continue
            try:
                _export_part(checkpoint, folders[part], part)
            finally:
                lock.release()
    return _merged(root / f"{name}-export", folders)


def _export_part(checkpoint: Path, out: Path, part: str) -> None:
    from f2i_mobile.export.lowering import check_backends
    from f2i_mobile.export.pipeline import export_model
    from f2i_mobile.models import from_pretrained

    done = out.with_name(out.name + ".done")
    if not done.exists():
        _, failures = export_model(from_pretrained(checkpoint), out, check_backends(part),
                                   progress=False)
        assert not failures, [str(f) for f in failures]
        done.touch()


def _merged(out: Path, folders: dict[str, Path]):
    import shutil

    from filelock import FileLock

    from f2i_mobile.core.manifest import Manifest

    done = out.with_name(out.name + ".done")
    with FileLock(str(out) + ".lock"):
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            manifests = {part: Manifest.load(folder) for part, folder in folders.items()}
            merged = Manifest.load(next(iter(folders.values())))  # the header; artifacts below
            merged.artifacts = []
            for part, manifest in manifests.items():
                shutil.copytree(folders[part] / part, out / part)
                for artifact in manifest.artifacts:
                    if artifact.backend == part:
                        merged.add(artifact)
            merged.save(out)
            done.touch()
    return out, Manifest.load(out)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_checkpoint, default_path):
    """The tiny checkpoint exported to all four default backends (minutes: tests that take it
    are marked slow). Its ONNX graphs are the default path's build (the same checkpoint, tile
    and lowering), so the run exports them once."""
    return shared_export(tmp_path_factory, tiny_checkpoint, "all", None,
                         built={"onnx": default_path.export})


@dataclass
class DefaultPath:
    """A user's first `f2i-mobile upscale` of the tiny checkpoint without `--backend`."""

    cache_home: Path  # its XDG_CACHE_HOME, which holds the graphs it built
    export: Path  # the cached ONNX export in it
    photo: Path  # the photo it upscaled (40x32: 12 tiles of 16 px)
    output: Path
    stderr: str


@pytest.fixture(scope="session")
def default_path(tmp_path_factory, tiny_checkpoint) -> DefaultPath:
    """The tiny checkpoint's first run on the default path, at its own tile (16): it builds the
    ONNX graphs into a cache shared by the run's workers (under a file lock, once per run; the
    export takes minutes), which `onnx_export` also hands out. Tests of the default path run it
    again with this cache (`XDG_CACHE_HOME`); every other test keeps its own cache."""
    import numpy as np
    from filelock import FileLock
    from PIL import Image

    root = shared_root(tmp_path_factory)
    home, record = root / "default-path-cache", root / "default-path.json"
    photo, output = root / "default-path-in.png", root / "default-path-out.png"
    with FileLock(str(root / "default-path.lock")):
        if not record.exists():
            rng = np.random.default_rng(0)
            Image.fromarray((rng.random((32, 40, 3)) * 255).astype(np.uint8)).save(photo)
            r = subprocess.run(CLI + ["upscale", str(photo), "-o", str(output), "--model",
                                      str(tiny_checkpoint), "--tile", "16"],
                               env={**os.environ, "XDG_CACHE_HOME": str(home)},
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            record.write_text(json.dumps({"stderr": r.stderr}))
    [export] = [p for p in (home / "f2i-mobile" / "exports").iterdir() if p.is_dir()]
    return DefaultPath(home, export, photo, output, json.loads(record.read_text())["stderr"])


@pytest.fixture(scope="session")
def onnx_export(default_path):
    """The tiny checkpoint exported to ONNX alone (by the default path's cached build: one
    export for both): for the fast tier's tests of readers of a real export."""
    from f2i_mobile.core.manifest import Manifest

    return default_path.export, Manifest.load(default_path.export)
