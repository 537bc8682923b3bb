"""Image-wide context for the torch runner: GroupNorm statistics and self-attention keys/values
taken from the whole photo instead of the tile.

Two things in the VAE and U-Net see their whole input, not a neighbourhood:
- GroupNorm takes mean and variance over the whole input, so every tile is normalised
  differently and tiles disagree with each other (and with the untiled run) everywhere;
- spatial self-attention (diffusers' cross-attention mid block keeps it even with
  `only_cross_attention`) lets every position attend to every other one.
`ImageContextRunner` records both once, on a reference view of the whole photo (the photo itself
when it is small, else the photo resized to a few tiles' area, see the scheduler), and then runs
every tile with them: GroupNorm normalises with the recorded statistics, and self-attention
attends to the recorded (image-wide) hidden states. Each graph becomes a local function of its
tile, so tiles agree wherever the overlap covers the receptive field, and on a photo the model
can take whole the tiled result equals the untiled one.

Torch only: exported graphs (ExecuTorch, TFLite, ONNX) have tile statistics and tile-wide
attention baked in, and rely on blending (docs/tiling.md). Attention with its own GroupNorm (the
SD VAE's mid block; not in the mobile and tiny presets) keeps tile-wide attention.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from f2i_mobile.models import F2IDiffSR
from f2i_mobile.models.graphs import graph_modules, graph_specs
from f2i_mobile.runners.torch_runner import TorchRunner


def _group_stats(x: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    # In the input's own precision, as GroupNorm itself does: a float64 copy of a reference
    # view's activation would double the pass's peak memory.
    var, mean = torch.var_mean(x.reshape(x.shape[0], groups, -1), dim=2, correction=0)
    return mean.double().mean(dim=0), var.double().mean(dim=0)


def _frozen_forward(norm: nn.GroupNorm, mean: torch.Tensor, var: torch.Tensor):
    def forward(x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        g = x.reshape(shape[0], norm.num_groups, -1)
        g = (g - mean.to(x.dtype)[None, :, None]) * torch.rsqrt(var.to(x.dtype) + norm.eps)[
            None, :, None]
        y = g.reshape(shape)
        if norm.affine:
            view = (1, -1) + (1,) * (len(shape) - 2)
            y = y * norm.weight.view(view) + norm.bias.view(view)
        return y

    return forward


def _self_attention(m: nn.Module) -> bool:
    """A diffusers spatial self-attention on token sequences (transformer blocks)."""
    return (isinstance(m, Attention) and not m.is_cross_attention and m.group_norm is None
            and m.spatial_norm is None)


def _attend_to(attn: Attention, context: torch.Tensor):
    forward = type(attn).forward

    def patched(hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is None:
            encoder_hidden_states = context.to(hidden_states.dtype).expand(
                hidden_states.shape[0], -1, -1)
        return forward(attn, hidden_states, encoder_hidden_states, *args, **kwargs)

    return patched


@contextlib.contextmanager
def recorded(module: nn.Module, into: dict[str, tuple]):
    """Record every GroupNorm's input statistics and every self-attention's input while the
    block runs (batch 1)."""
    handles = []
    for name, m in module.named_modules():
        if isinstance(m, nn.GroupNorm):
            def hook(mod, args, name=name):
                into[name] = _group_stats(args[0], mod.num_groups)
            handles.append(m.register_forward_pre_hook(hook))
        elif _self_attention(m):
            def hook(mod, args, kwargs, name=name):
                if kwargs.get("encoder_hidden_states") is None and len(args) < 2:
                    into[name] = (args[0] if args else kwargs["hidden_states"])[:1].clone()
            handles.append(m.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield into
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def frozen(module: nn.Module, context: dict[str, tuple]):
    """Run GroupNorms with recorded statistics and self-attention over recorded hidden states
    while the block runs."""
    patched = []
    for name, m in module.named_modules():
        if name not in context:
            continue
        if isinstance(m, nn.GroupNorm):
            m.forward = _frozen_forward(m, *context[name])
        else:
            m.forward = _attend_to(m, context[name])
        patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward  # back to the class's forward


class ImageContextRunner(TorchRunner):
    """TorchRunner whose GroupNorms and self-attentions use the whole photo's context once
    `calibrate`d."""

    context_pass = True

    def __init__(self, model: F2IDiffSR):
        super().__init__(graph_modules(model), graph_specs(model.config))
        self.stats: dict[str, dict] = {}

    @torch.no_grad()
    def calibrate(self, lr: np.ndarray, tokens: np.ndarray) -> None:
        """Run the reference view `lr` [1,3,h,w] (with `tokens`) through encoder, U-Net and
        decoder, recording each one's GroupNorm statistics."""
        self.stats = {}
        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
        t = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.float32))
        with recorded(self.modules["encoder"], self.stats.setdefault("encoder", {})):
            latent = self.modules["encoder"](x)
        with recorded(self.modules["unet"], self.stats.setdefault("unet", {})):
            latent_sr = self.modules["unet"](latent, t.expand(latent.shape[0], -1, -1))
        with recorded(self.modules["decoder"], self.stats.setdefault("decoder", {})):
            self.modules["decoder"](latent_sr)

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph not in self.stats:
            return super().run(graph, inputs)
        with frozen(self.modules[graph], self.stats[graph]):
            return super().run(graph, inputs)
