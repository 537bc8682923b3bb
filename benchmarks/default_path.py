"""The default path against every other, in one run: `f2i-mobile upscale` of a 1000x750 photo to
4000x3000 PNG as a new user runs it (no `--backend`), next to the backends named explicitly.

    python benchmarks/default_path.py
    python benchmarks/default_path.py --exports out/export     # and what an export holds
    python benchmarks/default_path.py --model pocket           # another model than the default

The photo is scikit-image's astronaut resized to 1000x750; every run is `f2i-mobile upscale` in
a subprocess under `/usr/bin/time -v` (wall seconds, peak RSS), with a fresh user cache:
- `default, first run`: builds the model's ONNX graphs into the cache (the build's own seconds,
  from its `built in` line, are reported apart) and upscales;
- `default`: every later run, on the cached graphs: the figure the README states;
- `torch`: `--backend torch` at the model's tile, and at the default path's tile (what the
  default falls back to without ONNX Runtime);
- `onnx`: `--backend onnx --artifacts` on the cached graphs, named explicitly;
- `default --precision w8a8`: the int8 graphs' build (calibration, quantization, the gate) and
  a later run on them;
- with `--exports DIR` (repeatable): every variant DIR holds that runs here, at DIR's tile.
The default output, fp32 and w8a8, is compared with the torch path's at the same tile (PSNR,
8-bit).
Writes benchmarks/results/default_path.json.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from results import write_result
from tiling_bench import cli, make_input, timed

from f2i_mobile.core.errors import guarded

SIZE = (1000, 750)


def variants(folder: Path) -> list[tuple[str, str, int]]:
    """(backend, precision, tile) of each complete variant in an export that runs here."""
    from f2i_mobile.core.manifest import Manifest
    from f2i_mobile.runners import why_not_runnable

    manifest = Manifest.load(folder)
    return [(b, p, manifest.tile) for b, p in manifest.variants() if why_not_runnable(b) is None]


def psnr_png(a: Path, b: Path) -> float:
    from f2i_mobile.core.fidelity import psnr
    from f2i_mobile.core.image import read_image

    return psnr(read_image(a).rgb * 255.0, read_image(b).rgb * 255.0, 255.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exports", action="append", default=[], metavar="DIR",
                    help="an export folder whose runnable variants are timed too")
    ap.add_argument("--model", default=None, help="checkpoint folder or bundled name (default: "
                    "the default model, as `upscale` without --model)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from f2i_mobile.core.model_files import config_header, model_folder
    from f2i_mobile.export.cache import AUTO_TILE, auto_tile

    config = config_header(model_folder(args.model))["config"]
    tile = auto_tile(config["tile"])
    model = ("--model", args.model) if args.model else ()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        work = Path(tmp)
        src = work / "photo.png"
        make_input(SIZE, src)
        env = {"XDG_CACHE_HOME": str(work / "cache")}

        def run(name: str, *options: str) -> Path:
            out = work / f"{len(runs)}.png"
            t = timed(cli(str(src), "-o", str(out), *model, *options), env)
            record = {"run": name, "options": " ".join(options), "seconds": t.seconds,
                      "peak_rss_bytes": t.peak_rss_bytes,
                      "tiles": int(re.search(r"(\d+) tiles", t.stdout).group(1))}
            built = re.search(r"built in (\d+) s", t.stderr)
            if built:
                record["build_seconds"] = float(built.group(1))
            runs.append(record)
            print(f"{name:<34} {t.seconds:7.1f} s  peak RSS {t.peak_rss_bytes / 2**30:5.2f} GiB  "
                  f"{record['tiles']:>3} tiles" + (f"  (build {built.group(1)} s)" if built else ""),
                  flush=True)
            return out

        run("default, first run (builds)")
        default = run("default")
        [cache] = [p for p in (work / "cache" / "f2i-mobile" / "exports").iterdir() if p.is_dir()]
        run("torch (model's tile)", "--backend", "torch")
        fallback = run(f"torch at the default tile ({tile})", "--backend", "torch", "--tile",
                       str(tile))
        run(f"onnx fp32, tile {tile} (the cache)", "--backend", "onnx", "--artifacts", str(cache))
        run("default --precision w8a8, first run (builds)", "--precision", "w8a8")
        int8 = run("default --precision w8a8", "--precision", "w8a8")
        for folder in map(Path, args.exports):
            for backend, precision, t in variants(folder):
                run(f"{backend} {precision}, tile {t}", "--backend", backend, "--artifacts",
                    str(folder), "--precision", precision)
        fidelity, int8_fidelity = psnr_png(default, fallback), psnr_png(int8, fallback)
    print(f"default vs torch at tile {tile}: {fidelity:.1f} dB PSNR; w8a8 vs torch: "
          f"{int8_fidelity:.1f} dB")
    write_result("default_path", {
        "model": config.get("name"), "input": f"{SIZE[0]}x{SIZE[1]}",
        "output": f"{SIZE[0] * 4}x{SIZE[1] * 4} PNG",
        "auto_tile": AUTO_TILE, "runs": runs, "default_vs_torch_psnr_db": fidelity,
        "w8a8_vs_torch_psnr_db": int8_fidelity,
        "default_seconds": runs[1]["seconds"], "build_seconds": runs[0].get("build_seconds")},
        args.json)


if __name__ == "__main__":
    sys.exit(guarded(main, prog="default_path.py"))
