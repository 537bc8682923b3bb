"""Export: the model's graphs, LoRA merged, lowered per backend of the contract.

    executorch.py  torch.export -> XNNPACK partitioner -> .pte
    tflite.py      litert-torch -> .tflite (NHWC image/latent I/O for the delegates)
    coreml.py      coremltools -> .mlpackage (mlprogram, iOS17)
    onnx.py        torch.onnx dynamo exporter -> .onnx, checked with onnx.checker
    vendor.py      Qualcomm QNN / MediaTek / Samsung partitioners when their SDK is present
    lowering.py    backend name -> its `lower`, and the vendor SDK check
    pipeline.py    model -> OUT/<backend>/<graph>.<ext> + OUT/manifest.json
    parity.py      every float artifact against torch, per graph and end to end
    cache.py       `upscale`'s default path: the ONNX graphs built once into the user's cache

Each backend module has `lower(module, spec, path, precision) -> Lowered`; what a backend is
(extension, where it runs, its schemes) is the contract's (`f2i_mobile.core.contract`).
Installed as `f2i_mobile.export`.
"""
