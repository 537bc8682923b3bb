"""int8 against fp32 on every runtime here, in one run, and what holds each runtime's int8 back.

    python benchmarks/int8_speed.py --exports out/export      # fp32 and w8a8 of each backend

One `f2i-mobile bench --host` over the export times every graph of each backend at fp32 and
w8a8 in the same run (same machine state for both); the speed-up is per graph and for the 12 MP
photo the bench estimates from the tile plan. What limits each runtime is read from its own
w8a8 artifacts:
- ExecuTorch: the instructions of the .pte program: XNNPACK delegate calls (partitions) and the
  ops left to ExecuTorch's portable kernels between them;
- LiteRT: the ops of the .tflite whose output is float (they run as float kernels between
  QUANTIZE/DEQUANTIZE), by op name;
- ONNX Runtime: the session's own profile of one run per graph (ORT's profiler, one thread):
  the share of time in fused int8 kernels, in Q/DQ, in float Conv/MatMul/Gemm that did not fuse,
  and in the other float ops.
Writes benchmarks/results/int8_speed.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from results import write_result

from android_bench.report import BenchReport
from f2i_mobile.core.errors import F2IError, guarded
from f2i_mobile.core.manifest import Manifest

BACKENDS = ("executorch", "tflite", "onnx")
ORT_INT8 = ("QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger", "QLinearAdd",
            "QLinearMul", "QLinearSigmoid", "QLinearConcat", "QLinearAveragePool")
ORT_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
ORT_FLOAT_COMPUTE = ("Conv", "MatMul", "Gemm", "FusedConv", "FusedMatMul", "FusedGemm")


def bench(exports: Path, runs: int, warmup: int, work: Path) -> BenchReport:
    out = work / "bench.json"
    cmd = [sys.executable, "-m", "f2i_mobile.cli", "bench", "--artifacts", str(exports), "--host",
           "--backends", *BACKENDS, "--runs", str(runs), "--warmup", str(warmup),
           "--json", str(out)]
    if subprocess.run(cmd).returncode:  # the bench has said why, in one line
        raise F2IError(f"{exports}: the host bench failed")
    return BenchReport.load(out)


def speedups(report: BenchReport) -> dict:
    """Per backend: each graph's fp32 and w8a8 medians and the 12 MP photo, with the ratios."""
    ms = {r.key: r.typical_ms for r in report.results}
    photo = {(e.backend, e.precision): e for e in report.end_to_end}
    rows = {}
    for backend in BACKENDS:
        if (backend, "fp32") not in photo or (backend, "w8a8") not in photo:
            continue
        names = [r.graph for r in report.results if r.key[:2] == (backend, "fp32")]
        graphs = {g: {"fp32_ms": ms[(backend, "fp32", g)], "w8a8_ms": ms[(backend, "w8a8", g)],
                      "speedup": ms[(backend, "fp32", g)] / ms[(backend, "w8a8", g)]}
                  for g in names if (backend, "w8a8", g) in ms}
        fp32, w8a8 = photo[(backend, "fp32")], photo[(backend, "w8a8")]
        rows[backend] = {"graphs": graphs, "photo_fp32_s": fp32.seconds_per_photo,
                         "photo_w8a8_s": w8a8.seconds_per_photo,
                         "speedup": w8a8.speedup_over_fp32}
    return rows


def executorch_limits(path: Path) -> dict:
    """The .pte's instructions: delegate calls and the portable kernels between them."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(path.read_bytes())
    plan = getattr(program, "program", program).execution_plan[0]
    kinds = collections.Counter()
    for instruction in plan.chains[0].instructions:
        args = instruction.instr_args
        if type(args).__name__ == "DelegateCall":
            kinds["delegate " + plan.delegates[args.delegate_index].id] += 1
        elif type(args).__name__ == "KernelCall":
            kinds[plan.operators[args.op_index].name] += 1
    return dict(kinds.most_common())


def tflite_limits(path: Path) -> dict:
    """Ops of the int8 .tflite whose output is float, by op name."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details()
                              if op["outputs"].size and dtypes[op["outputs"][0]] == np.float32)
    return dict(ops.most_common())


def onnx_limits(path: Path) -> dict:
    """Where one run of the int8 graph spends its time, from ONNX Runtime's profiler."""
    import onnxruntime as ort

    from f2i_mobile.runners.onnx_runner import runs_unfused

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
                 .astype(np.float32) for i in session.get_inputs()}
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    time = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            kind = ("int8 kernels" if op in ORT_INT8 else "Q/DQ" if op in ORT_QDQ else
                    "float Conv/MatMul/Gemm" if op in ORT_FLOAT_COMPUTE else "other float ops")
            time[kind] += e["dur"]
    total = sum(time.values())
    return {"share": {k: round(v / total, 3) for k, v in time.most_common()},
            "fused": not runs_unfused(True)}


LIMITS = {"executorch": executorch_limits, "tflite": tflite_limits, "onnx": onnx_limits}


def limits(exports: Path) -> dict:
    manifest = Manifest.load(exports)
    found: dict[str, dict] = {}
    for a in manifest.artifacts:
        if a.precision == "w8a8" and a.backend in LIMITS:
            found.setdefault(a.backend, {})[a.graph] = LIMITS[a.backend](exports / a.path)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exports", required=True, type=Path,
                    help="an export folder with fp32 and w8a8 variants")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    Manifest.load(args.exports)  # a folder that is no export fails here, in one line
    with tempfile.TemporaryDirectory() as tmp:
        report = bench(args.exports, args.runs, args.warmup, Path(tmp))
    rows = speedups(report)
    found = limits(args.exports)
    for backend, row in rows.items():
        per_graph = ", ".join(f"{g} {v['speedup']:.2f}x" for g, v in row["graphs"].items())
        print(f"{backend:<10} 12 MP fp32 {row['photo_fp32_s']:6.1f} s, w8a8 "
              f"{row['photo_w8a8_s']:6.1f} s: {row['speedup']:.2f}x  ({per_graph})")
        for graph, what in found.get(backend, {}).items():
            print(f"{'':<10} {graph}: {what}")
    notes = sorted({n for r in report.results for n in r.notes})
    write_result("int8_speed", {"model": report.model, "tile": Manifest.load(args.exports).tile,
                                "threads": report.settings.get("threads"), "speedups": rows,
                                "limits": found, "notes": notes}, args.json)


if __name__ == "__main__":
    sys.exit(guarded(main, prog="int8_speed.py"))
