"""What `f2i-mobile info` reports: config, parameters and FLOPs per graph for one tile.

The totals are those of one tile (`TILE_GRAPHS`): the statistics pass runs once per photo on
the encoder's, U-Net's and decoder's own weights, so it adds no parameters, and its FLOPs are
reported on their own line."""

from __future__ import annotations

import torch

from f2i_mobile.core.contract import GRAPHS
from f2i_mobile.models import build_model, load_model, preset
from f2i_mobile.models.graphs import count_flops, count_params, graph_specs

TILE_GRAPHS = tuple(g for g in GRAPHS if g != "statistics")  # conditioner: once per tile at most


def model_report(model_path: str | None = None, preset_name: str | None = None,
                 tile: int | None = None) -> dict:
    if preset_name is not None:
        config = preset(preset_name)
        with torch.device("meta"):  # count without allocating (full is 1.25 B parameters)
            model = build_model(config, lora=False)
        origin = f"preset {preset_name!r} (architecture only, no weights)"
    else:
        model = load_model(model_path)
        config = model.config
        origin = model.metadata.get("origin", "checkpoint")
    tile = tile or config.tile
    specs = graph_specs(config, tile)
    params, flops = count_params(model), count_flops(model, tile)
    graphs = {
        name: {
            "params": params[name],
            "gflops_per_tile": flops[name] / 1e9,
            "inputs": {t.name: list(t.shape) for t in specs[name].inputs},
            "outputs": {t.name: list(t.shape) for t in specs[name].outputs},
        }
        for name in GRAPHS
    }
    return {
        "name": config.name,
        "config_hash": config.hash(),
        "origin": origin,
        "metadata": model.metadata,
        "scale": config.scale,
        "tile": tile,
        "output_tile": tile * config.scale,
        "method": config.method,
        "timestep": config.timestep,
        "prediction_type": config.prediction_type,
        "latent_channels": config.vae.latent_channels,
        "graphs": graphs,
        "total_params": sum(params[g] for g in TILE_GRAPHS),
        "total_gflops_per_tile": sum(flops[g] for g in TILE_GRAPHS) / 1e9,
        "statistics_gflops_per_photo": flops["statistics"] / 1e9,
        "config": config.to_dict(),
    }


def format_model_report(r: dict) -> str:
    lines = [
        f"model        {r['name']}  (config {r['config_hash']})",
        f"origin       {r['origin']}",
        f"method       {r['method']}" + (" (LQ features -> alignment module -> U-Net)"
                                        if r["method"] == "faithdiff" else ""),
        f"one step     {r['scale']}x, t* = {r['timestep']}, {r['prediction_type']} prediction, "
        f"{r['latent_channels']} latent channels",
        f"tile         LR {r['tile']}x{r['tile']} -> {r['output_tile']}x{r['output_tile']}",
        "",
        f"{'graph':<12} {'params':>12} {'GFLOPs/tile':>12}  inputs -> outputs",
    ]
    for name, g in r["graphs"].items():
        io = ", ".join(f"{k}{v}" for k, v in g["inputs"].items())
        io += " -> " + ", ".join(f"{k}{v}" for k, v in g["outputs"].items())
        lines.append(f"{name:<12} {g['params'] / 1e6:>11.3f}M {g['gflops_per_tile']:>12.2f}  {io}")
    lines.append(f"{'total':<12} {r['total_params'] / 1e6:>11.3f}M "
                 f"{r['total_gflops_per_tile']:>12.2f}  per tile; the statistics pass adds "
                 f"{r['statistics_gflops_per_photo']:.2f} GFLOPs once per photo")
    return "\n".join(lines)
