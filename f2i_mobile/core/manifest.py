"""The export manifest: what a phone app, the tiler and the bench read about exported graphs.

`OUT/manifest.json` records, typed and in full:
- `model`: name, config hash, where the weights came from, the config, a hash of the weights;
- `scale`, `tile`, `output_tile`, `batch`: the graphs' static geometry;
- `one_step`: the one-step constants and the graph that owns them;
- `tiling`: the LR multiple tile origins keep, the receptive field measured at export and the
  seam-safe overlap, so an exported path plans exactly as the torch path does;
- `graphs`: every graph's inputs and outputs (`contract.GraphSpec`), parameters and FLOPs;
- `postprocess`: the colour fix the model's outputs expect;
- `artifacts`: per backend, graph and precision: path relative to OUT, size, sha256, I/O layout.

Readers take paths, shapes and constants from here and never re-derive them. A manifest of
another schema version is refused in one line. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from f2i_mobile.core.atomic import atomic_file
from f2i_mobile.core.contract import DEFAULT_COLOR_FIX, GRAPHS, GraphSpec, NormSlot
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.planner import ReceptiveField
from f2i_mobile.core.records import from_dict

FORMAT = "f2i-mobile-manifest/4"
MANIFEST = "manifest.json"


@dataclass
class ModelRecord:
    name: str
    config_hash: str
    origin: str = ""
    config: dict = field(default_factory=dict)
    weights_hash: str = ""  # models.weights_hash: which weights, where the config is the same

    def same_model(self, other: ModelRecord) -> bool:
        """The same config, and the same weights where both records say which."""
        return self.config_hash == other.config_hash and (
            not (self.weights_hash and other.weights_hash)
            or self.weights_hash == other.weights_hash)


@dataclass
class OneStepRecord:
    """`latent_sr = (c_z * (latent * s) + c_p * unet(latent * s, t*, tokens)) / s`, inside
    `graph`; latents between graphs are unscaled."""

    graph: str
    timestep: int
    alpha_bar: float
    prediction_type: str
    scaling_factor: float
    c_z: float
    c_p: float
    formula: str


@dataclass
class TilingRecord:
    """How an app tiles a photo for these graphs, exactly as the tiler does: `conditioner` and
    `statistics` once, on the whole photo resized to one tile (area-averaged), then per tile
    of `tile` LR px, `overlap` px apart, origins on `lr_multiple`, the tile graphs with the
    photo's tokens and statistics; outputs blended with weight 0 within the receptive field of
    a tile's inner edge. `statistics` lays out each graph's packed statistics."""

    lr_multiple: int  # LR sizes and tile origins are multiples of this
    overlap: int  # LR px between neighbouring tiles: seam-safe for the receptive field
    receptive_field: ReceptiveField | None = None  # measured at export
    conditioning: str = "image"  # tokens from the whole photo resized to one tile
    statistics: dict[str, list[NormSlot]] = field(default_factory=dict)


@dataclass
class PostprocessRecord:
    """What an app does to each SR tile before blending: `color_fix` (`wavelet`: the tile's
    low frequencies replaced by those of its LR crop, bicubic-resized; `adain`: its per-channel
    mean and deviation set to the LR crop's; `none`)."""

    color_fix: str = DEFAULT_COLOR_FIX
    reference: str = "the tile's LR crop, bicubic-resized to the SR tile"


@dataclass
class Artifact:
    backend: str  # a name of contract.BACKENDS
    graph: str
    precision: str  # a contract.Precision value
    path: str  # relative to the manifest's folder
    bytes: int
    sha256: str
    # Per-tensor layout of the artifact's own I/O when it differs from the graph's (e.g. NHWC
    # for TFLite delegates); runners transpose so callers always see the registry's layout.
    io_layout: dict[str, str] = field(default_factory=dict)
    details: dict = field(default_factory=dict)  # delegate, compute units, quantizer, ...


@dataclass
class Manifest:
    model: ModelRecord
    scale: int
    tile: int
    output_tile: int
    batch: int
    one_step: OneStepRecord
    tiling: TilingRecord
    graphs: dict[str, GraphSpec]
    postprocess: PostprocessRecord = field(default_factory=PostprocessRecord)
    artifacts: list[Artifact] = field(default_factory=list)
    format: str = FORMAT

    def artifact(self, backend: str, graph: str, precision: str = "fp32") -> Artifact:
        for a in self.artifacts:
            if (a.backend, a.graph, a.precision) == (backend, graph, precision):
                return a
        raise F2IError(f"manifest has no {precision} {backend} artifact for graph {graph}")

    def variants(self) -> list[tuple[str, str]]:
        """(backend, precision) pairs that have every graph."""
        have = {(a.backend, a.precision, a.graph) for a in self.artifacts}
        pairs = sorted({(a.backend, a.precision) for a in self.artifacts})
        return [p for p in pairs if all((*p, g) in have for g in self.graphs)]

    def add(self, artifact: Artifact) -> None:
        """Add or replace the artifact of the same backend, graph and precision."""
        key = (artifact.backend, artifact.graph, artifact.precision)
        self.artifacts = [a for a in self.artifacts if (a.backend, a.graph, a.precision) != key]
        self.artifacts.append(artifact)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["graphs"] = {name: g.to_dict() for name, g in self.graphs.items()}
        return d

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
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise F2IError(f"{path}: not valid JSON ({exc})") from None
        version = data.get("format") if isinstance(data, dict) else None
        if version != FORMAT:
            raise F2IError(f"{path}: manifest schema {version!r} is not {FORMAT!r}, the one this "
                           f"f2i-mobile reads; export again with this version")
        manifest = from_dict(cls, data, str(path))
        missing = [g for g in GRAPHS if g not in manifest.graphs]
        if missing:
            raise F2IError(f"{path}: graphs {', '.join(missing)} missing")
        return manifest


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
