"""Image-wide GroupNorm for tiles: normalization statistics as graph inputs.

GroupNorm normalises by the mean and variance of its whole input. On a tile that makes every
tile's tone its own, so tiles disagree in their overlaps. The deployment graphs therefore take
the statistics from outside: every GroupNorm of the encoder, U-Net and decoder is replaced by a
`StatNorm` bound to its graph's `StatsSlot`, which works in one of two modes:

- measure: a plain GroupNorm that also records the per-group mean and variance it used (the
  statistics pass, on a view of the whole photo);
- apply: a per-channel affine `x * a + b` with `a = gamma / sqrt(var + eps)` and
  `b = beta - mean * a` computed from the packed statistics input, the same for every tile. The
  reductions (MEAN, RSQRT over the activation) are gone from the tile graphs, so they quantize
  and delegate like the convolutions around them.

Packing, per graph: for each GroupNorm in module order, its G means then its G variances, one
row per batch item (`[B, 2 * sum(G)]`); `StatsLayout` records names, groups, channels, eps and
offsets, and the manifest carries it. The norms read and write the slot as Python state while
the graph runs: torch.export (non-strict) traces through it, so each exported graph has the mode
its wrapper set.

Hand-written because no library swaps GroupNorm for externally supplied statistics; the tiled
VAE decoders of SD tools do the same by patching forward methods at run time, which an exported
graph cannot carry.
"""

from __future__ import annotations

import torch
from torch import nn

from f2i_mobile.core.contract import NormSlot


class StatsSlot:
    """What a graph's StatNorms share: the mode, and the packed statistics (apply) or the
    statistics recorded so far (measure)."""

    def __init__(self):
        self.norms: list[NormSlot] = []
        self.mode = "measure"
        self.packed: torch.Tensor | None = None
        self.recorded: dict[int, torch.Tensor] = {}  # by norm index: call order is not module order
        # A graph that calls its network several times (multi-step sampling on the host) packs
        # one block of statistics per call, in call order; `step` is the call running now.
        self.steps, self.step = 1, 0

    @property
    def step_size(self) -> int:
        return sum(2 * n.groups for n in self.norms)

    @property
    def size(self) -> int:
        return self.steps * self.step_size

    def at_step(self, step: int) -> None:
        self.step = step

    def measure(self) -> None:
        self.mode, self.recorded, self.step = "measure", {}, 0

    def apply(self, packed: torch.Tensor) -> None:
        self.mode, self.packed, self.step = "apply", packed, 0

    def key(self, index: int) -> int:
        return self.step * len(self.norms) + index

    def offset(self, index: int) -> int:
        return self.step * self.step_size + self.norms[index].offset

    def pack(self) -> torch.Tensor:
        """The recorded statistics, in the layout `apply` reads."""
        return torch.cat([self.recorded[i] for i in range(self.steps * len(self.norms))], dim=1)

    def clear(self) -> None:
        """Drop the call's tensors: under torch.export they are fake, and a module holding one
        can be neither deep-copied nor traced again."""
        self.packed, self.recorded = None, {}


class NormFactors(nn.Module):
    """Per-group mean and variance [N, G] -> the per-channel affine factors [N, C] of a GroupNorm.
    Its own module so that quantizers can find it by name and keep it in float: it works on a
    few hundred statistics, not on the activation, and an 8-bit variance would lose the small
    ones."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.groups, self.channels, self.eps = norm.num_groups, norm.num_channels, norm.eps
        self.weight, self.bias = norm.weight, norm.bias
        # [N, G] -> [N, C] by a broadcast multiply, not expand: XNNPACK and NPU delegates take
        # multiplies, while an expand stays on the portable CPU kernels between partitions.
        device = norm.weight.device if norm.weight is not None else None
        self.register_buffer("spread", torch.ones(1, 1, self.channels // self.groups,
                                                  device=device), persistent=False)

    def forward(self, mean: torch.Tensor, var: torch.Tensor):
        c = self.channels
        scale = torch.rsqrt(var + self.eps)
        spread = self.spread.to(scale.dtype)
        a = (scale[:, :, None] * spread).reshape(-1, c)
        b = ((-mean * scale)[:, :, None] * spread).reshape(-1, c)
        if self.weight is not None:
            a, b = a * self.weight, b * self.weight + self.bias
        return a, b


class StatNorm(nn.Module):
    """GroupNorm whose statistics are measured (and recorded) or supplied, per its slot."""

    def __init__(self, norm: nn.GroupNorm, slot: StatsSlot, index: int):
        super().__init__()
        self.groups = norm.num_groups
        self.factors = NormFactors(norm)
        self.slot, self.index = slot, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.groups
        if self.slot.mode == "measure":
            mean, var = self.moments(x)
            self.slot.recorded[self.slot.key(self.index)] = torch.cat([mean, var], dim=1)
        else:
            offset = self.slot.offset(self.index)
            stats = self.slot.packed[:, offset:offset + 2 * g]
            mean, var = stats[:, :g], stats[:, g:]
        a, b = self.factors(mean, var)
        view = (a.shape[0], a.shape[1]) + (1,) * (x.dim() - 2)
        return x * a.reshape(view) + b.reshape(view)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-group mean and variance [N, G] of the activation.

        Mean and squared deviation, not var_mean: every exporter takes these (var_mean is
        outside the core ATen op set ExecuTorch and Core ML lower). Grouped as a 4-D [N, G, L, 1]
        and averaged over its last two dims, which is the global average pool XNNPACK delegates:
        a 3-D mean stays on ExecuTorch's portable kernels and cut the statistics graph into one
        more delegate partition per GroupNorm (`benchmarks/xnnpack_statistics.py`)."""
        n = x.shape[0]
        grouped = x.reshape(n, self.groups, -1, 1)
        mean = grouped.mean(dim=(2, 3), keepdim=True)
        centred = grouped - mean
        var = (centred * centred).mean(dim=(2, 3), keepdim=True)
        return mean.reshape(n, self.groups), var.reshape(n, self.groups)


def bind_norms(module: nn.Module) -> StatsSlot:
    """Replace every GroupNorm inside `module` by a StatNorm on a new slot; returns the slot
    (its `norms` is the packing layout)."""
    slot = StatsSlot()
    offset = 0
    for name, norm in list(module.named_modules()):
        if not isinstance(norm, nn.GroupNorm):
            continue
        slot.norms.append(NormSlot(name, norm.num_groups, norm.num_channels, norm.eps, offset))
        offset += 2 * norm.num_groups
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, StatNorm(norm, slot, len(slot.norms) - 1))
    return slot


class WithStats(nn.Module):
    """A tile graph that takes its graph's packed statistics as its last input."""

    def __init__(self, inner: nn.Module, slot: StatsSlot):
        super().__init__()
        self.inner, self.slot = inner, slot

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *args, stats = inputs
        self.slot.apply(stats)
        try:
            return self.inner(*args)
        finally:
            self.slot.clear()


class Statistics(nn.Module):
    """The statistics pass: encoder, U-Net and decoder on a view of the whole photo, each
    GroupNorm measuring its own input; returns each graph's packed statistics."""

    def __init__(self, encoder: nn.Module, unet: nn.Module, decoder: nn.Module,
                 slots: dict[str, StatsSlot]):
        super().__init__()
        self.encoder, self.unet, self.decoder, self.slots = encoder, unet, decoder, slots

    def forward(self, lr: torch.Tensor, tokens: torch.Tensor):
        for slot in self.slots.values():
            slot.measure()
        try:
            encoded = self.encoder(lr)  # the latent, and faithdiff's LQ features after it
            encoded = encoded if isinstance(encoded, tuple) else (encoded,)
            self.decoder(self.unet(*encoded, tokens))
            return tuple(self.slots[g].pack() for g in ("encoder", "unet", "decoder"))
        finally:
            for slot in self.slots.values():
                slot.clear()
