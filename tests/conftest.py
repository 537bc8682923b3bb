"""Shared fixtures: tiny models and checkpoints built from configs (no downloads)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from f2i_mobile.quiet import quiet_libraries  # noqa: E402

quiet_libraries()


def randomize_lora(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """peft initialises LoRA B to zero (no effect); give every adapter weight a value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture(scope="session")
def tiny_model():
    from f2i_mobile.models import build_model, preset

    model = build_model(preset("tiny"), seed=0)
    randomize_lora(model)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model):
    from f2i_mobile.models import save_pretrained

    return save_pretrained(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint exported to all four default backends (shared: exports are slow)."""
    from export.pipeline import export_model, parse_backends
    from f2i_mobile.models import from_pretrained

    out = tmp_path_factory.mktemp("export") / "out"
    manifest, failures = export_model(from_pretrained(tiny_checkpoint), out,
                                      parse_backends(None), progress=False)
    assert not failures, [str(f) for f in failures]
    return out, manifest
