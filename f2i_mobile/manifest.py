"""The export manifest: what a phone app, the tiler and the bench read about exported graphs.

`OUT/manifest.json` describes the model (name, config hash), the tile and scale, the one-step
constants and which graph owns them, every graph's inputs and outputs, and every artifact
(backend, graph, precision, path relative to OUT, size, sha256, I/O layout). Readers take paths,
shapes and constants from here and never re-derive them.

This module imports no torch: a phone-lab machine reads manifests without the training stack.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from f2i_mobile.atomic import atomic_file
from f2i_mobile.errors import F2IError

FORMAT = "f2i-mobile-manifest/1"
MANIFEST = "manifest.json"
GRAPH_ORDER = ("conditioner", "encoder", "unet", "decoder")


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    layout: str  # NCHW (images, latents) or NLC (tokens), as the graph registry defines them
    description: str = ""
    dtype: str = "float32"

    def example(self, rng):
        """A random tensor of this shape in the range the graph sees in the pipeline: images in
        [0, 1], latents and tokens standard normal (as the registry's example inputs)."""
        if self.name == "lr":
            return rng.random(self.shape, dtype="float32").astype(self.dtype)
        return rng.standard_normal(self.shape, dtype="float32").astype(self.dtype)


@dataclass
class GraphInfo:
    name: str
    description: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    params: int = 0
    flops: int = 0  # per call at this tile and batch, LoRA merged

    @classmethod
    def from_dict(cls, d: dict) -> GraphInfo:
        d = dict(d)
        d["inputs"] = [TensorInfo(**t) for t in d["inputs"]]
        d["outputs"] = [TensorInfo(**t) for t in d["outputs"]]
        return cls(**d)


@dataclass
class Artifact:
    backend: str  # executorch, tflite, coreml, onnx
    graph: str
    precision: str  # fp32, fp16, w8a8, w8a16, w4a16, palette6, palette4, mixed
    path: str  # relative to the manifest's folder
    bytes: int
    sha256: str
    # Per-tensor layout of the artifact's own I/O when it differs from the graph's (e.g. NHWC
    # for TFLite delegates); runners transpose so callers always see the registry's layout.
    io_layout: dict[str, str] = field(default_factory=dict)
    details: dict = field(default_factory=dict)  # delegate, compute units, quantizer, ...


@dataclass
class Manifest:
    model: dict  # name, config_hash, origin
    scale: int
    tile: int
    output_tile: int
    batch: int
    one_step: dict
    graphs: dict[str, GraphInfo]
    artifacts: list[Artifact] = field(default_factory=list)
    format: str = FORMAT

    def artifact(self, backend: str, graph: str, precision: str = "fp32") -> Artifact:
        for a in self.artifacts:
            if (a.backend, a.graph, a.precision) == (backend, graph, precision):
                return a
        raise F2IError(f"manifest has no {precision} {backend} artifact for graph {graph}")

    def variants(self) -> list[tuple[str, str]]:
        """(backend, precision) pairs that have all four graphs."""
        have = {(a.backend, a.precision, a.graph) for a in self.artifacts}
        pairs = sorted({(a.backend, a.precision) for a in self.artifacts})
        return [p for p in pairs if all((*p, g) in have for g in GRAPH_ORDER)]

    def add(self, artifact: Artifact) -> None:
        """Add or replace the artifact of the same backend, graph and precision."""
        key = (artifact.backend, artifact.graph, artifact.precision)
        self.artifacts = [a for a in self.artifacts if (a.backend, a.graph, a.precision) != key]
        self.artifacts.append(artifact)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            raise F2IError(f"{folder}: no {MANIFEST} (run f2i-mobile export first)")
        try:
            d = json.loads(path.read_text())
            if d.get("format") != FORMAT:
                raise F2IError(f"{path}: unknown manifest format {d.get('format')!r}, "
                               f"expected {FORMAT}")
            d["graphs"] = {k: GraphInfo.from_dict(v) for k, v in d["graphs"].items()}
            d["artifacts"] = [Artifact(**a) for a in d.get("artifacts", [])]
            return cls(**d)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise F2IError(f"{path}: not valid JSON ({exc})") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise F2IError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def path_size(path: str | Path) -> int:
    """Bytes of a file, or of every file under a folder (a .mlpackage is a folder)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        digest.update(p.relative_to(path).as_posix().encode() + b"\0")
        digest.update(sha256_file(p).encode())
    return digest.hexdigest()
