"""The deployment contract and the typed manifest: what every reader relies on."""

from __future__ import annotations

import json

import pytest
from conftest import make_manifest

from f2i_mobile.core.contract import (
    BACKENDS,
    DEFAULT_BACKENDS,
    GRAPHS,
    RUNNABLE,
    Precision,
    artifact_name,
    parse_backends,
)
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.manifest import FORMAT, Manifest
from f2i_mobile.core.planner import ReceptiveField


def test_backends_and_precisions_are_one_registry():
    assert DEFAULT_BACKENDS == ("executorch", "tflite", "coreml", "onnx")
    assert GRAPHS == ("conditioner", "statistics", "encoder", "unet", "decoder")
    assert RUNNABLE == ("torch", "executorch", "tflite", "onnx")
    assert all(BACKENDS[b].sdk_env for b in ("qnn", "mediatek", "samsung"))
    assert {s for b in BACKENDS.values() for s in b.schemes} <= set(Precision)
    assert artifact_name("unet", "fp32", "pte") == "unet.pte"
    assert artifact_name("unet", Precision.W8A16, "tflite") == "unet.w8a16.tflite"
    assert [b.name for b in parse_backends(" onnx,tflite ,onnx")] == ["onnx", "tflite"]
    with pytest.raises(F2IError, match="unknown backend 'tensorrt'"):
        parse_backends("onnx,tensorrt")


def test_manifest_round_trip_is_typed(tmp_path):
    manifest = make_manifest(receptive_field=ReceptiveField(7, {"decoder": 3}, 64, False))
    manifest.save(tmp_path)
    back = Manifest.load(tmp_path)
    assert back == manifest
    assert back.tiling.receptive_field.chain == 7 and back.graphs["unet"].input_names == (
        "latent", "tokens", "unet_stats")
    assert list(back.graphs) == list(GRAPHS)


@pytest.mark.parametrize("damage,message", [
    (lambda d: d.update(format="f2i-mobile-manifest/1"), "schema 'f2i-mobile-manifest/1'"),
    (lambda d: d.pop("format"), "schema None"),
    (lambda d: d["tiling"].pop("lr_multiple"), "missing field(s) lr_multiple"),
    (lambda d: d["graphs"]["unet"].update(extra=1), "unknown field(s) extra"),
    (lambda d: d.update(artifacts={}), "expected list"),
    (lambda d: d["graphs"].pop("decoder"), "graphs decoder missing"),
])
def test_a_manifest_readers_cannot_trust_is_one_line(tmp_path, damage, message):
    make_manifest().save(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    damage(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(F2IError) as err:
        Manifest.load(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert FORMAT == "f2i-mobile-manifest/4"
