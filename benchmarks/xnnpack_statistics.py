"""The statistics pass on ExecuTorch/XNNPACK, fp32, with GroupNorm's moments measured as exported
(`4d`: the activation grouped as [N, G, L, 1] and averaged over its last two dims, a global
average pool) and as the exports measured them before (`3d`: grouped as [N, G, L], averaged over
the last dim): delegate partitions, the ops left to ExecuTorch's portable kernels, lowering
time, median latency of one pass (once per photo) in the ExecuTorch runtime on this CPU, and the
largest difference from the torch graph.

    python benchmarks/xnnpack_statistics.py [--model DIR] [--runs 5]

Every figure comes from this one run; writes benchmarks/results/xnnpack_statistics.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from results import write_result
from xnnpack_unet import median_ms, op_counts

from f2i_mobile.export.executorch import to_program
from f2i_mobile.models import load_model
from f2i_mobile.models.graphs import graph_modules, graph_specs
from f2i_mobile.models.norms import StatNorm


def three_d_moments(self: StatNorm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the exports measured before: the same numbers through a 3-D mean."""
    grouped = x.reshape(x.shape[0], self.groups, -1)
    mean = grouped.mean(dim=2)
    centred = grouped - mean[:, :, None]
    return mean, (centred * centred).mean(dim=2)


def measure(model, spec, moments: str, runs: int) -> dict:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.runtime import Runtime

    own = StatNorm.moments
    if moments == "3d":  # the A/B switch
        StatNorm.moments = three_d_moments
    try:
        module = graph_modules(model)["statistics"]
        args = tuple(torch.from_numpy(a) for a in spec.examples().values())
        with torch.no_grad():
            ref = [r.numpy() for r in module(*args)]
        start = time.perf_counter()
        program, edge = to_program(module, spec, [XnnpackPartitioner()])
        build = time.perf_counter() - start
    finally:
        StatNorm.moments = own
    ops = op_counts(edge)
    method = Runtime.get().load_program(program).load_method("forward")
    outs = [o.numpy() for o in method.execute(list(args))]
    return {"moments": moments, "partitions": ops.pop("executorch_call_delegate", 0),
            "portable_ops": sum(ops.values()), "portable": dict(ops.most_common()),
            "build_s": round(build, 1), "median_ms": round(median_ms(program, args, runs), 1),
            "max_abs_diff_vs_torch": float(max(np.abs(o - r).max() for o, r in zip(outs, ref)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = load_model(args.model)
    spec = graph_specs(model.config)["statistics"]
    rows = []
    for moments in ("3d", "4d"):
        rows.append(measure(model, spec, moments, args.runs))
        print({k: v for k, v in rows[-1].items() if k != "portable"}, flush=True)
    write_result("xnnpack_statistics", {"model": model.config.name, "tile": model.config.tile,
                                        "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
