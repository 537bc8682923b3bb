"""What exported graphs cost the process that runs them, for `--memory-budget` with
`--backend executorch|tflite|onnx`. The manifest says FLOPs and shapes; memory depends on the
runtime (its arena planning, delegate workspaces, how it maps the file), so each graph is loaded
and run three times at the exported batch and the process's resident memory is read.
Torch-free.
"""

from __future__ import annotations

import hashlib

import numpy as np

from f2i_mobile.core.manifest import Manifest
from f2i_mobile.core.memory import peak_rise, resident_bytes, return_freed_memory
from f2i_mobile.core.planner import GraphCost
from f2i_mobile.runners.base import GraphRunner
from f2i_mobile.tiling.cache import cached_graph_costs


def artifact_costs(runner: GraphRunner, manifest: Manifest) -> dict[str, GraphCost]:
    """Per graph: resident memory that loading and two runs leave (weights and what the
    runtime keeps between runs: ONNX Runtime plans and keeps its arena on the second run, about
    as much again as the first run held, for the bundled decoder), and per tile the peak a
    third run adds on top (0 where the peak cannot be read)."""
    rng = np.random.default_rng(0)
    batch = max(1, manifest.batch)
    return_freed_memory()
    costs = {}
    for graph, info in manifest.graphs.items():
        inputs = {t.name: t.example(rng) for t in info.inputs}
        before = resident_bytes()
        runner.run(graph, inputs)
        runner.run(graph, inputs)
        loaded = max(0, resident_bytes() - before)
        working = peak_rise(lambda: runner.run(graph, inputs)) or 0
        runner.release(graph)
        costs[graph] = GraphCost(gflops=info.flops / batch / 1e9, weight_bytes=loaded,
                                 activation_bytes=working // batch,
                                 io_bytes=sum(int(np.prod(t.shape[1:])) * 4
                                              for t in info.outputs))
    return costs


def cached_artifact_costs(runner: GraphRunner, manifest: Manifest) -> dict[str, GraphCost]:
    """`artifact_costs`, measured once per set of artifact files."""
    digest = hashlib.sha256(f"{runner.backend}/{runner.precision}".encode())
    for graph in manifest.graphs:
        digest.update(manifest.artifact(runner.backend, graph, runner.precision).sha256.encode())
    return cached_graph_costs("artifact-costs-v2", digest.hexdigest()[:16],
                              lambda: artifact_costs(runner, manifest))
