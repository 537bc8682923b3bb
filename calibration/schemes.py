"""Quantization schemes, named as the field names them, and which backend runs which.

    w8a8      int8 weights (per channel), int8 activations (static, calibrated)
    w8a16     int8 weights, 16-bit activations (int16 on TFLite, uint16 on QNN, float16 on
              Core ML)
    w4a16     4-bit weights (per block), 16-bit float activations: no backend here (Core ML's
              needs iOS18, the export targets iOS17; XNNPACK's is for LLM linears)
    palette6  6-bit palettized weights (k-means look-up table per tensor), fp16 activations
    palette4  4-bit palettized weights, fp16 activations

Which backend takes which scheme is the contract's (`Backend.schemes`); this module says with
which tool (`TOOLS`), and why a missing pair is missing. An unsupported pair is one line that
names what the backend does support. fp16 is the float export's `--precision fp16`, not a
calibrated scheme.
"""

from __future__ import annotations

from f2i_mobile.core.contract import BACKENDS, DEFAULT_BACKENDS, FLOAT_PRECISIONS, SCHEMES
from f2i_mobile.core.errors import F2IError

# (backend, scheme) -> the tool that produces it. Why the missing pairs are missing:
# - ExecuTorch/XNNPACK has no int16-activation kernels (its quantizer offers 8-bit activations
#   only) and no palettized weights; w4a16 is torchao's weight-only 4-bit (LLM linears), not
#   convolutions; fp16 is the export layer's --precision fp16.
# - TFLite: litert-torch's PT2E quantizer gives int8 and int8 x int16 ("16x8") full-integer
#   models; palettization is a Core ML format.
# - Core ML compresses weights only (activations stay fp16 on the Neural Engine), so w8a8 has no
#   Core ML form here (its activation quantization needs calibration on macOS).
# - ONNX: QDQ int8 through onnxruntime.quantization; 16-bit activations are not run by the
#   mobile execution providers (NNAPI, XNNPACK, QNN HTP takes its own format).
# - qnn (ExecuTorch on Qualcomm's HTP): executorch's QnnQuantizer, int8 weights with uint8 or
#   uint16 activations, the only ExecuTorch path to 16-bit activations. Its 4-bit weights come
#   with integer activations (not w4a16's float ones); palettization is a Core ML format. The
#   .pte needs the QNN SDK (quantize.py checks it first); quant_qnn.py says why.
TOOLS: dict[tuple[str, str], str] = {
    ("executorch", "w8a8"): "PT2E XNNPACKQuantizer on convolutions and linears "
                            "(per-channel symmetric, static activations)",
    ("tflite", "w8a8"): "ai_edge_quantizer static int8 (normalization factors and the "
                        "decoder's full-resolution tail float)",
    ("tflite", "w8a16"): "ai_edge_quantizer 16x8: int8 weights, int16 activations "
                         "(GroupNorm, ADD, RSQRT, MEAN float)",
    ("coreml", "w8a16"): "coremltools.optimize.coreml linear int8 weights, fp16 compute",
    ("coreml", "palette6"): "coremltools.optimize.coreml k-means palettization, 6 bits",
    ("coreml", "palette4"): "coremltools.optimize.coreml k-means palettization, 4 bits",
    ("onnx", "w8a8"): "onnxruntime.quantization.quantize_static, QDQ int8",
    ("qnn", "w8a8"): "PT2E QnnQuantizer 8a8w (per-channel int8 weights, static uint8 "
                     "activations), QNN HTP",
    ("qnn", "w8a16"): "PT2E QnnQuantizer 16a8w (per-channel int8 weights, static uint16 "
                      "activations), QNN HTP",
}
# Why a pair is missing, where the backend's general reason below is not the whole story.
PAIR_WHY = {
    ("executorch", "w8a16"): "XNNPACK has no 16-bit activation kernels; ExecuTorch's 16-bit "
                             "activations are Qualcomm's HTP, --backends qnn",
    ("coreml", "w4a16"): "Core ML's int4 weights (per block) need an iOS18 deployment target and "
                         "the export targets iOS17",
}
# Why a backend has no other schemes, said with the refusal.
WHY = {
    "executorch": "XNNPACK has int8 weights and activations only (no 16-bit activation kernels, "
                  "no palettized or 4-bit conv weights)",
    "tflite": "TFLite integer kernels take int8 weights with int8 or int16 activations",
    "coreml": "Core ML compresses weights only; activations run in float16",
    "onnx": "ONNX Runtime's mobile execution providers run int8 QDQ only",
    "qnn": "QnnQuantizer gives the HTP int8 weights with 8- or 16-bit integer activations; its "
           "4-bit weights take integer activations and palettization is Core ML's",
}


def supported(backend: str) -> list[str]:
    return [str(s) for s in BACKENDS[backend].schemes]


def supported_backends(scheme: str) -> list[str]:
    """The default backends that run `scheme` (vendor NPUs only when named, as in the float
    export), or one F2IError line saying why none does."""
    names = [b for b in DEFAULT_BACKENDS if scheme in BACKENDS[b].schemes]
    if not names:
        check_scheme(scheme, DEFAULT_BACKENDS[0])  # says why in one line
    return names


def check_scheme(scheme: str, backend: str) -> str:
    """The tool for (scheme, backend), or one F2IError line saying what is supported instead."""
    if scheme in FLOAT_PRECISIONS:
        raise F2IError(f"--quant {scheme}: not a calibrated scheme; export with --precision "
                       f"{scheme} instead")
    if scheme not in SCHEMES:
        raise F2IError(f"--quant {scheme}: unknown scheme; choose one of "
                       f"{', '.join(SCHEMES)}")
    if backend not in BACKENDS:
        raise F2IError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if scheme not in BACKENDS[backend].schemes:
        why = PAIR_WHY.get((backend, scheme), WHY.get(backend, "it takes no calibrated scheme"))
        have = ", ".join(supported(backend)) or "none"
        raise F2IError(f"--quant {scheme} is not supported on {backend} ({why}); "
                       f"{backend} supports {have}")
    return TOOLS[backend, scheme]
