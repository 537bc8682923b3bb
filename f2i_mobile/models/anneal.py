"""Online annealing pruning (PocketSR): a heavy block and its light counterpart side by side,
their outputs mixed `a * heavy + (1 - a) * light` while `a` goes from 1 to 0, the heavy one
dropped at the end.

Hand-written: neither diffusers nor peft has a blended pair of modules or a pruning schedule of
this kind (torch's pruning utilities mask weights in place; they do not swap a block's
architecture).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from f2i_mobile.core.errors import F2IError
from f2i_mobile.models.lite import set_submodule

SHAPES = ("cosine", "linear")


def anneal_factor(step: int, start: int, steps: int, shape: str = "cosine") -> float:
    """The heavy path's weight `a` at `step`: 1 until `start`, down to 0 over `steps` steps
    (cosine: slow at both ends, so neither path sees an abrupt change), 0 after."""
    if shape not in SHAPES:
        raise F2IError(f"annealing shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    if step < start:
        return 1.0
    if steps <= 0 or step >= start + steps:
        return 0.0
    progress = (step - start) / steps
    if shape == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _mix(a: float, heavy, light):
    if torch.is_tensor(heavy):
        return a * heavy + (1.0 - a) * light
    if isinstance(heavy, tuple):
        return tuple(_mix(a, h, g) for h, g in zip(heavy, light, strict=True))
    raise F2IError(f"cannot anneal a block whose output is a {type(heavy).__name__}")


def _first_tensor(value) -> torch.Tensor:
    return value if torch.is_tensor(value) else value[0]


class Annealed(nn.Module):
    """`a * heavy(x) + (1 - a) * light(x)`, with the call signature of the block it stands for.

    While `a` is 1 the output is the heavy path's; in training the light path still runs, and
    `local` holds its mean squared distance to the heavy output (detached), a block-local
    distillation term, so that the light block has learned its part before it takes over.
    At `a = 0` the heavy path is skipped.
    """

    def __init__(self, heavy: nn.Module, light: nn.Module):
        super().__init__()
        self.heavy, self.light = heavy, light
        self.a = 1.0
        self.local: torch.Tensor | None = None

    def forward(self, *args, **kwargs):
        a = self.a
        if a <= 0.0:
            self.local = None
            return self.light(*args, **kwargs)
        heavy = self.heavy(*args, **kwargs)
        if a >= 1.0 and not self.training:
            return heavy
        light = self.light(*args, **kwargs)
        self.local = F.mse_loss(_first_tensor(light), _first_tensor(heavy).detach()) \
            if self.training else None
        return heavy if a >= 1.0 else _mix(a, heavy, light)


def anneal(root: nn.Module, heavy: dict[str, nn.Module]) -> list[Annealed]:
    """Wrap each named (light) module of `root` with the heavy module given for its name."""
    wrappers = []
    for name, module in heavy.items():
        wrapper = Annealed(module, root.get_submodule(name))
        set_submodule(root, name, wrapper)
        wrappers.append(wrapper)
    return wrappers


def annealed(root: nn.Module) -> list[Annealed]:
    return [m for m in root.modules() if isinstance(m, Annealed)]


def set_factor(root: nn.Module, a: float) -> None:
    for wrapper in annealed(root):
        wrapper.a = a


def drop_heavy(root: nn.Module) -> nn.Module:
    """Replace every Annealed in `root` by its light path, in place: what a pruned model keeps."""
    for name, module in list(root.named_modules()):
        if isinstance(module, Annealed):
            set_submodule(root, name, module.light)
    return root
