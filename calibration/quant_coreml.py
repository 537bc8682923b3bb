"""Core ML weight compression through coremltools.optimize, and its fidelity measured in torch.

Core ML keeps activations in float16 on the Neural Engine and compresses weights only:
linear int8 per channel (w8a16) or a k-means look-up table of 64 or 16 values per tensor
(palette6, palette4); linear int4 in blocks (w4a16) needs iOS18 and the export targets iOS17.
`compress` applies these to the float .mlpackage with `coremltools.optimize.coreml`.

Core ML cannot predict outside macOS, so the compressed package is not run here. Its fidelity is
measured on the torch graph with the same compression applied to the torch weights by
`coremltools.optimize.torch` (same bits, granularity and k-means), in float32: the float16
activations of the device are not simulated, and that is said in the report.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from f2i_mobile.core.contract import GraphSpec
from f2i_mobile.core.errors import F2IError
from f2i_mobile.export import coreml as export_coreml


def convert_float(module: nn.Module, spec: GraphSpec, path: Path):
    """The float16-compute mlprogram of the export layer (export/coreml.py), loaded for
    compression (its spec only: nothing is compiled or run)."""
    import coremltools as ct

    if not path.exists():  # converted for an earlier scheme of the same quantize call
        export_coreml.lower(module, spec, path, "fp16")
    return ct.models.MLModel(str(path), skip_model_load=True)


def _coreml_config(scheme: str):
    import coremltools.optimize.coreml as cto

    if scheme == "w8a16":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                         granularity="per_channel")
    elif scheme.startswith("palette"):
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=int(scheme[7:]),
                                    granularity="per_tensor")
    else:
        raise F2IError(f"--quant {scheme}: Core ML here compresses weights as w8a16, palette6 "
                       "or palette4")
    return cto.OptimizationConfig(global_config=op)


def compress(mlmodel, scheme: str, path: Path) -> dict:
    """Compress the float Core ML model's weights and save the .mlpackage at `path` (in the
    publishing work folder: export.pipeline.publish moves it into place)."""
    import coremltools.optimize.coreml as cto

    config = _coreml_config(scheme)
    if scheme.startswith("palette"):
        compressed = cto.palettize_weights(mlmodel, config)
    else:
        compressed = cto.linear_quantize_weights(mlmodel, config)
    compressed.save(str(path))
    return {"tool": "coremltools.optimize.coreml", "compute_precision": "float16",
            "prediction": "not run: Core ML predicts only on macOS; fidelity measured in torch "
                          "with the same compressed weights (float32 activations)"}


def compress_torch(module: nn.Module, scheme: str) -> nn.Module:
    """A copy of `module` whose conv and linear weights carry the scheme's compression."""
    module = copy.deepcopy(module).eval()
    if scheme.startswith("palette"):
        from coremltools.optimize.torch.palettization import (
            PostTrainingPalettizer,
            PostTrainingPalettizerConfig,
        )

        config = PostTrainingPalettizerConfig.from_dict(
            {"global_config": {"n_bits": int(scheme[7:]), "granularity": "per_tensor"}})
        return PostTrainingPalettizer(module, config).compress()
    from coremltools.optimize.torch.quantization import (
        PostTrainingQuantizer,
        PostTrainingQuantizerConfig,
    )

    global_config = {"weight_dtype": "int8", "granularity": "per_channel"}
    return PostTrainingQuantizer(
        module, PostTrainingQuantizerConfig.from_dict({"global_config": global_config})
    ).compress()
