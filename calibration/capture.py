"""The calibration set: LR tiles, their HR tiles, and every graph's float inputs and outputs.

Post-training quantization needs the activations each graph sees in the pipeline, not random
tensors: the U-Net's latent comes from the encoder and its tokens from the conditioner. `capture`
cuts seeded HR crops of one output tile from a folder of photos (or from the bundled held-in
images), makes LR tiles the evaluation's way (antialiased bicubic, 8-bit), runs the float graphs
in torch and stores every tensor by its registry name:

    lr [N,3,t,t]  tokens [N,L,D]  latent [N,C,h,w]  latent_sr [N,C,h,w]  sr [N,3,4t,4t]
    hr [N,3,4t,4t] (uint8)

in `tensors.safetensors`, with `calibration.json` (model, tile, seed, where each tile came from).
The same folder, model and seed give byte-identical files, so a quantization is repeatable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from f2i_mobile.core.atomic import atomic_dir
from f2i_mobile.core.contract import GRAPHS
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.imaging import bicubic_downscale
from f2i_mobile.core.samples import CALIBRATION, HRImage, load_images, random_crop
from f2i_mobile.models import F2IDiffSR, weights_hash
from f2i_mobile.models.graphs import graph_specs
from f2i_mobile.runners.base import run_chain
from f2i_mobile.runners.torch_runner import TorchRunner

FORMAT = "f2i-mobile-calibration/1"
INDEX = "calibration.json"
TENSORS = "tensors.safetensors"

DEFAULT_TILES = 16


@dataclass
class CalibrationSet:
    """A captured set: `tensors` by registry name (numpy, batch-first) and the JSON index."""

    folder: Path
    index: dict
    tensors: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.tensors["lr"].shape[0]

    def first(self, n: int) -> CalibrationSet:
        """The set cut to its first `n` tiles (a quicker check)."""
        if n < 1:
            raise F2IError(f"--tiles {n}: need at least one tile")
        return CalibrationSet(self.folder, self.index, {k: v[:n] for k, v in self.tensors.items()})

    def graph_inputs(self, graph: str) -> list[dict[str, np.ndarray]]:
        """One {name: array} per tile (batch 1) with the float pipeline's inputs of `graph`."""
        names = self.index["graphs"][graph]["inputs"]
        return [{n: self.tensors[n][i:i + 1] for n in names} for i in range(len(self))]

    def graph_outputs(self, graph: str) -> list[dict[str, np.ndarray]]:
        names = self.index["graphs"][graph]["outputs"]
        return [{n: self.tensors[n][i:i + 1] for n in names} for i in range(len(self))]

    def hr(self) -> np.ndarray:
        """[N,3,4t,4t] float32 in [0, 1]."""
        return self.tensors["hr"].astype(np.float32) / 255.0


def source_images(images: str | Path | None, bundled: tuple[str, ...] = CALIBRATION,
                  ) -> list[HRImage]:
    """A folder of PNG/JPEG/TIFF photos (recursive), or the named bundled images for None."""
    if images is not None and not Path(images).is_dir():
        raise F2IError(f"calibration images {images}: not a folder")
    return load_images(images, bundled)


@torch.no_grad()
def capture(model: F2IDiffSR, out: str | Path, images: str | Path | None = None,
            tiles: int = DEFAULT_TILES, seed: int = 0, tile: int | None = None,
            bundled: tuple[str, ...] = CALIBRATION) -> CalibrationSet:
    """Cut `tiles` seeded tiles from `images` (default: the `bundled` scikit-image photos), run
    the float graphs on them and write the set to `out` atomically. With the default photos
    this is the calibration set; with `samples.HELD_OUT` it is the check set quant-check gates
    on, photos the quantizers never saw."""
    if tiles < 1:
        raise F2IError(f"--tiles {tiles}: need at least one calibration tile")
    config = model.config
    specs = graph_specs(config, tile)
    tile = specs["encoder"].inputs[0].shape[-1]
    hr_size = tile * config.scale
    sources = source_images(images, bundled)
    runner = TorchRunner.of_model(model, tile)
    tensors: dict[str, list[np.ndarray]] = {"hr": []}
    origins = []
    for i in tqdm(range(tiles), desc=f"capturing {Path(out).name} tiles", unit="tile"):
        # Round robin over the images so every one contributes; each crop has its own seed so
        # adding tiles never changes the earlier ones.
        source = sources[i % len(sources)]
        hr = random_crop(source.pixels, hr_size, np.random.default_rng([seed, i]))
        hr8 = np.round(np.clip(hr, 0.0, 1.0) * 255.0).astype(np.uint8)
        lr = bicubic_downscale(hr8.astype(np.float32) / 255.0, config.scale)
        values = run_chain(runner, {"lr": np.ascontiguousarray(lr.transpose(2, 0, 1))[None]})
        hr8 = hr8.transpose(2, 0, 1)
        tensors["hr"].append(hr8[None])
        for name, value in values.items():
            tensors.setdefault(name, []).append(value)
        origins.append(source.name)
    arrays = {name: np.ascontiguousarray(np.concatenate(v)) for name, v in tensors.items()}
    index = {
        "format": FORMAT,
        "model": {"name": config.name, "config_hash": config.hash(),
                  "weights_hash": weights_hash(model),
                  "origin": model.metadata.get("origin", "checkpoint")},
        "tile": tile,
        "scale": config.scale,
        "seed": seed,
        "images": "bundled:" + ",".join(bundled) if images is None else str(images),
        "tiles": origins,
        "graphs": {g: {"inputs": [t.name for t in specs[g].inputs],
                       "outputs": [t.name for t in specs[g].outputs]} for g in GRAPHS},
        "tensors": {name: {"shape": list(a.shape), "dtype": str(a.dtype)}
                    for name, a in sorted(arrays.items())},
    }
    out = Path(out)
    with atomic_dir(out) as tmp:
        save_file(arrays, str(tmp / TENSORS), metadata={"format": FORMAT})
        (tmp / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return CalibrationSet(out, index, arrays)


def load_calibration(folder: str | Path) -> CalibrationSet:
    folder = Path(folder)
    if not (folder / INDEX).is_file() or not (folder / TENSORS).is_file():
        raise F2IError(f"{folder}: not a calibration set (no {INDEX} and {TENSORS}); "
                       "capture one with f2i-mobile export --quant ... --calibration IMAGES")
    index = json.loads((folder / INDEX).read_text())
    if index.get("format") != FORMAT:
        raise F2IError(f"{folder / INDEX}: unknown format {index.get('format')!r}, "
                       f"expected {FORMAT}")
    return CalibrationSet(folder, index, load_file(str(folder / TENSORS)))


def captured_from(calib: CalibrationSet, model: F2IDiffSR) -> bool:
    """Whether `calib` holds this model's tensors: its config, and its weights where the set
    records them (sets captured before it did are trusted on the config alone)."""
    record = calib.index["model"]
    if record["config_hash"] != model.config.hash():
        return False
    return "weights_hash" not in record or record["weights_hash"] == weights_hash(model)


def captured_tile(folder: str | Path) -> int:
    """The tile a calibration set was captured at, from its index alone (not its tensors)."""
    path = Path(folder) / INDEX
    try:
        return int(json.loads(path.read_text())["tile"])
    except (ValueError, KeyError, TypeError):
        raise F2IError(f"{path}: not a calibration index (no tile)") from None


def is_calibration_set(folder: str | Path) -> bool:
    return (Path(folder) / INDEX).is_file()
