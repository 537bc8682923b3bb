"""The deployment contract: the graphs a phone runs, the tensors between them, the backends that
lower and run them, and the precisions they come in. Torch-free: export, calibration, the tiler,
the runners and the bench all read this module (and the manifest built from it).

    graph        inputs                                 outputs
    conditioner  lr [B,3,t,t] in [0,1]                  tokens [B,N,D]
    statistics   lr, tokens                             encoder_stats, unet_stats, decoder_stats
    encoder      lr, encoder_stats [B,S_e]              latent [B,C,h,w]
    unet         latent, tokens, unet_stats [B,S_u]     latent_sr [B,C,h,w]
    decoder      latent_sr, decoder_stats [B,S_d]       sr [B,3,s*t,s*t] in [0,1]

That is the `osediff` method's wiring. A model trained with the `faithdiff` method (`METHODS`)
keeps the five graphs and adds one tensor between two of them: `encoder` also gives
`lq_features` [B,F,h,w] (its LQ encoder's penultimate features, before the latent projection),
and `unet` takes them after `latent`; its alignment module lives inside the `unet` graph, where
its output is added to the U-Net's first convolution. `graph_io(method)` names each graph's
inputs and outputs; readers take a graph's signature from its `GraphSpec` (or the manifest),
never from this table.

Graphs are wired by tensor name: a graph's inputs are the outputs of earlier graphs (or `lr`).
For a photo of many tiles, `conditioner` and `statistics` run once, on the whole photo resized
to one tile (`PHOTO_GRAPHS`), and every tile takes their outputs; on a single tile the same
chain is the one-tile photo. `GraphSpec`s with shapes come from the model's config
(`f2i_mobile.models.graphs`) or from an export's manifest; this module owns their form, the
order and the names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np

from f2i_mobile.core.errors import F2IError

GRAPHS = ("conditioner", "statistics", "encoder", "unet", "decoder")  # pipeline order
# What the outputs get after the graphs: their colour aligned to the LR photo's (bicubic-resized)
# by swapping low frequencies, as OSEDiff's inference does; one-step SR drifts in colour.
DEFAULT_COLOR_FIX = "wavelet"
# Run once per photo, on the whole photo resized to one tile (the conditioner in the default
# `image` conditioning; with `tile` conditioning it runs per tile).
PHOTO_GRAPHS = ("conditioner", "statistics")
SOURCE = "lr"  # the one tensor no graph produces: the LR tile
RESULT = "sr"  # the SR tile
# How the SR stage was trained, which decides the graphs' signatures: OSEDiff (LoRA on the VAE
# encoder and U-Net) or FaithDiff (an LQ encoder's features through an alignment module into a
# fine-tuned U-Net).
METHODS = ("osediff", "faithdiff")
DEFAULT_METHOD = "osediff"
FEATURES = "lq_features"  # faithdiff's extra tensor, from `encoder` to `unet`


def graph_io(method: str = DEFAULT_METHOD) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each graph's input and output tensor names, in order, for a training method."""
    if method not in METHODS:
        raise F2IError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    extra = (FEATURES,) if method == "faithdiff" else ()
    return {
        "conditioner": ((SOURCE,), ("tokens",)),
        "statistics": ((SOURCE, "tokens"), ("encoder_stats", "unet_stats", "decoder_stats")),
        "encoder": ((SOURCE, "encoder_stats"), ("latent", *extra)),
        "unet": (("latent", *extra, "tokens", "unet_stats"), ("latent_sr",)),
        "decoder": (("latent_sr", "decoder_stats"), (RESULT,)),
    }


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    layout: str  # NCHW for images and latents, NLC for token sequences, NC for statistics
    description: str = ""
    dtype: str = "float32"
    values: str = "normal"  # unit (images in [0, 1]), normal, positive (statistics)

    def example(self, rng: np.random.Generator) -> np.ndarray:
        """A random tensor in the range the graph sees in the pipeline: images uniform in
        [0, 1], latents and tokens standard normal, statistics positive (variances must be)."""
        if self.values == "unit":
            x = rng.random(self.shape, dtype=np.float32)
        elif self.values == "positive":
            x = 0.25 + np.abs(rng.standard_normal(self.shape, dtype=np.float32))
        else:
            x = rng.standard_normal(self.shape, dtype=np.float32)
        return x.astype(self.dtype)

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    params: int = 0  # LoRA merged
    flops: int = 0  # per call at the spec's tile and batch

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def batch(self) -> int:
        return self.inputs[0].shape[0]

    def examples(self, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {t.name: t.example(rng) for t in self.inputs}

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description,
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
                "params": self.params, "flops": self.flops}


@dataclass(frozen=True)
class NormSlot:
    """Where one GroupNorm's statistics sit in its graph's packed statistics tensor."""

    name: str  # the GroupNorm's module path inside its graph
    groups: int
    channels: int
    eps: float
    offset: int  # means at [offset, offset + groups), variances right after


class Precision(StrEnum):
    """What an artifact's weights and activations are. The float ones are exports
    (`--precision`); the others come out of calibrated quantization (`--quant`)."""

    FP32 = "fp32"
    FP16 = "fp16"
    W8A8 = "w8a8"  # int8 weights per channel, static int8 activations
    W8A8_NNCF = "w8a8-nncf"  # w8a8 with the ranges found by nncf (ExecuTorch)
    W8A16 = "w8a16"  # int8 weights, 16-bit activations
    W4A16 = "w4a16"  # 4-bit weights per block, 16-bit float activations
    PALETTE6 = "palette6"  # 6-bit k-means palettized weights, fp16 activations
    PALETTE4 = "palette4"
    MIXED = "mixed"  # w8a8 with the most sensitive layers left in float

    @property
    def is_float(self) -> bool:
        return self in FLOAT_PRECISIONS


FLOAT_PRECISIONS = (Precision.FP32, Precision.FP16)
# The calibrated schemes `--quant` takes (fp16 is the float export's `--precision fp16`).
SCHEMES = (Precision.W8A8, Precision.W8A16, Precision.W4A16, Precision.PALETTE6,
           Precision.PALETTE4)


def precision(name: str) -> Precision:
    try:
        return Precision(name)
    except ValueError:
        raise F2IError(f"unknown precision {name!r}; one of "
                       f"{', '.join(p.value for p in Precision)}") from None


@dataclass(frozen=True)
class Backend:
    """One lowering target and what runs it.

    `runtime` is the Python package that runs its artifacts on this machine (None: they run
    only where `runs_on` says); `sdk_env` names the variable that must point at a vendor SDK
    before anything is lowered; `schemes` are the calibrated precisions it takes."""

    name: str
    ext: str
    runs_on: str
    runtime: str | None = None
    schemes: tuple[Precision, ...] = ()
    sdk_env: str | None = None
    sdk: str = ""
    default: bool = True  # exported when --backends is not given
    phone_runner: str | None = None  # the native tool that times it on an Android phone
    layout: str = "NCHW"  # the artifact's image/latent layout (runners transpose to NCHW)

    @property
    def runs_here(self) -> bool:
        return self.runtime is not None


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("executorch", "pte", "CPU (XNNPACK)", runtime="executorch",
            schemes=(Precision.W8A8,), phone_runner="executor_runner"),
    Backend("tflite", "tflite", "CPU, GPU and NPU delegates", runtime="ai_edge_litert",
            schemes=(Precision.W8A8, Precision.W8A16), phone_runner="benchmark_model",
            layout="NHWC"),
    Backend("coreml", "mlpackage", "Apple devices (Core ML predicts on macOS only)",
            schemes=(Precision.W8A16, Precision.PALETTE6, Precision.PALETTE4)),
    Backend("onnx", "onnx", "CPU (ONNX Runtime)", runtime="onnxruntime",
            schemes=(Precision.W8A8,)),
    Backend("qnn", "pte", "Qualcomm HTP (the phone's NPU)", schemes=(Precision.W8A8,
            Precision.W8A16), sdk_env="QNN_SDK_ROOT",
            sdk="the Qualcomm AI Engine Direct (QNN) SDK", default=False),
    Backend("mediatek", "pte", "MediaTek APU (the phone's NPU)", sdk_env="NEUROPILOT_SDK_ROOT",
            sdk="MediaTek's NeuroPilot Express SDK", default=False),
    Backend("samsung", "pte", "Samsung Exynos NPU", sdk_env="EXYNOS_AI_LITECORE_ROOT",
            sdk="Samsung's Exynos AI LiteCore", default=False),
)}
DEFAULT_BACKENDS = tuple(name for name, b in BACKENDS.items() if b.default)
# What can run the graphs of `upscale`: the model itself in torch, or an export's artifacts.
TORCH = "torch"
RUNNABLE = (TORCH, *(name for name, b in BACKENDS.items() if b.runs_here))
# `upscale`'s default backend: the fastest faithful runtime this machine has, the model's graphs
# built for it once (`f2i_mobile.export.cache.resolve` decides which).
AUTO = "auto"
# The LR tile the default path runs (the model's own tile when larger): a multiple of 32, so of
# any model's LR multiple; the fastest for the bundled model through ONNX Runtime on a 2-core
# CPU of the tiles measured (benchmarks/onnx_tiles.py).
AUTO_TILE = 224


def backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise F2IError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None


def parse_backends(text: str | list[str] | None, default: tuple[str, ...] = DEFAULT_BACKENDS,
                   ) -> list[Backend]:
    """`a,b,c` (or a list) -> backends, in order, without repeats; `default` for None."""
    if text is None:
        names = list(default)
    elif isinstance(text, str):
        names = [n.strip() for n in text.split(",") if n.strip()]
    else:
        names = list(text)
    if not names:
        raise F2IError(f"no backend named; choose from {', '.join(BACKENDS)}")
    return [backend(n) for n in dict.fromkeys(names)]


def artifact_name(graph: str, precision: str, ext: str) -> str:
    """`unet.pte` for fp32, `unet.w8a8.pte` otherwise."""
    return f"{graph}.{ext}" if precision == Precision.FP32 else f"{graph}.{precision}.{ext}"

