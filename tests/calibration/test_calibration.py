"""Calibration and the quantization gate, on the tiny preset with real quantizers and runtimes.
Tests that quantize real graphs are slow."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from f2i_mobile.calibration.capture import capture, load_calibration
from f2i_mobile.calibration.schemes import TOOLS, check_scheme, supported, supported_backends
from f2i_mobile.cli import main
from f2i_mobile.core.contract import BACKENDS, GRAPHS, SCHEMES
from f2i_mobile.core.errors import F2IError

TILES = 4


@pytest.fixture(scope="module")
def calib_set(tiny_model, tmp_path_factory):
    return capture(tiny_model, tmp_path_factory.mktemp("calib") / "set", tiles=TILES, seed=3)


def test_capture_is_deterministic(tiny_model, calib_set, tmp_path):
    again = capture(tiny_model, tmp_path / "again", tiles=TILES, seed=3)
    for name in ("tensors.safetensors", "calibration.json"):
        assert (calib_set.folder / name).read_bytes() == (again.folder / name).read_bytes()
    other = capture(tiny_model, tmp_path / "other", tiles=TILES, seed=4)
    assert (other.folder / "tensors.safetensors").read_bytes() != \
        (calib_set.folder / "tensors.safetensors").read_bytes()


def test_capture_holds_every_graph_io(tiny_model, calib_set):
    loaded = load_calibration(calib_set.folder)
    t = tiny_model.config.tile
    assert loaded.tensors["lr"].shape == (TILES, 3, t, t)
    assert loaded.tensors["hr"].shape == (TILES, 3, 4 * t, 4 * t)
    # The captured float outputs are the float pipeline's: the whole model on the LR tiles.
    import numpy as np
    import torch

    with torch.no_grad():
        sr = tiny_model(torch.from_numpy(loaded.tensors["lr"])).numpy()
    np.testing.assert_allclose(loaded.tensors["sr"], sr, atol=1e-5)
    unet = loaded.graph_inputs("unet")
    assert len(unet) == TILES and set(unet[0]) == {"latent", "tokens", "unet_stats"}


def test_capture_bad_folder_is_one_line(tiny_model, tmp_path):
    with pytest.raises(F2IError, match="not a folder"):
        capture(tiny_model, tmp_path / "x", images=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(F2IError, match="no readable"):
        capture(tiny_model, tmp_path / "x", images=tmp_path / "empty")
    assert not (tmp_path / "x").exists()


def test_every_scheme_the_contract_lists_has_its_tool():
    pairs = {(b.name, str(s)) for b in BACKENDS.values() for s in b.schemes}
    assert pairs == set(TOOLS)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("scheme", [*SCHEMES, "fp16"])
def test_unsupported_pairs_say_so_in_one_line(backend, scheme):
    if scheme in BACKENDS[backend].schemes:
        assert check_scheme(scheme, backend) == TOOLS[backend, scheme]
        return
    with pytest.raises(F2IError) as err:
        check_scheme(scheme, backend)
    line = str(err.value)
    assert "\n" not in line and scheme in line
    # It says what to use instead: the float precision flag, or the backend's own schemes.
    assert "--precision" in line or all(s in line for s in supported(backend))


def test_qnn_has_8_and_16_bit_activations_and_refuses_the_rest_in_one_line():
    assert "16a8w" in check_scheme("w8a16", "qnn") and "8a8w" in check_scheme("w8a8", "qnn")
    with pytest.raises(F2IError) as err:
        check_scheme("palette4", "qnn")
    line = str(err.value)
    assert "\n" not in line and "qnn supports w8a8, w8a16" in line
    # Without --backends, --quant stays on the backends that need no vendor SDK.
    assert "qnn" not in supported_backends("w8a16")


def test_several_schemes_are_requested_per_backend_that_takes_them():
    from f2i_mobile.calibration.quantize import check_requests

    pairs = [(r.backend, r.scheme) for r in check_requests(None, "w8a8, w8a16")]
    assert ("tflite", "w8a8") in pairs and ("tflite", "w8a16") in pairs
    assert ("executorch", "w8a8") in pairs and ("executorch", "w8a16") not in pairs
    assert len(pairs) == len(set(pairs))
    with pytest.raises(F2IError, match="w8a16 is not supported on executorch"):
        check_requests("executorch", "w8a8,w8a16")
    with pytest.raises(F2IError, match="name a scheme"):
        check_requests(None, " , ")


def _no_lowering(*args):
    raise AssertionError("the float graphs were lowered again")


@pytest.mark.slow
def test_gate_passes_real_quantization_and_fails_a_broken_scale(tiny_model, calib_set, tmp_path,
                                                                onnx_export, capsys, monkeypatch):
    from f2i_mobile.calibration import quant_onnx
    from f2i_mobile.calibration.quantize import QuantRequest, quantize_model
    from f2i_mobile.export import lowering

    out = tmp_path / "export"
    # Quantized into a folder that holds the same model's float graphs (`export --quant` after
    # `export`): they are what the quantizer starts from, not lowered again.
    shutil.copytree(onnx_export[0], out)
    monkeypatch.setitem(lowering.LOWERERS, "onnx", _no_lowering)
    artifacts = quantize_model(tiny_model, out, QuantRequest("onnx", "w8a8"),
                               calibration=calib_set.folder)
    monkeypatch.undo()
    assert [a.graph for a in artifacts] == list(GRAPHS)
    assert all((out / a.path).is_file() and a.bytes > 0 for a in artifacts)

    assert main(["quant-check", "--artifacts", str(out), "--min-psnr", "20", "--json"]) == 0
    good = json.loads(capsys.readouterr().out)
    checks = {c["graph"]: c for c in good["checks"]}
    assert good["ok"] and checks["end_to_end"]["status"] == "pass"
    assert checks["end_to_end"]["psnr"] >= 20 and checks["end_to_end"]["min_psnr"] == 20
    # The decoder is scored as an image (SSIM beside PSNR) and gated only end to end.
    assert 0 < checks["decoder"]["ssim"] <= 1 and checks["decoder"]["min_psnr"] is None

    # The same export with the decoder's input scale divided by 100 (the latent saturates).
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    quant_onnx.perturb_scale(broken / "onnx" / "decoder.w8a8.onnx", 0.01)
    assert main(["quant-check", "--artifacts", str(broken), "--min-psnr", "20"]) == 1
    table = capsys.readouterr().out
    assert "FAILED: onnx w8a8 end_to_end: PSNR" in table


def test_gate_skips_what_cannot_run_here_and_checks_the_rest(onnx_export, tiny_model, calib_set,
                                                            tmp_path, capsys):
    """An export with a QNN variant (its .pte runs on the phone's HTP only) is gated on the
    variants that run here; the QNN one is listed as skipped with the reason, not an abort.
    The 'quantized' ONNX variant here is the float graphs under another name: identical
    outputs, so the gate must pass it."""
    import shutil

    from f2i_mobile.core.manifest import Artifact, Manifest

    out = tmp_path / "export"
    shutil.copytree(onnx_export[0], out)
    shutil.copytree(calib_set.folder, out / "calibration")
    shutil.copytree(calib_set.folder, out / "check")
    manifest = Manifest.load(out)
    for a in list(manifest.artifacts):
        manifest.add(Artifact("onnx", a.graph, "w8a8", a.path, a.bytes, a.sha256))
        manifest.add(Artifact("qnn", a.graph, "w8a16", a.path, a.bytes, a.sha256))
    manifest.save(out)
    assert main(["quant-check", "--artifacts", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    qnn = [c for c in report["checks"] if c["backend"] == "qnn"]
    assert [c["status"] for c in qnn] == ["skipped"] and "not on this machine" in qnn[0]["note"]
    e2e = next(c for c in report["checks"] if c["backend"] == "onnx" and c["graph"] == "end_to_end")
    assert e2e["status"] == "pass" and e2e["psnr"] is None  # identical: infinite, as null


def test_float_graphs_of_another_model_or_tile_are_refused_in_one_line(onnx_export, tiny_model,
                                                                     tmp_path):
    from conftest import make_manifest

    from f2i_mobile.calibration.quantize import (
        QuantRequest,
        float_graphs,
        link_into,
        quantize_model,
    )

    export, manifest = onnx_export
    assert float_graphs(export, manifest, {"tflite"}) == []  # it holds none
    link_into(tmp_path, float_graphs(export, manifest, {"onnx"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{g}.fp32.onnx" for g in GRAPHS)
    other = make_manifest(tile=manifest.tile)  # another config
    with pytest.raises(F2IError, match="another model or tile") as err:
        float_graphs(export, other, {"onnx"})
    assert "\n" not in str(err.value)
    # through quantize_model: refused before any calibration capture
    other.save(tmp_path / "other")
    with pytest.raises(F2IError, match="another model or tile"):
        quantize_model(tiny_model, tmp_path / "q", QuantRequest("onnx", "w8a8"),
                       float_export=tmp_path / "other")
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_executorch_pte_with_a_broken_scale_loses_fidelity(tiny_model, calib_set):
    """The decoder's input scale x10 in the converted graph, lowered to a .pte and run by the
    ExecuTorch runtime, costs several dB against the good converted graph (that a .pte follows
    its converted graph is the U-Net test's below)."""
    import numpy as np
    import torch
    from executorch.runtime import Runtime

    from f2i_mobile.calibration import quant_executorch
    from f2i_mobile.calibration.quantize import torch_inputs
    from f2i_mobile.core.fidelity import psnr as tensor_psnr
    from f2i_mobile.models.graphs import graph_modules, graph_specs

    decoder = graph_modules(tiny_model)["decoder"]
    spec = graph_specs(tiny_model.config)["decoder"]
    inputs = torch_inputs(calib_set, "decoder")
    ref = calib_set.tensors["sr"]

    converted = quant_executorch.quantize(decoder, inputs)
    with torch.no_grad():
        good = tensor_psnr(np.concatenate([converted(*args).numpy() for args in inputs]), ref, 1.0)
    assert good > 30
    quant_executorch.perturb_scale(converted, 10.0)
    pte = quant_executorch.lower(converted, spec)  # the program reads from this buffer
    method = Runtime.get().load_program(pte).load_method("forward")
    out = np.concatenate([method.execute(list(args))[0].numpy() for args in inputs])
    assert tensor_psnr(out, ref, 1.0) < good - 5


@pytest.fixture(scope="module")
def unet_w8a8(tiny_model, calib_set):
    """The tiny U-Net graph, XNNPACK-quantized on two calibration tiles, and those inputs."""
    from f2i_mobile.calibration import quant_executorch
    from f2i_mobile.calibration.quantize import torch_inputs
    from f2i_mobile.models.graphs import graph_modules

    inputs = torch_inputs(calib_set, "unet")[:2]
    return quant_executorch.quantize(graph_modules(tiny_model)["unet"], inputs), inputs


def _shared_dequants(graph) -> int:
    return sum(1 for n in graph.nodes
               if "dequantize_per_tensor" in str(n.target) and len(n.users) > 1)


def test_every_dequantize_gets_its_own_user_and_the_numbers_stay(unet_w8a8):
    """The U-Net's skip connections leave dequantized activations shared between a block and
    an up block; after the split none is shared and the graph computes exactly the same."""
    import copy

    import torch

    from f2i_mobile.calibration.quant_executorch import split_shared_dequants

    converted, inputs = unet_w8a8
    split = copy.deepcopy(converted)
    shared = _shared_dequants(split.graph)
    assert shared > 0  # the pattern the split exists for is in the tiny U-Net
    assert split_shared_dequants(split) >= shared and _shared_dequants(split.graph) == 0
    with torch.no_grad():
        assert torch.equal(split(*inputs[0]), converted(*inputs[0]))


@pytest.mark.slow
def test_executorch_w8a8_unet_runs_with_its_skip_connections_across_partitions(tiny_model,
                                                                             unet_w8a8):
    """The quantized U-Net's .pte runs in the ExecuTorch runtime (skip tensors cross XNNPACK
    partitions, which the channels-last hand-over once broke) and follows its converted graph."""
    import numpy as np
    import torch
    from executorch.runtime import Runtime

    from f2i_mobile.calibration import quant_executorch
    from f2i_mobile.core.fidelity import psnr as tensor_psnr
    from f2i_mobile.models.graphs import graph_specs

    converted, inputs = unet_w8a8
    pte = quant_executorch.lower(converted, graph_specs(tiny_model.config)["unet"])
    method = Runtime.get().load_program(pte).load_method("forward")
    with torch.no_grad():
        for args in inputs:
            out, ref = method.execute(list(args))[0].numpy(), converted(*args).numpy()
            assert out.shape == ref.shape
            span = float(np.abs(ref).max())
            assert tensor_psnr(out / span, ref / span, 1.0) > 35


@pytest.mark.slow
def test_tflite_int8_and_16x8_run_through_the_export_runner(tiny_model, calib_set, tmp_path,
                                                           exported, monkeypatch):
    from f2i_mobile.calibration import quant_tflite
    from f2i_mobile.calibration.quantize import QuantRequest, quantize_model
    from f2i_mobile.calibration.report import quant_check

    out = tmp_path / "export"
    # one call for both schemes, from the float .tflite graphs of the same model's export (not
    # lowered again)
    monkeypatch.setattr(quant_tflite.export_tflite, "lower", _no_lowering)
    quantize_model(tiny_model, out, [QuantRequest("tflite", s) for s in ("w8a8", "w8a16")],
                   calibration=calib_set.folder, float_export=exported[0])
    monkeypatch.undo()
    report = quant_check(out, min_psnr=15, tiles=1)  # int16 kernels are reference code: slow
    by = {(c.precision, c.graph): c for c in report.checks}
    assert sorted({p for p, _ in by}) == ["w8a16", "w8a8"] and report.ok
    for scheme in ("w8a8", "w8a16"):
        assert by[scheme, "end_to_end"].psnr > 15, by[scheme, "end_to_end"]
        assert by[scheme, "decoder"].psnr > 25, by[scheme, "decoder"]
    # What stays float is found by litert-torch's tensor names: if they change, the rules match
    # nothing, so check the ops themselves. In the decoder the normalization is an integer
    # multiply-add on the activation, fed by float factors; in the statistics pass the
    # normalizations that measure their input stay float.
    from ai_edge_litert.interpreter import Interpreter

    from f2i_mobile.core.manifest import Manifest

    def ops(name):
        interpreter = Interpreter(model_path=str(out / "tflite" / name))
        dtype = {t["index"]: (t["name"], t["dtype"]) for t in interpreter.get_tensor_details()}
        return [(op["op_name"], *dtype[op["outputs"][0]]) for op in interpreter._get_ops_details()]

    def input_types(name):
        runner = Interpreter(model_path=str(out / "tflite" / name)).get_signature_runner()
        return [d["dtype"] for d in runner.get_input_details().values()]

    from f2i_mobile.calibration.quant_tflite import decoder_tail
    from f2i_mobile.models.graphs import graph_modules

    tail = decoder_tail(graph_modules(tiny_model)["decoder"])

    def in_tail(name):
        return any(re.search(scope, name) for scope in tail)

    manifest = Manifest.load(out)
    for scheme, int_type in (("w8a8", np.int8), ("w8a16", np.int16)):
        decoder = ops(f"decoder.{scheme}.tflite")
        # computed in float from the float statistics input; the affine multiply is integer
        # at w8a8 (QUANTIZE hands it the factors) except in the decoder's tail, and float at
        # w8a16
        factors = [d for op, name, d in decoder if "NormFactors_" in name and op != "QUANTIZE"]
        affine = [(d, in_tail(name)) for op, name, d in decoder
                  if "StatNorm_" in name and "NormFactors_" not in name and op == "MUL"]
        convs = [d for op, name, d in decoder if op == "CONV_2D"]
        assert factors and all(d == np.float32 for d in factors), scheme
        assert any(t for _, t in affine) and not all(t for _, t in affine), scheme
        assert all(d == (int_type if scheme == "w8a8" and not t else np.float32)
                   for d, t in affine), scheme
        # the tail's residual stream (its ResnetBlock2D's own ADDs) is float at w8a8 as well
        residual = [d for op, name, d in decoder if op == "ADD" and in_tail(name)
                    and re.search(r"ResnetBlock2D_\d+(;|$)", name)]
        assert residual and all(d == np.float32 for d in residual), scheme
        assert convs and all(d == int_type for d in convs), scheme
        assert input_types(f"decoder.{scheme}.tflite") == [np.float32, np.float32], scheme
        assert input_types(f"conditioner.{scheme}.tflite") == [int_type], scheme
        measured = [d for op, name, d in ops(f"statistics.{scheme}.tflite")
                    if "StatNorm_" in name and op == "MEAN"]
        assert measured and all(d == np.float32 for d in measured), scheme
        # ... and hands its moments over in float, as the tile graphs take them
        runner = Interpreter(model_path=str(out / "tflite" / f"statistics.{scheme}.tflite"))
        outputs = runner.get_signature_runner().get_output_details().values()
        assert [d["dtype"] for d in outputs] == [np.float32] * 3, scheme
        # The conditioner's LayerNorms and residual ADDs stay float (the op's own module is the
        # last part of its name); its linears are integer.
        conditioner = [(op, name.rsplit("/", 1)[-1], d)
                       for op, name, d in ops(f"conditioner.{scheme}.tflite")]
        residual = [d for op, own, d in conditioner if op in ("ADD", "MEAN")
                    and (".LayerNorm_" in own or ".Dinov2Layer_" in own)]
        linears = [d for op, own, d in conditioner
                   if op == "FULLY_CONNECTED" and ".Linear_" in own]
        assert residual and all(d == np.float32 for d in residual), scheme
        assert linears and all(d == int_type for d in linears), scheme
        # The partition count is recorded for the benchmark's before/after comparison.
        assert manifest.artifact("tflite", "decoder", scheme).details["integer_partitions"] >= 1


@pytest.mark.slow
def test_coreml_palettized_package_and_its_torch_fidelity(tiny_model, calib_set, tmp_path):
    import coremltools as ct
    import numpy as np
    import torch

    from f2i_mobile.calibration import quant_coreml
    from f2i_mobile.calibration.quantize import torch_inputs
    from f2i_mobile.core.fidelity import psnr as tensor_psnr
    from f2i_mobile.models.graphs import graph_modules, graph_specs

    decoder = graph_modules(tiny_model)["decoder"]
    spec = graph_specs(tiny_model.config)["decoder"]
    mlmodel = quant_coreml.convert_float(decoder, spec, tmp_path / "decoder.fp16.mlpackage")
    details = quant_coreml.compress(mlmodel, "palette4", tmp_path / "decoder.palette4.mlpackage")
    assert "not run" in details["prediction"]
    program = ct.models.MLModel(str(tmp_path / "decoder.palette4.mlpackage"),
                                skip_model_load=True).get_spec().mlProgram
    ops = {op.type for f in program.functions.values() for b in f.block_specializations.values()
           for op in b.operations}
    assert any("lut" in op for op in ops), ops  # weights stored as look-up tables

    compressed = quant_coreml.compress_torch(decoder, "palette4")
    conv = next(m for m in compressed.modules() if isinstance(m, torch.nn.Conv2d))
    assert len(torch.unique(conv.weight)) <= 16
    with torch.no_grad():
        out = np.concatenate([compressed(*a).numpy() for a in torch_inputs(calib_set, "decoder")])
    assert 15 < tensor_psnr(out, calib_set.tensors["sr"], 1.0) < 80


def test_export_quant_refuses_an_unsupported_pair_before_any_work(tiny_checkpoint, tmp_path,
                                                                   capsys):
    out = tmp_path / "out"
    assert main(["export", "--model", str(tiny_checkpoint), "--out", str(out), "--quant",
                 "w8a16", "--backends", "tflite,executorch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "w8a16 is not supported on executorch" in err
    assert "int16" in err or "16-bit" in err
    assert not out.exists()


@pytest.mark.slow
def test_qnn_16_bit_activations_are_closer_to_float_than_8_bit(tiny_model, calib_set,
                                                             monkeypatch):
    """QnnQuantizer without the QNN SDK (and without fetching one): the converted decoder at
    w8a16 carries uint16 activations and is nearer float than at w8a8."""
    import numpy as np
    import torch

    from f2i_mobile.calibration import quant_qnn
    from f2i_mobile.calibration.quant_executorch import scale_nodes
    from f2i_mobile.calibration.quantize import torch_inputs
    from f2i_mobile.core.fidelity import psnr as tensor_psnr
    from f2i_mobile.models.graphs import graph_modules

    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    decoder = graph_modules(tiny_model)["decoder"]
    inputs = torch_inputs(calib_set, "decoder")
    psnr, ranges = {}, {}
    for scheme in ("w8a8", "w8a16"):
        converted = quant_qnn.quantize(decoder, inputs, scheme)
        with torch.no_grad():
            out = np.concatenate([converted(*args).numpy() for args in inputs])
        psnr[scheme] = tensor_psnr(out, calib_set.tensors["sr"], 1.0)
        ranges[scheme] = {n.args[4] for n in scale_nodes(converted)}
    assert ranges == {"w8a8": {255}, "w8a16": {65535}}  # activations' quant_max
    assert 30 < psnr["w8a8"] < psnr["w8a16"] - 2, psnr
    assert "QNN_SDK_ROOT" not in os.environ  # set empty only while ExecuTorch's helpers ran


@pytest.mark.slow
def test_qnn_statistics_graph_measures_in_float(tiny_model, calib_set, monkeypatch):
    """QnnQuantizer leaves the statistics graph's measuring normalizations (and every graph's
    factor computation) unannotated: no rounding between two of their ops, while the
    convolutions around them are quantized."""
    import torch

    from f2i_mobile.calibration import quant_qnn
    from f2i_mobile.calibration.quantize import torch_inputs
    from f2i_mobile.models.graphs import graph_modules

    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    converted = quant_qnn.quantize(graph_modules(tiny_model)["statistics"],
                                   torch_inputs(calib_set, "statistics")[:2], "w8a8")

    def kind(node):
        return quant_qnn.own_module_type(node).rsplit(".", 1)[-1]

    measuring = {"StatNorm", "NormFactors"}
    rounded = [(n.args[0], [u for dq in n.users for u in dq.users])
               for n in converted.graph.nodes
               if n.op == "call_function" and str(n.target).endswith("quantize_per_tensor.default")
               and "dequantize" not in str(n.target)]
    assert any(kind(src) == "Conv2d" for src, _ in rounded)
    inside = [(src.name, u.name) for src, users in rounded for u in users
              if kind(src) in measuring and kind(u) in measuring]
    assert not inside, inside
    assert torch.isfinite(converted(*torch_inputs(calib_set, "statistics")[0])[0]).all()


def test_qnn_quant_export_without_the_sdk_fails_at_once_and_writes_nothing(
        tiny_model, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    from f2i_mobile.calibration.quantize import QuantRequest, quantize_model

    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    out = tmp_path / "out"
    assert main(["export", "--model", str(tiny_checkpoint), "--out", str(out), "--quant",
                 "w8a16", "--backends", "qnn"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "QNN" in err and "SDK" in err and "QNN_SDK_ROOT" in err
    with pytest.raises(F2IError, match="QNN_SDK_ROOT"):
        quantize_model(tiny_model, out, QuantRequest("qnn", "w8a8"))
    assert not out.exists()


@pytest.mark.slow
def test_sensitivity_ranks_every_layer_and_mixed_precision_meets_its_target(tiny_model,
                                                                              calib_set):
    import torch

    from f2i_mobile.calibration import quant_executorch
    from f2i_mobile.calibration.sensitivity import (
        Evaluator,
        layer_sensitivity,
        mixed_precision,
        only_layers,
        quantized_layers,
    )

    evaluator = Evaluator(tiny_model, calib_set, tiles=2)
    decoder = evaluator.converted("decoder")
    args = evaluator.inputs["decoder"][0]
    with torch.no_grad():
        full, float_ = decoder(*args), evaluator.modules["decoder"](*args)
        assert torch.equal(only_layers(decoder, lambda layer: True)(*args), full)
        assert torch.allclose(only_layers(decoder, lambda layer: False)(*args), float_,
                              atol=1e-5)

    # The decoder's layers only, to keep the test short; the others are ranked the same way.
    sens = layer_sensitivity(tiny_model, calib_set, tiles=2, graphs=("decoder",))
    layers = len(quantized_layers(decoder))
    convs = quant_executorch.quantizable_layers(evaluator.modules["decoder"])
    assert len(sens) == layers and set(convs) <= {s.layer for s in sens}
    assert all(s.layer for s in sens)  # the graph input's pair is named, not ""
    assert [s.psnr for s in sens] == sorted(s.psnr for s in sens)
    all_quantized = evaluator.psnr({"decoder": decoder})
    target = all_quantized + 3  # reachable: with every decoder layer float the PSNR is inf
    mixed = mixed_precision(tiny_model, calib_set, target, sens, tiles=2)
    kept = sum(len(v) for v in mixed.float_layers.values())
    assert mixed.psnr >= target and 0 < kept < layers
    # The fewest by the greedy order: one layer fewer misses the target.
    assert dict(mixed.trials).get(kept - 1, -1) < target


def test_gate_without_quantized_artifacts_is_one_line(tmp_path, capsys):
    assert main(["quant-check", "--artifacts", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "manifest.json" in err


def test_the_decoders_last_up_block_and_head_stay_float_at_w8a8_on_tflite(tiny_model):
    from f2i_mobile.calibration.quant_tflite import float_scopes
    from f2i_mobile.models.graphs import graph_modules

    modules = graph_modules(tiny_model)
    last = len(tiny_model.vae.decoder.up_blocks) - 1
    scopes = float_scopes(modules["decoder"], "decoder", "w8a8")
    path = "w/diffusers.models.autoencoders.vae.Decoder_decoder"

    def floats(name):
        return any(re.search(scope, name) for scope in scopes)

    block = f"{path}/diffusers.models.unets.unet_2d_blocks.UpDecoderBlock2D_{last}"
    assert floats(f"{block}/diffusers.models.resnet.ResnetBlock2D_1;")  # residual add
    assert floats(f"{block}/diffusers.models.resnet.ResnetBlock2D_0/torch.nn.SiLU_nonlinearity;3")
    assert floats(f"{path}/f2i_mobile.models.norms.StatNorm_conv_norm_out;5")
    assert floats(f"{path}/torch.nn.modules.activation.SiLU_conv_act;")
    assert not floats(f"{path}/diffusers.models.unets.unet_2d_blocks.UpDecoderBlock2D_{last - 1}"
                      "/diffusers.models.resnet.ResnetBlock2D_1;")
    assert not floats(f"{path}/diffusers.models.unets.unet_2d_blocks.UNetMidBlock2D_mid_block"
                      "/diffusers.models.resnet.ResnetBlock2D_1;")
    assert not floats(f"{path}/torch.nn.modules.conv.Conv2d_conv_out;")
    # w8a16 keeps every normalization and add float already; other graphs have no such tail
    assert float_scopes(modules["decoder"], "decoder", "w8a16") == ()
    assert float_scopes(modules["encoder"], "encoder", "w8a8") == ()


@pytest.mark.parametrize("name, owned", [
    ("w/ResnetBlock2D_0/f2i_mobile.models.norms.StatNorm_norm1;4", True),
    # litert-torch joins the paths of merged ops with ";"
    ("w/ResnetBlock2D_0/f2i_mobile.models.norms.StatNorm_norm1;;w/torch.nn.Conv2d_conv_in;", True),
    ("w/f2i_mobile.models.norms.StatNorm_norm2/f2i_mobile.models.norms.NormFactors_factors;3",
     False),  # a child's op: its own rule decides
    ("w/ResnetBlock2D_0/torch.nn.modules.conv.Conv2d_conv1;2", False),
])
def test_a_tflite_float_rule_covers_the_ops_a_module_owns(name, owned):
    from f2i_mobile.calibration.quant_tflite import own_ops

    assert bool(re.search(own_ops("StatNorm"), name)) is owned
