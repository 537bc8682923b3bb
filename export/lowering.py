"""Which code lowers each backend of the contract, and the vendor SDK check that runs before
any work. Each backend module has `lower(module, spec, path, precision) -> Lowered`; they are
imported when first asked for, so `--backends onnx` never imports coremltools."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from f2i_mobile.core.contract import Backend, parse_backends

if TYPE_CHECKING:  # the lowerers import torch and the models; this module is read first
    from f2i_mobile.export.common import Lowered

Lower = Callable[..., "Lowered"]
MODULES = {"executorch": "executorch", "tflite": "tflite", "coreml": "coreml", "onnx": "onnx"}
# Tests and plug-ins may put a lowering here by backend name; it wins over MODULES.
LOWERERS: dict[str, Lower] = {}


def lowerer(name: str) -> Lower:
    if name in LOWERERS:
        return LOWERERS[name]
    if name in MODULES:
        return importlib.import_module(f"f2i_mobile.export.{MODULES[name]}").lower
    from f2i_mobile.export import vendor

    return vendor.lower_for(name)


def check_backends(text: str | list[str] | None) -> list[Backend]:
    """Names -> backends, each vendor SDK checked now, before any export work (and before the
    seconds of importing the models)."""
    backends = parse_backends(text)
    for b in backends:
        check_sdk(b)
    return backends


def check_sdk(backend: Backend) -> None:
    """A vendor NPU backend's SDK, checked before any export work (one line when missing)."""
    if backend.sdk_env is not None:
        from f2i_mobile.export import vendor

        vendor.check(backend.name)
