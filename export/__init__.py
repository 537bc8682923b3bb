"""Export: the four graphs of an F2IDiff-SR model, lowered to phone runtimes.

    export_model(model, out, backends, tile, precision)  ->  OUT/<backend>/<graph>.<ext>
                                                             OUT/manifest.json

One small module per backend (`executorch`, `tflite`, `coreml`, `onnx`, and the vendor NPU
backends in `vendor`), each with `EXTENSION` and `lower(module, spec, precision, path)`;
`pipeline` runs them over the graph registry and writes the manifest; `parity` checks every
artifact that has a runtime here against torch. Importing this package imports no torch.
"""

from __future__ import annotations

PORTABLE = ("executorch", "tflite", "coreml", "onnx")
VENDOR = ("qnn", "mediatek", "samsung")
BACKENDS = PORTABLE + VENDOR
PRECISIONS = ("fp32", "fp16")


def backend_module(name: str):
    """The lowering module of a backend (imported on demand: each pulls in its toolchain)."""
    import importlib

    from f2i_mobile.errors import F2IError

    if name not in BACKENDS:
        raise F2IError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name in VENDOR:
        from export import vendor

        return vendor.backend(name)
    return importlib.import_module(f"export.{name}")
