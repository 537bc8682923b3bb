"""Vendor NPU backends of ExecuTorch: Qualcomm QNN, MediaTek NeuroPilot, Samsung Exynos.

Each needs its vendor's SDK, which cannot be installed from a package registry. `check` runs
before any export work, so `--backends qnn` without the SDK fails at once with one line naming
the SDK and the variable to set. With the SDK present, the graph goes through ExecuTorch's own
partitioner for that NPU and is written as a .pte like the XNNPACK one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from f2i_mobile.core.contract import BACKENDS, GraphSpec
from f2i_mobile.core.errors import F2IError

if TYPE_CHECKING:  # `check` runs before any heavy import: torch and the models come with `lower`
    from torch import nn

    from f2i_mobile.export.common import Lowered


@dataclass(frozen=True)
class VendorSDK:
    backend: str
    module: str  # the ExecuTorch partitioner's module
    soc: str  # target chip, overridden by F2I_<BACKEND>_SOC (each NPU compiles for one chip)

    def target(self) -> str:
        return os.environ.get(f"F2I_{self.backend.upper()}_SOC", self.soc)


VENDORS = {
    "qnn": VendorSDK("qnn", "executorch.backends.qualcomm.partition.qnn_partitioner", "SM8650"),
    "mediatek": VendorSDK("mediatek", "executorch.backends.mediatek", "mt6989"),
    "samsung": VendorSDK("samsung", "executorch.backends.samsung.partition.enn_partitioner",
                         "E9955"),
}


def check(backend: str) -> VendorSDK:
    """The vendor's SDK (the contract names its variable) and ExecuTorch's backend for it, or
    one line saying which is missing."""
    v, info = VENDORS[backend], BACKENDS[backend]
    root = os.environ.get(info.sdk_env)
    if not root:
        raise F2IError(f"--backends {backend} needs {info.sdk}: set {info.sdk_env} to its "
                       f"install folder")
    if not Path(root).is_dir():
        raise F2IError(f"--backends {backend}: {info.sdk_env}={root} is not a folder "
                       f"({info.sdk})")
    try:
        importlib.import_module(v.module)
    except ImportError as exc:
        raise F2IError(f"--backends {backend}: {info.sdk_env} is set but ExecuTorch's {backend} "
                       f"backend does not import ({exc}); build ExecuTorch with it") from None
    return v


@contextmanager
def no_sdk_download() -> Iterator[None]:
    """ExecuTorch's Qualcomm helpers download a QNN SDK from the network on first use unless
    QNN_SDK_ROOT is set (an empty value means "the caller owns the SDK"). Nothing may be fetched
    at run time here: the SDK is the user's, and `check` asks for it."""
    unset = "QNN_SDK_ROOT" not in os.environ
    if unset:
        os.environ["QNN_SDK_ROOT"] = ""
    try:
        yield
    finally:
        if unset:
            os.environ.pop("QNN_SDK_ROOT", None)


def compile_specs(backend: str) -> list:
    """The CompileSpecs each vendor's ExecuTorch backend requires: the target chip (and, for QNN,
    HTP in fp16: the HTP runs float graphs in fp16 only). Built from ExecuTorch's own schema
    helpers, which import without the SDK."""
    soc = VENDORS[backend].target()
    if backend == "qnn":
        from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
        from executorch.backends.qualcomm.utils.utils import (
            generate_htp_compiler_spec,
            generate_qnn_executorch_compiler_spec,
        )

        if soc not in QcomChipset.__members__:
            raise F2IError(f"F2I_QNN_SOC={soc} is not a Qualcomm chip ExecuTorch knows "
                           f"(e.g. SM8550, SM8650, SM8750)")
        with no_sdk_download():
            return generate_qnn_executorch_compiler_spec(
                soc_model=QcomChipset[soc],
                backend_options=generate_htp_compiler_spec(use_fp16=True))
    if backend == "mediatek":
        from executorch.exir.backend.compile_spec_schema import CompileSpec

        return [CompileSpec("platform-config", soc.encode())]  # NeuropilotBackend requires it
    from executorch.backends.samsung.serialization.compile_options import (
        SamsungChipset,
        gen_samsung_backend_compile_spec,
    )

    if soc.upper() not in SamsungChipset.__members__:
        raise F2IError(f"F2I_SAMSUNG_SOC={soc} is not an Exynos chip ExecuTorch knows "
                       f"({', '.join(SamsungChipset.__members__)})")
    return [gen_samsung_backend_compile_spec(soc)]


def partitioner(backend: str):
    specs = compile_specs(backend)
    if backend == "qnn":
        from executorch.backends.qualcomm.partition.qnn_partitioner import QnnPartitioner

        return QnnPartitioner(specs)
    if backend == "mediatek":
        from executorch.backends.mediatek import NeuropilotPartitioner

        return NeuropilotPartitioner(specs)
    from executorch.backends.samsung.partition.enn_partitioner import EnnPartitioner

    return EnnPartitioner(specs)


def lower_for(backend: str):
    def lower(module: nn.Module, spec: GraphSpec, path: Path, precision: str) -> Lowered:
        from f2i_mobile.export.common import Lowered, with_precision
        from f2i_mobile.export.executorch import delegated_calls, to_program

        buffer, edge = to_program(with_precision(module, precision), spec,
                                   [partitioner(backend)])
        path.write_bytes(buffer)
        return Lowered(details={"delegate": backend, "delegated_calls": delegated_calls(edge),
                                "soc": VENDORS[backend].target()})
    return lower
