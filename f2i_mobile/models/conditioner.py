"""Conditioners: what the U-Net cross-attends to.

`DinoConditioner` is F2IDiff's: DINOv2 tokens (CLS + patches, after the final LayerNorm) of the LR
tile, projected by one Linear to the U-Net's cross-attention width (AnyDoor's adapter).
`TextConditioner` is the T2IDiff baseline's: a CLIP text encoder behind the same interface.
Both return tokens of shape [batch, num_tokens, cross_attention_dim].
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, Dinov2Config, Dinov2Model

from f2i_mobile.core.errors import F2IError
from f2i_mobile.models.config import ConditionerConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def dinov2_config(cfg: ConditionerConfig) -> Dinov2Config:
    return Dinov2Config(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        mlp_ratio=cfg.mlp_ratio,
        patch_size=cfg.patch_size,
        image_size=cfg.image_size,
    )


class DinoConditioner(nn.Module):
    """LR tile in [0, 1] (NCHW) -> DINOv2 tokens projected to the cross-attention width."""

    input_kind = "image"

    def __init__(self, cfg: ConditionerConfig, cross_attention_dim: int,
                 backbone: Dinov2Model | None = None):
        super().__init__()
        self.image_size = cfg.image_size
        self.backbone = backbone if backbone is not None else Dinov2Model(dinov2_config(cfg))
        self.proj = nn.Linear(self.backbone.config.hidden_size, cross_attention_dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        # Bilinear, not bicubic: it lowers to every backend (XNNPACK, TFLite, Core ML) natively.
        x = F.interpolate(lr, size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False)
        x = (x - self.mean) / self.std
        tokens = self.backbone(pixel_values=x).last_hidden_state
        return self.proj(tokens)


class TextConditioner(nn.Module):
    """Token ids [batch, max_length] -> CLIP text tokens projected to the cross-attention width."""

    input_kind = "text"

    def __init__(self, cfg: ConditionerConfig, cross_attention_dim: int,
                 backbone: CLIPTextModel | None = None, tokenizer=None):
        super().__init__()
        if backbone is None:
            backbone = CLIPTextModel(CLIPTextConfig(
                vocab_size=cfg.vocab_size,
                hidden_size=cfg.hidden_size,
                intermediate_size=cfg.hidden_size * cfg.mlp_ratio,
                num_hidden_layers=cfg.num_hidden_layers,
                num_attention_heads=cfg.num_attention_heads,
                max_position_embeddings=cfg.max_length,
            ))
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.max_length = cfg.max_length
        self.vocab_size = cfg.vocab_size
        self.proj = nn.Linear(backbone.config.hidden_size, cross_attention_dim)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        if self.tokenizer is not None:
            return self.tokenizer(prompts, padding="max_length", max_length=self.max_length,
                                  truncation=True, return_tensors="pt").input_ids
        # No CLIP vocabulary ships offline: models trained from scratch use UTF-8 bytes as ids.
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            data = list(prompt.encode("utf-8"))[: self.max_length]
            ids[row, : len(data)] = torch.tensor(data, dtype=torch.long) % self.vocab_size
        return ids

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(input_ids=input_ids).last_hidden_state)


Conditioner = DinoConditioner | TextConditioner


def build_conditioner(cfg: ConditionerConfig, cross_attention_dim: int,
                      pretrained: str | Path | None = None) -> Conditioner:
    """A conditioner from its config, with real weights from a local Hugging Face folder if given."""
    if cfg.kind == "text":
        backbone, tokenizer = (None, None) if pretrained is None else load_clip_text(pretrained)
        return TextConditioner(cfg, cross_attention_dim, backbone, tokenizer)
    backbone = None if pretrained is None else load_dinov2(pretrained, cfg)
    return DinoConditioner(cfg, cross_attention_dim, backbone)


def _require_hf_folder(path: str | Path, what: str, repo: str) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise F2IError(
            f"{what} weights not found at {path}: pass a local copy of {repo} in Hugging Face "
            f"layout (config.json + model.safetensors); the model hub is not used")
    return path


def load_dinov2(path: str | Path, cfg: ConditionerConfig) -> Dinov2Model:
    """Real DINOv2 weights from a local folder, its position embeddings resampled once to the
    conditioner's input size so the exported graph carries no interpolation."""
    path = _require_hf_folder(path, "DINOv2", "facebook/dinov2-large")
    model = Dinov2Model.from_pretrained(path, local_files_only=True, use_safetensors=True)
    if model.config.hidden_size != cfg.hidden_size:
        raise F2IError(
            f"DINOv2 at {path} has hidden size {model.config.hidden_size}, the config expects "
            f"{cfg.hidden_size}")
    if model.config.image_size != cfg.image_size:
        _resample_position_embeddings(model, cfg.image_size)
    return model


@torch.no_grad()
def _resample_position_embeddings(model: Dinov2Model, image_size: int) -> None:
    emb = model.embeddings
    dummy = torch.zeros(1, (image_size // emb.patch_size) ** 2 + 1, model.config.hidden_size)
    resampled = emb.interpolate_pos_encoding(dummy, image_size, image_size)
    emb.position_embeddings = nn.Parameter(resampled.clone())
    model.config.image_size = image_size


def load_clip_text(path: str | Path):
    from transformers import CLIPTokenizer

    path = _require_hf_folder(path, "CLIP text encoder", "a CLIP ViT-L/14 text encoder")
    model = CLIPTextModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(path, local_files_only=True)
    except OSError:
        raise F2IError(f"CLIP tokenizer files (vocab.json, merges.txt) missing in {path}") from None
    return model, tokenizer
