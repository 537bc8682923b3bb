"""The U-Net graph on ExecuTorch/XNNPACK, fp32 and w8a8, with attention as exported
(`explicit`: matmul, softmax, matmul) and as scaled_dot_product_attention (`sdpa`, what the
exports used before): delegate partitions, the ops left to ExecuTorch's portable kernels, median
latency per tile in the ExecuTorch runtime on this CPU, and w8a8 PSNR against float.

    python benchmarks/xnnpack_unet.py [--model DIR] [--tiles 4] [--runs 5]

Calibrates on the bundled calibration photos (the quantization's own capture). Every figure
comes from this one run; writes benchmarks/results/xnnpack_unet.json.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time

import numpy as np
import torch
from results import write_result

import f2i_mobile.models.graphs as graphs
from f2i_mobile.calibration import quant_executorch
from f2i_mobile.calibration.capture import capture
from f2i_mobile.calibration.quantize import torch_inputs
from f2i_mobile.core.fidelity import psnr
from f2i_mobile.export.executorch import to_program
from f2i_mobile.models import load_model


def op_counts(edge) -> collections.Counter:
    """Delegate calls and the portable ops between them (memory planning's allocs left out)."""
    return collections.Counter(
        str(n.target).replace("<EdgeOpOverload: ", "").split(">")[0].split(".out")[0]
        for n in edge.exported_program().graph.nodes
        if n.op == "call_function" and "getitem" not in str(n.target)
        and "alloc" not in str(n.target))


def median_ms(program: bytes, args: tuple[torch.Tensor, ...], runs: int) -> float:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(program).load_method("forward")
    method.execute(list(args))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        method.execute(list(args))
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def run_outputs(program: bytes, inputs) -> list[np.ndarray]:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(program).load_method("forward")
    return [method.execute(list(args))[0].numpy() for args in inputs]


def measure(model, spec, inputs, attention: str, precision: str, runs: int) -> dict:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    module = graphs.graph_modules(model, attention=attention)["unet"]  # the A/B switch
    with torch.no_grad():
        ref = [module(*args).numpy() for args in inputs]
    start = time.perf_counter()
    if precision == "w8a8":
        module = quant_executorch.quantize(module, inputs)
        quant_executorch.split_shared_dequants(module)
    program, edge = to_program(module, spec, [XnnpackPartitioner()])
    build = time.perf_counter() - start
    ops = op_counts(edge)
    span = float(max(np.abs(r).max() for r in ref))
    outs = run_outputs(program, inputs)
    return {"attention": attention, "precision": precision,
            "partitions": ops.pop("executorch_call_delegate", 0),
            "portable_ops": sum(ops.values()), "portable": dict(ops.most_common()),
            "median_ms": round(median_ms(program, inputs[0], runs), 1),
            "build_s": round(build, 1),
            "psnr_vs_float": round(float(np.mean([psnr(o / span, r / span, 1.0)
                                                  for o, r in zip(outs, ref)])), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--tiles", type=int, default=4, help="calibration tiles")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = load_model(args.model)
    with tempfile.TemporaryDirectory() as work:
        calib = capture(model, f"{work}/calibration", tiles=args.tiles)
        inputs = torch_inputs(calib, "unet")
    spec = graphs.graph_specs(model.config, calib.index["tile"])["unet"]
    rows = []
    for attention in ("sdpa", "explicit"):
        for precision in ("fp32", "w8a8"):
            rows.append(measure(model, spec, inputs, attention, precision, args.runs))
            print({k: v for k, v in rows[-1].items() if k != "portable"}, flush=True)
    write_result("xnnpack_unet", {"model": model.config.name, "tile": calib.index["tile"],
                                  "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
