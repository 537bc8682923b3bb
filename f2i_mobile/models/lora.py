"""LoRA on the U-Net and the VAE encoder, through peft.

Adapters are injected in place (`peft.inject_adapter_in_model`), so the module tree keeps its
diffusers names and the base weights keep their keys. On disk an adapter is peft's format:
`adapter_config.json` + `adapter_model.safetensors` (keys prefixed `base_model.model.` as
`PeftModel.save_pretrained` writes them), so `PeftModel.from_pretrained` can read it too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from torch import nn

from f2i_mobile.core.errors import F2IError

ADAPTER = "default"
PEFT_PREFIX = "base_model.model."


def unet_lora_config(rank: int, alpha: int, targets: tuple[str, ...]) -> PeftLoraConfig:
    return PeftLoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                          init_lora_weights="gaussian")


def vae_encoder_lora_config(rank: int, alpha: int, targets: tuple[str, ...]) -> PeftLoraConfig:
    # Only the encoder (and quant_conv) gets adapters; the decoder stays frozen, as in OSEDiff.
    names = "|".join(re.escape(t) for t in targets)
    pattern = rf"^(encoder\.(?:.*\.)?(?:{names})|quant_conv)$"
    return PeftLoraConfig(r=rank, lora_alpha=alpha, target_modules=pattern,
                          init_lora_weights="gaussian")


def every_layer_lora_config(module: nn.Module, rank: int, alpha: int, prefix: str = "",
                            ) -> PeftLoraConfig:
    """Adapters on every convolution and linear layer of `module` (under `prefix`): FaithDiff's
    U-Net and LQ encoder fine-tuned through LoRA rather than whole. Named one by one, since
    peft's `all-linear` leaves convolutions out."""
    names = [n for n, m in module.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and n.startswith(prefix)]
    pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
    return PeftLoraConfig(r=rank, lora_alpha=alpha, target_modules=pattern,
                          init_lora_weights="gaussian")


def add_lora(model: nn.Module, config: PeftLoraConfig) -> nn.Module:
    return inject_adapter_in_model(config, model, adapter_name=ADAPTER)


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoraLayer) for m in model.modules())


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if "lora_" in n]


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The module's own weights under their plain diffusers names, without the adapters."""
    state = {}
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        state[key.replace(".base_layer.", ".")] = value
    return state


def load_base_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Inverse of `base_state_dict` for a module that may already carry adapters."""
    own = {k.replace(".base_layer.", "."): k for k in model.state_dict() if "lora_" not in k}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise F2IError(f"weights do not fit the model: {len(missing)} missing "
                       f"(e.g. {missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})")
    model.load_state_dict({own[k]: v for k, v in state.items()}, strict=False)


def save_lora(model: nn.Module, folder: Path, dtype: torch.dtype | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = model.peft_config[ADAPTER]
    config.save_pretrained(str(folder))
    # peft keeps target_modules as a set and writes it in hash order, which changes from one
    # process to the next: sorted, the same model always writes the same bytes (the default
    # path caches exported graphs by the checkpoint's content)
    path = folder / "adapter_config.json"
    record = json.loads(path.read_text())
    if isinstance(record.get("target_modules"), list):
        record["target_modules"] = sorted(record["target_modules"])
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    state = get_peft_model_state_dict(model, adapter_name=ADAPTER)
    state = {PEFT_PREFIX + k: _cast(v, dtype) for k, v in state.items()}
    save_file(state, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})


def load_lora(model: nn.Module, folder: Path) -> nn.Module:
    config = PeftLoraConfig.from_pretrained(str(folder))
    model = add_lora(model, config)
    state = load_file(str(folder / "adapter_model.safetensors"))
    state = {k.removeprefix(PEFT_PREFIX): v.float() for k, v in state.items()}
    result = set_peft_model_state_dict(model, state, adapter_name=ADAPTER)
    if result.unexpected_keys:
        raise F2IError(f"LoRA adapter in {folder} does not fit the model: "
                       f"{len(result.unexpected_keys)} unexpected keys")
    return model


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain layer back (peft's merge),
    so the result is the diffusers module as it would be without LoRA."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    model._hf_peft_config_loaded = False
    return model


def _cast(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    t = t.detach().contiguous()
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t
