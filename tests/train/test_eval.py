"""`f2i-mobile eval` and the fidelity gate: bicubic, the model and the model with the wavelet
colour fix in one run, with the colour cast next to PSNR/SSIM; a gate that fails a model below
bicubic or with a cast; the bundled model measured against it (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from f2i_mobile.cli import main
from f2i_mobile.core.samples import EVAL, HELD_OUT, bundled_images
from f2i_mobile.evaluate import (
    MAX_CAST,
    ImageScore,
    Scores,
    eval_images,
    evaluate,
    fidelity_gate,
    gate_failures,
    means,
)
from f2i_mobile.models import load_model

METHODS = ("bicubic", "model", "model_wavelet")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Small HR images (the fast tier runs the model on these, not on the 512-pixel set)."""
    folder = tmp_path_factory.mktemp("hr")
    for image in bundled_images(("chelsea", "coffee", "patches-0")):
        Image.fromarray(np.round(image.pixels[:96, :128] * 255).astype(np.uint8)).save(
            folder / f"{image.name}.png")
    return folder


def test_eval_scores_the_bundled_evaluation_set_by_default():
    assert [image.name for image in eval_images(None)] == list(EVAL)


def test_eval_reports_bicubic_the_model_and_the_colour_fixed_model(tiny_checkpoint, photo_folder,
                                                                   capsys):
    assert main(["eval", "--model", str(tiny_checkpoint), "--data", str(photo_folder),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [x["name"] for x in result["images"]] == ["chelsea.png", "coffee.png", "patches-0.png"]
    for x in result["images"]:
        assert x["hr_size"] == 96
        assert 15 < x["bicubic"]["psnr"] < 45 and 0 < x["bicubic"]["ssim"] <= 1
        assert x["bicubic"]["cast"] < MAX_CAST  # bicubic keeps the colour (clipped overshoot aside)
    for method in METHODS:
        for key in ("psnr", "ssim", "cast"):
            expected = np.mean([x[method][key] for x in result["images"]])
            assert result["mean"][method][key] == pytest.approx(expected)
    # The untrained tiny model: far below bicubic, cast; the wavelet fix takes most cast away.
    mean = result["mean"]
    assert mean["model"]["cast"] > 5 * mean["model_wavelet"]["cast"]
    assert len(result["gate"]["failures"]) == 2 and result["gate"]["max_cast"] == MAX_CAST


def test_eval_prints_the_table(tiny_checkpoint, photo_folder, capsys):
    assert main(["eval", "--model", str(tiny_checkpoint), "--data", str(photo_folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "bicubic" in out[0] and "model + wavelet fix" in out[0]
    assert out[1].split()[:2] == ["image", "HR"] and out[1].count("cast") == 3
    rows = {line.split()[0]: line.split() for line in out[2:6]}
    assert set(rows) == {"chelsea.png", "coffee.png", "patches-0.png", "mean"}
    assert len(rows["coffee.png"]) == 2 + 9 and len(rows["mean"]) == 1 + 9
    assert any(line.startswith("fidelity gate") and "FAIL" in line for line in out)


def _result(model_psnr: float, model_cast: float) -> list[ImageScore]:
    return [ImageScore("x", 64, bicubic=Scores(30.0, 0.8, 0.1), model=Scores(model_psnr, 0.8,
                       model_cast), model_wavelet=Scores(model_psnr, 0.8, 0.2))]


def test_the_gate_fails_a_model_below_bicubic_or_with_a_cast():
    assert gate_failures(_result(30.5, 1.0)) == []
    assert gate_failures(_result(30.0, MAX_CAST)) == []  # equal to bicubic, cast at the limit
    below = gate_failures(_result(29.9, 1.0))
    assert len(below) == 1 and "below bicubic" in below[0]
    cast = gate_failures(_result(31.0, 2.5))
    assert len(cast) == 1 and "colour cast" in cast[0] and "2.50" in cast[0]
    assert len(gate_failures(_result(29.0, 3.0))) == 2
    # The wavelet column does not rescue a cast: the gate reads the model without the fix.
    assert means(_result(31.0, 2.5))["model_wavelet"]["cast"] == pytest.approx(0.2)


def test_the_gate_evaluates_a_model(tiny_model, photo_folder):
    failures = fidelity_gate(tiny_model, eval_images(str(photo_folder)))
    assert len(failures) == 2  # the untrained tiny model: below bicubic and cast


@pytest.mark.slow
def test_the_gate_fails_a_model_whose_decoder_is_tinted():
    # three of the evaluation set (one held-out photo, two generated): the gate's arithmetic is
    # the same on any number, and each image costs two full-size runs of the bundled model
    images = [im for im in eval_images(None) if im.name in ("motorcycle_left", "patches-0",
                                                            "scene-0")]
    assert len(images) == 3
    model = load_model(None).eval()
    plain = evaluate(model, images)
    tint = 0.2  # on green, in the decoder's [-1, 1] output
    with torch.no_grad():
        model.vae.decoder.conv_out.bias[1] += tint
    tinted = evaluate(model, images)
    failures = gate_failures(tinted)
    assert any("colour cast" in f for f in failures), failures
    # The tint moves green's mean by delta = 25.5 levels (less where the output clips). The
    # model's own green error m is at most its untinted cast, and |m + delta| at most its tinted
    # cast, so tinted >= delta - untinted, whatever the model's own cast (0.8: photos clip
    # little).
    delta = tint / 2 * 255
    for t, p in zip(tinted, plain):
        if t.name in HELD_OUT:
            assert t.model.cast >= 0.8 * delta - p.model.cast, (t.name, t.model, p.model)
    # The wavelet fix takes the tint away again: it is a low-frequency change.
    assert means(tinted)["model_wavelet"]["cast"] < 1.0
