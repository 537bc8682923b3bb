"""Vendor NPU backends of ExecuTorch: Qualcomm QNN, MediaTek NeuroPilot, Samsung Exynos.

Each needs its vendor's SDK, which cannot be installed from a package registry. `check` runs
before any export work, so `--backends qnn` without the SDK fails at once with one line naming
the SDK and the variable to set. With the SDK present, the graph goes through ExecuTorch's own
partitioner for that NPU and is written as a .pte like the XNNPACK one.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from export.common import Lowered, with_precision
from f2i_mobile.errors import F2IError
from f2i_mobile.graphs import GraphSpec

EXT = "pte"
RUNNABLE = False  # runs on the phone's NPU only


@dataclass(frozen=True)
class VendorSDK:
    backend: str
    sdk: str
    env: str
    module: str  # the ExecuTorch partitioner's module


VENDORS = {
    "qnn": VendorSDK("qnn", "the Qualcomm AI Engine Direct (QNN) SDK", "QNN_SDK_ROOT",
                     "executorch.backends.qualcomm.partition.qnn_partitioner"),
    "mediatek": VendorSDK("mediatek", "MediaTek's NeuroPilot Express SDK", "NEUROPILOT_SDK_ROOT",
                          "executorch.backends.mediatek"),
    "samsung": VendorSDK("samsung", "Samsung's Exynos AI LiteCore", "EXYNOS_AI_LITECORE_ROOT",
                         "executorch.backends.samsung.partition.enn_partitioner"),
}


def check(backend: str) -> VendorSDK:
    v = VENDORS[backend]
    root = os.environ.get(v.env)
    if not root:
        raise F2IError(f"--backends {backend} needs {v.sdk}: set {v.env} to its install folder")
    if not Path(root).is_dir():
        raise F2IError(f"--backends {backend}: {v.env}={root} is not a folder ({v.sdk})")
    try:
        importlib.import_module(v.module)
    except ImportError as exc:
        raise F2IError(f"--backends {backend}: {v.env} is set but ExecuTorch's {backend} "
                       f"backend does not import ({exc}); build ExecuTorch with it") from None
    return v


def _partitioner(backend: str):
    soc = os.environ.get("F2I_QNN_SOC", "SM8650")
    if backend == "qnn":
        from executorch.backends.qualcomm.partition.qnn_partitioner import QnnPartitioner
        from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
        from executorch.backends.qualcomm.utils.utils import (
            generate_htp_compiler_spec, generate_qnn_executorch_compiler_spec)

        specs = generate_qnn_executorch_compiler_spec(
            soc_model=getattr(QcomChipset, soc),
            backend_options=generate_htp_compiler_spec(use_fp16=True))
        return QnnPartitioner(specs), {"soc": soc}
    if backend == "mediatek":
        from executorch.backends.mediatek import NeuropilotPartitioner

        return NeuropilotPartitioner([]), {}
    from executorch.backends.samsung.partition.enn_partitioner import EnnPartitioner

    return EnnPartitioner([]), {}


def lower_for(backend: str):
    def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
        from export.executorch import delegated_calls, to_program

        partitioner, extra = _partitioner(backend)
        buffer, edge = to_program(with_precision(module, precision), spec, [partitioner])
        path.write_bytes(buffer)
        return Lowered(details={"delegate": backend, "delegated_calls": delegated_calls(edge),
                                **extra})
    return lower
