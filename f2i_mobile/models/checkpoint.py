"""The one checkpoint format, its loader and its writer.

A checkpoint is a folder:

    f2i_config.json                      {"format", "config": F2IConfig, "metadata": {...}}
    conditioner/model.safetensors        conditioner backbone + projection
    vae/config.json, vae/diffusion_pytorch_model.safetensors     (a diffusers AutoencoderKL folder)
    unet/config.json, unet/diffusion_pytorch_model.safetensors   (a diffusers UNet2DConditionModel)
    lora/unet/, lora/vae_encoder/        peft adapters (adapter_config.json + adapter_model.safetensors)
    align/model.safetensors              FaithDiff's alignment module (config method faithdiff)

The training method is the config's `method` (absent in the JSON of an OSEDiff model, which
reads as `osediff`).

Base weights are stored without the adapters, so `vae/` and `unet/` load in diffusers as they are.
Only safetensors are read: nothing is unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from f2i_mobile.core.atomic import atomic_dir
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.model_files import CONFIG_FILE, FORMAT, config_header, model_folder
from f2i_mobile.models.conditioner import build_conditioner
from f2i_mobile.models.config import F2IConfig
from f2i_mobile.models.lora import (
    add_lora,
    base_state_dict,
    has_lora,
    load_base_state_dict,
    load_lora,
    save_lora,
    unet_lora_config,
    vae_encoder_lora_config,
)
from f2i_mobile.models.sr import F2IDiffSR
from f2i_mobile.models.unet import build_unet
from f2i_mobile.models.vae import build_vae, load_vae

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


def load_model(name_or_path: str | Path | None = None) -> F2IDiffSR:
    """The one way to get a model: a checkpoint folder, the name of a bundled checkpoint
    (`mobile`), or the bundled default for None."""
    return from_pretrained(model_folder(name_or_path))


def weights_hash(model: torch.nn.Module) -> str:
    """A digest of every tensor of the model (names, dtypes, shapes, bytes): with the config
    hash, what says that an export, a calibration set or a check set came from these weights
    (a model retrained at the same config has the same config hash)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def lr_multiple(config: F2IConfig) -> int:
    """LR sizes (and tile origins) must be multiples of this so that scale * size fits the VAE
    and U-Net."""
    m = config.pixel_multiple
    return m // math.gcd(m, config.scale)


def build_model(config: F2IConfig, seed: int = 0, *, lora: bool = True,
                dinov2: str | Path | None = None, vae: str | Path | None = None,
                metadata: dict | None = None) -> F2IDiffSR:
    """A model from its config: random weights from `seed`, or real DINOv2/VAE weights from local
    folders. `lora=True` adds the SR stage's adapters (zero-initialised B, so no effect yet);
    a faithdiff config gets its alignment module (zero-initialised output) and no adapters: its
    U-Net and encoder are fine-tuned whole unless training puts adapters on them."""
    torch.manual_seed(seed)
    conditioner = build_conditioner(config.conditioner, config.cross_attention_dim, dinov2)
    autoencoder = build_vae(config.vae) if vae is None else load_vae(vae, config.vae)
    unet = build_unet(config.unet, config.vae.latent_channels, config.cross_attention_dim)
    if lora and config.method == "osediff":
        add_lora(unet, unet_lora_config(config.lora.rank, config.lora.alpha,
                                        config.lora.unet_targets))
        add_lora(autoencoder, vae_encoder_lora_config(config.lora.rank, config.lora.alpha,
                                                      config.lora.vae_encoder_targets))
    meta = {"origin": f"built from config {config.name!r} with seed {seed}, untrained"}
    meta.update(metadata or {})
    return F2IDiffSR(config, conditioner, autoencoder, unet, meta).eval()


def save_pretrained(model: F2IDiffSR, folder: str | Path, dtype: torch.dtype | None = None,
                    ) -> Path:
    """Write the checkpoint atomically: a reader sees the old folder or the whole new one."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        header = {"format": FORMAT, "config": model.config.to_dict(), "metadata": model.metadata}
        (tmp / CONFIG_FILE).write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
        _save_weights(model.conditioner.state_dict(), tmp / "conditioner" / "model.safetensors",
                      dtype)
        for name in ("vae", "unet"):
            module = getattr(model, name)
            (tmp / name).mkdir()
            module.save_config(str(tmp / name))
            _save_weights(base_state_dict(module), tmp / name / DIFFUSERS_WEIGHTS, dtype)
        if has_lora(model.unet):
            save_lora(model.unet, tmp / "lora" / "unet", dtype)
        if has_lora(model.vae):
            save_lora(model.vae, tmp / "lora" / "vae_encoder", dtype)
        if model.align is not None:
            _save_weights(model.align.state_dict(), tmp / "align" / "model.safetensors", dtype)
    return folder


def from_pretrained(folder: str | Path) -> F2IDiffSR:
    """Load a checkpoint folder written by `save_pretrained` (weights come back as float32)."""
    folder = Path(folder)
    config, metadata = read_header(folder)
    model = build_model(config, lora=False)
    model.metadata = metadata
    _load_into(model.conditioner, _load_weights(folder / "conditioner" / "model.safetensors"),
               folder / "conditioner")
    for name in ("vae", "unet"):
        load_base_state_dict(getattr(model, name), _load_weights(folder / name / DIFFUSERS_WEIGHTS))
    if (folder / "lora" / "unet").is_dir():
        load_lora(model.unet, folder / "lora" / "unet")
    if (folder / "lora" / "vae_encoder").is_dir():
        load_lora(model.vae, folder / "lora" / "vae_encoder")
    if model.align is not None:
        _load_into(model.align, _load_weights(folder / "align" / "model.safetensors"),
                   folder / "align")
    return model.eval()


def _load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    own = set(module.state_dict())
    if own != set(state):
        # A transformers release that names DINOv2's layers otherwise than the one that saved
        # them (5.17 against 5.24) lands here too: name the one here; pyproject names the pin.
        import transformers

        raise F2IError(f"{where}: weights do not fit the config's {where.name} module "
                       f"({len(own - set(state))} missing, {len(set(state) - own)} unexpected; "
                       f"transformers {transformers.__version__} here, f2i-mobile's pinned "
                       f"release reads them)")
    module.load_state_dict(state)


def read_header(folder: Path) -> tuple[F2IConfig, dict]:
    header = config_header(folder)
    return F2IConfig.from_dict(header["config"]), header.get("metadata", {})


def _save_weights(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in state.items():
        value = value.detach().contiguous()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value
    save_file(tensors, str(path), metadata={"format": "pt"})


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise F2IError(f"checkpoint is incomplete: {path} is missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise F2IError(f"{path}: not a readable safetensors file ({exc})") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
