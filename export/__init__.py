"""Export: the four graphs of the registry, LoRA merged, lowered per backend.

    executorch.py  torch.export -> XNNPACK partitioner -> .pte
    tflite.py      litert-torch -> .tflite (NHWC image/latent I/O for the delegates)
    coreml.py      coremltools -> .mlpackage (mlprogram, iOS17)
    onnx.py        torch.onnx dynamo exporter -> .onnx, checked with onnx.checker
    vendor.py      Qualcomm QNN / MediaTek / Samsung partitioners when their SDK is present
    pipeline.py    model -> OUT/<backend>/<graph>.<ext> + OUT/manifest.json
    parity.py      every runnable artifact against torch, per graph and end to end

Each backend module has `EXT`, `RUNNABLE` and `lower(module, spec, path, precision) -> Lowered`.
"""
