"""Vendor NPU backends through ExecuTorch: Qualcomm QNN, MediaTek NeuroPilot, Samsung Exynos.

Their partitioners ship in the executorch wheel, but lowering calls into the vendor's SDK, which is
a separate download these machines cannot reach. Each backend names the environment variable that
points at its SDK; `require_sdk` checks it before any other work, so a missing SDK costs one line
and no time. With the SDK present, the graph goes torch.export -> the vendor partitioner -> .pte.
The target SoC is a constant here (the current flagship of each vendor); change it per device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from f2i_mobile.errors import F2IError


@dataclass(frozen=True)
class VendorBackend:
    name: str
    sdk: str
    env_var: str
    soc: str

    def require_sdk(self) -> Path:
        root = os.environ.get(self.env_var)
        if not root:
            raise F2IError(f"backend {self.name} needs the {self.sdk}: set {self.env_var} to "
                           f"its install folder")
        if not Path(root).is_dir():
            raise F2IError(f"backend {self.name}: {self.env_var}={root} is not a folder "
                           f"(expected the {self.sdk})")
        return Path(root)


VENDORS = {
    "qnn": VendorBackend("qnn", "Qualcomm AI Engine Direct (QNN/QAIRT) SDK", "QNN_SDK_ROOT",
                         "SM8650"),
    "mediatek": VendorBackend("mediatek", "MediaTek NeuroPilot SDK", "NEURON_SDK_PATH",
                              "mt6989"),
    "samsung": VendorBackend("samsung", "Samsung Exynos AI Studio SDK", "EXYNOS_AI_STUDIO",
                             "E9955"),
}


def require_sdks(backends: list[str]) -> None:
    for name in backends:
        if name in VENDORS:
            VENDORS[name].require_sdk()


def _partitioner(vendor: VendorBackend, precision: str):
    if vendor.name == "qnn":
        from executorch.backends.qualcomm.partition.qnn_partitioner import QnnPartitioner
        from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
        from executorch.backends.qualcomm.utils.utils import (
            generate_htp_compiler_spec, generate_qnn_executorch_compiler_spec)

        # HTP runs float graphs in fp16 only; fp32 is not an HTP precision.
        specs = generate_qnn_executorch_compiler_spec(
            soc_model=getattr(QcomChipset, vendor.soc),
            backend_options=generate_htp_compiler_spec(use_fp16=True))
        return QnnPartitioner(specs)
    if vendor.name == "mediatek":
        from executorch.backends.mediatek.partitioner import NeuropilotPartitioner
        from executorch.exir.backend.compile_spec_schema import CompileSpec

        return NeuropilotPartitioner([CompileSpec("platform-config", vendor.soc.encode())])
    from executorch.backends.samsung.partition.enn_partitioner import EnnPartitioner
    from executorch.backends.samsung.serialization.compile_options import (
        gen_samsung_backend_compile_spec)

    return EnnPartitioner([gen_samsung_backend_compile_spec(vendor.soc)])


def backend(name: str):
    """A lowering module for `export.pipeline`, like `export.executorch`."""
    vendor = VENDORS[name]

    def lower(module, spec, precision, path):
        from export.executorch import export_program, to_pte

        vendor.require_sdk()
        to_pte(export_program(module, spec, precision), [_partitioner(vendor, precision)], path)
        details = {"delegate": name, "soc": vendor.soc, "sdk": os.environ[vendor.env_var]}
        if name == "qnn":
            details["htp_precision"] = "fp16"
        return {"details": details}

    return SimpleNamespace(EXTENSION="pte", lower=lower)
