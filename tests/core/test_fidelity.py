"""The one record every fidelity gate reports, and its scores."""

from __future__ import annotations

import json
import math

import numpy as np

from f2i_mobile.core.fidelity import (
    END_TO_END,
    Check,
    FidelityReport,
    Status,
    color_cast,
    image_scores,
    output_scores,
    psnr,
    skipped,
)


def test_scores_on_y_and_over_the_tensor_range():
    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 32, 32)).astype(np.float32)
    assert image_scores(img, img, 4) == (math.inf, 1.0)
    noisy = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)
    p, s = output_scores("sr", noisy, img, 4)
    assert 25 < p < 45 and 0.5 < s < 1
    latent = rng.normal(0, 3, (1, 4, 8, 8))
    p, s = output_scores("latent", latent + 0.01, latent, 0)
    assert s is None and p == psnr(latent + 0.01, latent, float(latent.max() - latent.min()))
    tinted = img[0].transpose(1, 2, 0).copy()
    tinted[..., 1] += 10 / 255
    assert color_cast(tinted, img[0].transpose(1, 2, 0)) == np.float32(10.0) or \
        abs(color_cast(tinted, img[0].transpose(1, 2, 0)) - 10) < 1e-3


def test_report_gates_only_what_it_ran():
    checks = [Check("onnx", "fp32", "unet", 70.0, min_psnr=60.0).judge(),
              Check("onnx", "fp32", END_TO_END, 40.0, min_psnr=50.0).judge(),
              Check("tflite", "w8a8", "decoder", 41.0),  # reported, not gated
              Check("onnx", "fp32", "decoder", math.inf, min_psnr=60.0).judge(),
              skipped("qnn", "w8a8", "all", "runs on the phone only")]
    report = FidelityReport("parity", checks)
    assert [c.status for c in checks] == [Status.PASS, Status.FAIL, Status.INFO, Status.PASS,
                                          Status.SKIP]
    assert not report.ok and report.failures == ["onnx fp32 end_to_end: PSNR 40.00 dB < 50 dB"]
    data = json.loads(report.to_json())  # strict JSON: inf as null
    assert data["checks"][3]["psnr"] is None and data["checks"][4]["status"] == "skipped"
    table = report.table()
    assert "qnn w8a8: runs on the phone only" in table and "FAILED: onnx fp32" in table
    assert FidelityReport("parity", checks[:1] + checks[2:]).ok
