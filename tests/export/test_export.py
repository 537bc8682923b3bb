"""Export: the manifest, parity of every backend against torch, atomic writes under a kill,
failures reported per graph and backend, and the missing vendor SDK error.

Tests on `exported` (all four backends lowered, minutes) are slow; `onnx_export` is the fast
tier's real export."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import CLI, visible_files

from f2i_mobile.core.contract import BACKENDS, GRAPHS, parse_backends
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.fidelity import Status
from f2i_mobile.core.manifest import Manifest, sha256_path
from f2i_mobile.core.planner import default_overlap
from f2i_mobile.export import lowering
from f2i_mobile.export.lowering import check_backends
from f2i_mobile.export.parity import check_all
from f2i_mobile.export.pipeline import export_model
from f2i_mobile.models.checkpoint import lr_multiple
from f2i_mobile.models.graphs import graph_specs, norm_layout
from f2i_mobile.runners import open_runner
from f2i_mobile.tiling.measure import cached_receptive_fields


def test_manifest_carries_the_tiling_contract(onnx_export, tiny_model):
    """What the tiler needs to plan exported graphs as it plans torch: written by export,
    read back typed."""
    out, _ = onnx_export
    manifest = Manifest.load(out)
    rf = cached_receptive_fields(tiny_model)
    assert manifest.tiling.lr_multiple == lr_multiple(tiny_model.config)
    assert manifest.tiling.receptive_field == rf and rf.chain > 0
    assert manifest.postprocess.color_fix == "wavelet"  # what upscale does by default
    for graph, norms in manifest.tiling.statistics.items():  # how an app reads the packing
        offsets = np.cumsum([0] + [2 * n.groups for n in norms])
        assert [n.offset for n in norms] == list(offsets[:-1])
        (stats,) = [t for t in manifest.graphs[graph].inputs if t.name == f"{graph}_stats"]
        assert stats.shape == (1, offsets[-1]) and len({n.name for n in norms}) == len(norms)
    # the overlap the torch path would choose for this tile (capped at half a tile)
    assert manifest.tiling.overlap == default_overlap(rf.chain, manifest.tile,
                                                      manifest.tiling.lr_multiple) > 0


@pytest.mark.slow
def test_manifest_describes_every_graph_and_artifact(exported, tiny_model):
    out, _ = exported
    manifest = Manifest.load(out)
    config = tiny_model.config
    assert manifest.model.config_hash == config.hash()
    assert (manifest.scale, manifest.tile, manifest.output_tile) == \
        (4, config.tile, config.tile * 4)
    assert manifest.one_step.graph == "unet" and manifest.one_step.timestep == 999
    specs = graph_specs(config)
    for name in GRAPHS:
        info = manifest.graphs[name]
        for got, want in zip(info.inputs + info.outputs, specs[name].inputs + specs[name].outputs):
            assert (got.name, tuple(got.shape), got.layout, got.dtype) == \
                (want.name, want.shape, want.layout, "float32")
        assert info.params > 0 and info.flops > 0
    assert sorted(manifest.variants()) == [("coreml", "fp32"), ("executorch", "fp32"),
                                           ("onnx", "fp32"), ("tflite", "fp32")]
    for a in manifest.artifacts:
        path = out / a.path
        assert a.path == f"{a.backend}/{a.graph}.{BACKENDS[a.backend].ext}"
        assert a.sha256 == sha256_path(path)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() \
            else path.stat().st_size
        assert a.bytes == size > 0
    tfl = manifest.artifact("tflite", "unet")
    assert tfl.io_layout == {"latent": "NHWC", "latent_sr": "NHWC"}  # tokens stay NLC
    ml = manifest.artifact("coreml", "decoder")
    assert ml.details["minimum_deployment_target"] == "iOS17"
    assert ml.details["compute_units"] == "ALL" and "FLOAT32" in ml.details["compute_precision"]
    assert visible_files(out) >= {"manifest.json"}
    assert not any(p.name.startswith(".") for p in out.rglob("*"))
    # The statistics pass measures every GroupNorm with means XNNPACK takes (4-D, over the two
    # innermost dims): a mean it refused would cut the .pte at each of them (95 partitions on the
    # tiny model when the means were 3-D; the attention and LayerNorms still cut it).
    norms = sum(len(n) for n in norm_layout(config).values())
    delegated = manifest.artifact("executorch", "statistics").details["delegated_calls"]
    assert 0 < delegated < norms, (delegated, norms)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["executorch", "tflite", "onnx", "coreml"])
def test_every_artifact_matches_torch(exported, tiny_model, backend):
    out, _ = exported
    results = [r for r in check_all(tiny_model, out).checks if r.backend == backend]
    graphs = len(GRAPHS)
    assert len(results) == (graphs if backend == "coreml" else graphs + 1)  # + end to end
    for r in results:
        if backend == "coreml":
            assert r.status == Status.SKIP and r.psnr is None
            assert "spec validated" in r.note and "macOS" in r.note
        else:
            assert r.status == Status.PASS, r
            assert r.psnr >= (50 if r.graph == "end_to_end" else 60), r


def test_parity_notices_a_wrong_artifact(onnx_export, tiny_model, tmp_path):
    """The check can fail: an ONNX decoder exported from other weights is caught."""
    import shutil

    from f2i_mobile.models import build_model
    from f2i_mobile.models.graphs import graph_modules

    out, manifest = onnx_export
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    other = build_model(tiny_model.config, seed=1)
    lowering.lowerer("onnx")(graph_modules(other)["decoder"], manifest.graphs["decoder"],
                             copy / "onnx/decoder.onnx", "fp32")
    report = check_all(tiny_model, copy)
    bad = {r.graph: r for r in report.checks if r.backend == "onnx"}
    assert bad["decoder"].failed and bad["end_to_end"].failed and not bad["unet"].failed
    assert not report.ok and any("onnx fp32 decoder" in f for f in report.failures)


def test_parity_leaves_quantized_and_phone_only_artifacts_to_others(onnx_export, tiny_checkpoint,
                                                                    tmp_path):
    """An export folder with float and quantized artifacts (the README's own workflow) and a
    vendor NPU's: parity checks the float ones and names the others as skipped, with why;
    nothing it did not run is reported as passed."""
    import shutil

    from f2i_mobile.core.manifest import Artifact

    out, _ = onnx_export
    folder = tmp_path / "mixed"
    shutil.copytree(out, folder)
    manifest = Manifest.load(folder)
    for a in list(manifest.artifacts):
        for backend, precision in (("onnx", "w8a8"), ("qnn", "w8a8"), ("qnn", "fp32")):
            manifest.add(Artifact(backend, a.graph, precision, a.path, a.bytes, a.sha256))
    manifest.save(folder)
    r = subprocess.run(CLI + ["parity", "--artifacts", str(folder), "--model",
                              str(tiny_checkpoint), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    by = {(c["backend"], c["precision"]): c for c in report["checks"]}
    quantized, phone = by["onnx", "w8a8"], by["qnn", "fp32"]
    assert quantized["status"] == "skipped" and "quant-check" in quantized["note"]
    assert phone["status"] == "skipped" and "not on this machine" in phone["note"]
    assert {c["status"] for c in report["checks"] if c["precision"] == "fp32"
            and c["backend"] == "onnx"} == {"pass"}
    assert report["ok"] and not any(c["status"] == "pass" for c in report["checks"]
                                    if c["backend"] == "qnn")


@pytest.mark.slow
def test_a_failing_graph_is_named_and_the_others_finish(tmp_path, tiny_model, monkeypatch):
    onnx = lowering.lowerer("onnx")

    def lower(module, spec, path, precision):
        if spec.name == "statistics":  # the largest graph, and three come after it
            raise RuntimeError("unsupported op aten::frobnicate")
        return onnx(module, spec, path, precision)

    monkeypatch.setitem(lowering.LOWERERS, "onnx", lower)
    manifest, failures = export_model(tiny_model, tmp_path / "out", parse_backends("onnx"),
                                      progress=False)
    assert [(f.backend, f.graph) for f in failures] == [("onnx", "statistics")]
    assert "frobnicate" in str(failures[0]) and str(failures[0]).startswith("onnx/statistics")
    done = ["conditioner", "encoder", "unet", "decoder"]
    assert [a.graph for a in manifest.artifacts] == done
    assert not (tmp_path / "out/onnx/statistics.onnx").exists()
    assert visible_files(tmp_path / "out") == {"manifest.json", *(f"onnx/{g}.onnx" for g in done)}


def test_missing_vendor_sdk_fails_at_once_in_one_line(tmp_path, tiny_checkpoint):
    env = {k: v for k, v in os.environ.items() if k != "QNN_SDK_ROOT"}
    out = tmp_path / "out"
    r = subprocess.run(CLI + ["export", "--model", str(tiny_checkpoint), "--out", str(out),
                              "--backends", "onnx,qnn"], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert "QNN_SDK_ROOT" in r.stderr and "Qualcomm" in r.stderr
    assert not out.exists()
    with pytest.raises(F2IError, match="unknown backend"):
        check_backends("executorch,tensorrt")


@pytest.mark.slow
def test_a_killed_export_leaves_only_complete_artifacts(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    cmd = CLI + ["export", "--model", str(tiny_checkpoint), "--out", str(out),
                 "--backends", "onnx"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "manifest.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the next graph's lowering
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = Manifest.load(out)
    listed = {a.path: a for a in manifest.artifacts}
    assert 1 <= len(listed) < len(GRAPHS)
    assert visible_files(out) == {"manifest.json", *listed}
    for path, a in listed.items():
        assert sha256_path(out / path) == a.sha256
    # Running again finishes the job, and sweeps what the killed run left behind; the exporter's
    # log chatter (torch.onnx's warnings about torchvision's missing ops) stays out of stderr.
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not re.search(r"^[IWE]\d{4} ", r.stderr, re.M), r.stderr
    assert len(Manifest.load(out).artifacts) == len(GRAPHS)
    assert not any(p.name.startswith(".") for p in out.rglob("*"))


def test_an_export_of_another_tile_is_not_mixed_in(onnx_export, tiny_model):
    out, _ = onnx_export
    with pytest.raises(F2IError, match="another model or tile"):
        export_model(tiny_model, out, parse_backends("onnx"), tile=32, progress=False)


def test_an_export_of_other_weights_is_not_mixed_in(onnx_export, tiny_model, tmp_path):
    """The same config retrained (other weights, same config hash) does not add its graphs,
    or its quantized graphs, to an export of the old weights: refused before any capture."""
    import copy
    import shutil

    import torch

    from f2i_mobile.calibration.quantize import QuantRequest, quantize_model
    from f2i_mobile.models import weights_hash

    out = tmp_path / "export"
    shutil.copytree(onnx_export[0], out)
    assert Manifest.load(out).model.weights_hash == weights_hash(tiny_model)
    retrained = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(retrained.unet.parameters()).add_(1e-3)
    assert weights_hash(retrained) != weights_hash(tiny_model)
    assert retrained.config.hash() == tiny_model.config.hash()
    with pytest.raises(F2IError, match="another model or tile") as err:
        export_model(retrained, out, parse_backends("onnx"), progress=False)
    assert weights_hash(retrained) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(F2IError, match="another model or tile"):
        quantize_model(retrained, out, QuantRequest("onnx", "w8a8"))
    assert not (out / "calibration").exists() and not (out / "check").exists()


def test_open_runner_says_what_the_export_has(onnx_export):
    out, _ = onnx_export
    with pytest.raises(F2IError, match="onnx/fp32"):
        open_runner("onnx", out, "fp16")
    with pytest.raises(F2IError, match="not on this machine"):
        open_runner("coreml", out)
    r = subprocess.run(CLI + ["parity", "--artifacts", str(out / "nope")], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "manifest.json" in r.stderr
    assert json.loads((out / "manifest.json").read_text())["format"]


def test_vendor_compile_specs_name_the_target_chip(monkeypatch):
    """Each vendor backend gets the CompileSpecs its ExecuTorch backend requires (built without
    the SDK); a chip the backend does not know is one line."""
    from executorch.backends.samsung.serialization.compile_options import ENN_COMPILE_OPTION_TITLE

    from f2i_mobile.export.vendor import compile_specs

    assert [(s.key, s.value) for s in compile_specs("mediatek")] == [("platform-config",
                                                                      b"mt6989")]
    assert [s.key for s in compile_specs("samsung")] == [ENN_COMPILE_OPTION_TITLE]
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    default = compile_specs("qnn")  # without the SDK, and without ExecuTorch downloading one
    assert default and "QNN_SDK_ROOT" not in os.environ
    monkeypatch.setenv("F2I_QNN_SOC", "SM8550")
    assert [s.value for s in compile_specs("qnn")] != [s.value for s in default]
    monkeypatch.setenv("F2I_QNN_SOC", "SM9999")
    with pytest.raises(F2IError, match="F2I_QNN_SOC=SM9999"):
        compile_specs("qnn")
    monkeypatch.setenv("F2I_SAMSUNG_SOC", "E1234")
    with pytest.raises(F2IError, match="F2I_SAMSUNG_SOC=E1234"):
        compile_specs("samsung")


@pytest.mark.slow
def test_qnn_with_an_sdk_folder_goes_through_executorch_qnn(tmp_path, tiny_model, monkeypatch):
    """With QNN_SDK_ROOT set, the graph reaches ExecuTorch's QNN partitioner, which loads the
    SDK's HTP library; a folder without it fails there, reported with backend and graph."""
    monkeypatch.setenv("QNN_SDK_ROOT", str(tmp_path))
    out = tmp_path / "out"
    manifest, failures = export_model(tiny_model, out, check_backends("qnn"), fail_fast=True,
                                      progress=False)
    assert [(f.backend, f.graph) for f in failures] == [("qnn", "conditioner")]
    assert "QNN" in failures[0].reason
    assert manifest.artifacts == [] and visible_files(out) == {"manifest.json"}


def test_fp16_leaves_the_shared_float_graphs_alone(tiny_model):
    """Backends export one after another from the same merged graphs: an fp16 export must not
    turn them to half for the next backend (Core ML's FLOAT16 starts from the float graph)."""
    import torch

    from f2i_mobile.export.common import with_precision
    from f2i_mobile.models.graphs import graph_modules

    modules = graph_modules(tiny_model)
    half = with_precision(modules["decoder"], "fp16")
    assert next(half.parameters()).dtype == torch.float16
    assert {p.dtype for m in modules.values() for p in m.parameters()} == {torch.float32}


@pytest.mark.slow
def test_tflite_fp16_has_half_weights_and_stays_close(exported, tiny_model, tmp_path):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from f2i_mobile.core.fidelity import psnr
    from f2i_mobile.export import tflite
    from f2i_mobile.models.graphs import example_inputs, graph_modules

    out, _ = exported
    spec = graph_specs(tiny_model.config)["decoder"]
    path = tmp_path / "decoder.tflite"
    lowered = tflite.lower(graph_modules(tiny_model)["decoder"], spec, path, "fp16")
    assert "fp16" in lowered.details
    assert path.stat().st_size < 0.85 * (out / "tflite/decoder.tflite").stat().st_size
    latent, stats = example_inputs(spec)
    run = Interpreter(model_path=str(path)).get_signature_runner()
    (got,) = run(args_0=latent.permute(0, 2, 3, 1).numpy(), args_1=stats.numpy()).values()
    ref = graph_modules(tiny_model)["decoder"](latent, stats).detach().numpy()
    assert psnr(np.transpose(got, (0, 3, 1, 2)), ref, 1.0) >= 45


def test_external_data_moves_in_with_its_graph(tmp_path):
    """Graphs past ONNX's 2 GB protobuf limit keep weights in a file beside the .onnx: it must
    land next to the graph (ONNX Runtime finds it by relative name), not stay in the work
    folder that is removed."""
    from conftest import make_manifest

    from f2i_mobile.export.common import Lowered
    from f2i_mobile.export.pipeline import publish

    def write(path):
        path.write_bytes(b"graph")
        (path.parent / "unet.onnx.data").write_bytes(b"weights")
        return Lowered(details={"external_data": [{"name": "unet.onnx.data", "bytes": 7}]})

    manifest = make_manifest()
    artifact = publish(manifest, tmp_path, "onnx", "unet", "fp32", write)
    final = tmp_path / "onnx" / "unet.onnx"
    assert artifact.path == "onnx/unet.onnx" and final.read_bytes() == b"graph"
    assert (final.parent / "unet.onnx.data").read_bytes() == b"weights"
    assert sorted(p.name for p in final.parent.iterdir()) == ["unet.onnx", "unet.onnx.data"]
    assert Manifest.load(tmp_path).artifact("onnx", "unet").sha256 == sha256_path(final)


def test_onnx_external_data_is_read_from_the_graph(tmp_path):
    """The .onnx's own tensor records name its external data; other files in the folder (the
    calibration work folder holds several graphs) are not."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from f2i_mobile.export.onnx import external_files

    def model():
        w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
        return helper.make_model(graph)

    (tmp_path / "encoder.fp32.onnx").write_bytes(b"another graph")
    onnx.save_model(model(), str(tmp_path / "unet.onnx"), save_as_external_data=True,
                    location="unet.onnx.data", size_threshold=0)
    onnx.save_model(model(), str(tmp_path / "decoder.onnx"))
    assert external_files(tmp_path / "unet.onnx") == ["unet.onnx.data"]
    assert external_files(tmp_path / "decoder.onnx") == []
