"""Export layer: real lowering of the tiny model (tile 16) to ExecuTorch, TFLite, Core ML and
ONNX, real runtimes for parity, a real SIGKILL for atomicity. One export is shared by the tests
that only read it."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from export import parity
from export.pipeline import export_model
from f2i_mobile.cli import main
from f2i_mobile.errors import F2IError
from f2i_mobile.graphs import GRAPHS, graph_specs, one_step_record
from f2i_mobile.manifest import Manifest, path_size, sha256_path
from f2i_mobile.models import build_model, from_pretrained, preset
from f2i_mobile.runners import open_runner

REPO = Path(__file__).resolve().parents[1]
TILE = 16
EXTENSIONS = {"executorch": "pte", "tflite": "tflite", "coreml": "mlpackage", "onnx": "onnx"}


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("export") / "out"
    result = export_model(tiny_model, out, "executorch,tflite,coreml,onnx", tile=TILE)
    assert result.failures == []
    return out


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or ".old" in p.name]


def test_manifest_describes_graphs_and_artifacts(tiny_export, tiny_model):
    manifest = Manifest.load(tiny_export)
    config = tiny_model.config
    assert manifest.model["config_hash"] == config.hash()
    assert (manifest.tile, manifest.scale, manifest.output_tile) == (TILE, 4, TILE * 4)
    assert manifest.one_step == json.loads(json.dumps(one_step_record(config)))
    assert manifest.one_step["graph"] == "unet"
    specs = graph_specs(config, TILE)
    assert list(manifest.graphs) == list(GRAPHS)
    for name, spec in specs.items():
        info = manifest.graphs[name]
        for got, want in ((info.inputs, spec.inputs), (info.outputs, spec.outputs)):
            assert [(t.name, tuple(t.shape), t.dtype, t.layout) for t in got] == \
                [(t.name, t.shape, t.dtype, t.layout) for t in want]
        assert info.params > 0 and info.flops > 0
    assert manifest.graphs["decoder"].outputs[0].shape == [1, 3, TILE * 4, TILE * 4]

    keys = {(a.backend, a.graph, a.precision) for a in manifest.artifacts}
    assert keys == {(b, g, "fp32") for b in EXTENSIONS for g in GRAPHS}
    for a in manifest.artifacts:
        path = tiny_export / a.path
        assert a.path == f"{a.backend}/{a.graph}.{EXTENSIONS[a.backend]}"
        assert a.bytes == path_size(path) > 0
        assert a.sha256 == sha256_path(path)
    tflite_encoder = manifest.artifact("tflite", "encoder")
    assert tflite_encoder.io_layout == {"lr": "NHWC", "latent": "NHWC"}
    assert manifest.artifact("tflite", "unet").io_layout == {"latent": "NHWC",
                                                             "latent_sr": "NHWC"}
    coreml = manifest.artifact("coreml", "unet").details
    assert (coreml["compute_units"], coreml["compute_precision"],
            coreml["minimum_deployment_target"]) == ("ALL", "FLOAT32", "iOS17")
    assert (tiny_export / "coreml" / "unet.mlpackage").is_dir()
    assert leftovers(tiny_export) == []


def test_parity_per_backend(tiny_export, tiny_model):
    checks = parity.check_parity(tiny_model, tiny_export)
    by_key = {(c.backend, c.graph): c for c in checks}
    for backend in ("executorch", "tflite", "onnx"):
        for graph in GRAPHS:
            c = by_key[backend, graph]
            assert c.psnr_db >= 60.0, (backend, graph, c.psnr_db, c.max_abs)
        assert by_key[backend, "end_to_end"].psnr_db >= 50.0
    for graph in GRAPHS:  # Core ML: the spec is validated, prediction is not run
        c = by_key["coreml", graph]
        assert c.ok and c.psnr_db is None and "prediction not run" in c.note
        assert sum(c.details["ops"].values()) > 0
    assert "conv" in by_key["coreml", "decoder"].details["ops"]
    assert all(c.ok for c in checks)


def test_parity_catches_other_weights(tiny_export):
    """The same config with other weights must fail the check: parity compares numbers."""
    other = build_model(preset("tiny"), seed=1).eval()
    checks = {(c.backend, c.graph): c for c in parity.check_parity(other, tiny_export)
              if c.backend == "onnx"}
    assert not checks["onnx", "unet"].ok
    assert checks["onnx", "end_to_end"].psnr_db < 50.0


def test_runner_layouts_batch_release(tiny_export, tiny_model):
    specs = graph_specs(tiny_model.config, TILE)
    lr = specs["encoder"].example_inputs()[0].numpy()
    outs = {}
    for backend in ("executorch", "tflite", "onnx"):
        with open_runner(backend, tiny_export) as runner:
            assert runner.batch_size("encoder") == 1
            outs[backend] = runner.run("encoder", {"lr": lr})["latent"]
            assert "encoder" in runner.loaded
            runner.release("encoder")
            assert "encoder" not in runner.loaded
    assert outs["tflite"].shape == specs["encoder"].outputs[0].shape  # NHWC transposed back
    np.testing.assert_allclose(outs["tflite"], outs["onnx"], atol=1e-4)
    np.testing.assert_allclose(outs["executorch"], outs["onnx"], atol=1e-4)


def test_open_runner_errors_list_what_exists(tiny_export, tmp_path):
    with pytest.raises(F2IError, match="no manifest.json"):
        open_runner("onnx", tmp_path)
    with pytest.raises(F2IError, match="has: coreml/fp32, executorch/fp32, onnx/fp32, "
                                       "tflite/fp32"):
        open_runner("onnx", tiny_export, precision="fp16")
    with pytest.raises(F2IError, match="no complete fp32 qnn export"):
        open_runner("qnn", tiny_export)
    with pytest.raises(F2IError, match="no runtime for coreml"):
        open_runner("coreml", tiny_export)


def test_missing_sdk_fails_first_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)

    def no_model(*args):
        raise AssertionError("the model was loaded before the SDK check")

    monkeypatch.setattr("f2i_mobile.pipeline.load_model", no_model)
    out = tmp_path / "out"
    assert main(["export", "--out", str(out), "--backends", "onnx,qnn"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "QNN_SDK_ROOT" in err and "Qualcomm" in err and err.startswith("f2i-mobile: error:")
    assert not out.exists()
    monkeypatch.setenv("NEURON_SDK_PATH", str(tmp_path / "nowhere"))
    assert main(["export", "--out", str(out), "--backends", "mediatek"]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert not out.exists()


def test_vendor_with_sdk_set_reaches_the_partitioner(tiny_model, tmp_path, monkeypatch):
    """With QNN_SDK_ROOT set (to a folder that is not a real SDK) lowering goes through
    executorch's QNN partitioner and fails there, reported with graph and backend."""
    monkeypatch.setenv("QNN_SDK_ROOT", str(tmp_path))
    with pytest.raises(F2IError, match=r"^conditioner on qnn \(fp32\) failed: "):
        export_model(tiny_model, tmp_path / "out", "qnn", tile=TILE, fail_fast=True)
    manifest = Manifest.load(tmp_path / "out")
    assert manifest.artifacts == [] and leftovers(tmp_path / "out") == []


def test_failing_graph_is_reported_and_others_finish(tiny_export, tiny_checkpoint, tmp_path,
                                                     monkeypatch, capsys):
    import export.onnx

    real = export.onnx.lower

    def lower(module, spec, precision, path):
        if spec.name == "encoder":
            raise RuntimeError("unsupported operator\nsecond line")
        return real(module, spec, precision, path)

    monkeypatch.setattr(export.onnx, "lower", lower)
    out = tmp_path / "out"
    shutil.copytree(tiny_export, out)  # a re-export accumulates into an existing OUT
    (out / "onnx" / "encoder.onnx").unlink()  # ... and forgets entries whose file is gone
    before = Manifest.load(out)
    code = main(["export", "--model", str(tiny_checkpoint), "--out", str(out),
                 "--backends", "onnx", "--tile", str(TILE)])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED encoder on onnx (fp32) failed: RuntimeError: unsupported operator second " \
           "line" in captured.out
    assert "3 artifacts written, 1 failed" in captured.out
    after = Manifest.load(out)
    keys = [(a.backend, a.graph) for a in after.artifacts]
    assert len(keys) == len(set(keys)) == 15
    assert ("onnx", "encoder") not in keys
    assert {a.path for a in after.artifacts if a.backend != "onnx"} == \
        {a.path for a in before.artifacts if a.backend != "onnx"}
    assert not (out / "onnx" / "encoder.onnx").exists() and leftovers(out) == []

    with pytest.raises(F2IError, match="encoder on onnx"):
        export_model(from_pretrained(tiny_checkpoint), tmp_path / "ff", "onnx", tile=TILE,
                     fail_fast=True)
    assert [a.graph for a in Manifest.load(tmp_path / "ff").artifacts] == ["conditioner"]


def test_export_killed_midway_leaves_only_complete_artifacts(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "f2i_mobile.cli", "export", "--model", str(tiny_checkpoint),
         "--out", str(out), "--backends", "onnx,tflite", "--tile", str(TILE)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if len(Manifest.load(out).artifacts) >= 2:
                    break
            except F2IError:
                pass
            time.sleep(0.05)
        time.sleep(0.3)  # into the next graph's lowering
        assert proc.poll() is None, "export finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    manifest = Manifest.load(out)
    listed = {a.path for a in manifest.artifacts}
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("*/*")}
    assert 2 <= len(listed) < 8
    assert on_disk == listed
    assert leftovers(out) == []
    for a in manifest.artifacts:
        assert sha256_path(out / a.path) == a.sha256


def test_psnr_definition():
    ref = np.linspace(0.0, 1.0, 100, dtype=np.float32)
    assert parity.psnr(ref, ref) == math.inf
    assert parity.psnr(ref, ref + 0.01) == pytest.approx(40.0, abs=1e-3)
