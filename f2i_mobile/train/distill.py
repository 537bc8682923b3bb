"""PocketSR distillation: a teacher model -> a phone-sized student, on the training core's loop.

    student   the teacher's config with `vae.lite` (LiteED) and `unet.light_blocks`; built from
              the teacher: conditioner and U-Net weights copied (LoRA merged), every light block
              wrapped with its heavy teacher block (`models.anneal.Annealed`) unless annealing
              is off, LiteED fresh
    phase 1   LiteED learns the teacher VAE's latent space (`DistillConfig`)
    phase 2   the whole student end to end: output, latent and multi-layer feature distillation,
              the SR losses, block-local terms, `a` annealed 1 -> 0
    result    `RUN/model/`: the heavy paths dropped, a checkpoint `load_model` reads

Feature distillation hooks named layers (`FeatureHooks`) of teacher and student; a learned 1x1
convolution maps the student's width onto the teacher's where they differ. The stage keeps a
step counter in its state, so the schedule resumes exactly with the loop's checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.samples import load_images
from f2i_mobile.models import PRESETS, F2IConfig, F2IDiffSR, build_model, load_model, preset
from f2i_mobile.models.anneal import anneal, anneal_factor, annealed, drop_heavy, set_factor
from f2i_mobile.models.checkpoint import lr_multiple
from f2i_mobile.models.config import pocket_of
from f2i_mobile.models.graphs import example_inputs, graph_specs
from f2i_mobile.models.lite import light_counterpart, lighten
from f2i_mobile.models.lora import merge_lora
from f2i_mobile.train.config import TrainConfig
from f2i_mobile.train.loop import train
from f2i_mobile.train.stages import Stage, adapters_off, low_pass

# Fields a student may change relative to its teacher; everything else (conditioner, latent
# space, U-Net layout, one-step constants) must match, or the teacher's weights and latents
# would not fit it.
_FREE = {"name", "lora", "tile", ("vae", "lite"), ("unet", "light_blocks"),
         ("unet", "light_width")}


def student_config(spec: str, teacher: F2IConfig) -> F2IConfig:
    """`pocket` (the PocketSR recipe applied to the teacher's config: on `mobile`, the `pocket`
    preset), another preset's name, or a config JSON file (an f2i_config.json will do)."""
    if spec == "pocket":
        config = pocket_of(teacher)
    elif spec in PRESETS:
        config = preset(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            raise F2IError(f"--student {spec}: not a preset ({', '.join(PRESETS)}) nor a file")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise F2IError(f"--student {spec}: {exc}") from None
        config = F2IConfig.from_dict(data.get("config", data))
    # The latent scale is the teacher's: a fitted value, not part of the architecture.
    config = dataclasses.replace(config, vae=dataclasses.replace(
        config.vae, scaling_factor=teacher.vae.scaling_factor))
    check_compatible(teacher, config)
    return config


def check_compatible(teacher: F2IConfig, student: F2IConfig) -> None:
    t, s = _comparable(teacher), _comparable(student)
    for key in sorted(set(t) | set(s)):
        if t.get(key) != s.get(key):
            raise F2IError(f"student {student.name!r} does not fit teacher {teacher.name!r}: "
                           f"{key} is {s.get(key)!r}, the teacher's is {t.get(key)!r} (a student "
                           f"may change only the VAE's lite and the U-Net's light blocks)")


def _comparable(config: F2IConfig) -> dict:
    flat = {}
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, dict):
            flat |= {f"{key}.{k}": v for k, v in value.items() if (key, k) not in _FREE}
        elif key not in _FREE:
            flat[key] = value
    return {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}


def merged_copy(model: F2IDiffSR) -> F2IDiffSR:
    """The model as its graphs compute it: a copy with every adapter merged."""
    merged = copy.deepcopy(model)
    merge_lora(merged.unet)
    merge_lora(merged.vae)
    return merged


def build_student(teacher: F2IDiffSR, config: F2IConfig, seed: int = 0,
                  annealing: bool = True) -> F2IDiffSR:
    """The student at step 0: the teacher's conditioner and U-Net (adapters merged) in the
    student's architecture, fresh light blocks and LiteED; with `annealing`, each light block
    wrapped with a copy of the heavy teacher block it replaces."""
    merged = merged_copy(teacher)
    student = build_model(config, seed=seed, lora=False)
    student.conditioner.load_state_dict(merged.conditioner.state_dict())
    light = config.unet.light_blocks
    _copy_shared(student.unet, merged.unet, light)
    if config.vae.lite is None:
        student.vae.load_state_dict(merged.vae.state_dict())
    if light and annealing:
        anneal(student.unet, {name: merged.unet.get_submodule(name) for name in light})
    return student


def _copy_shared(student: nn.Module, teacher: nn.Module, skip: tuple[str, ...]) -> None:
    """Every student weight outside the light blocks from the teacher's, by name and shape."""
    source = teacher.state_dict()
    own = {k: v for k, v in student.state_dict().items()
           if not any(k.startswith(f"{name}.") for name in skip)}
    misfits = [k for k, v in own.items() if k not in source or source[k].shape != v.shape]
    if misfits:
        raise F2IError(f"the teacher's U-Net does not fit the student: {len(misfits)} weights "
                       f"differ (e.g. {misfits[0]})")
    student.load_state_dict({k: source[k] for k in own}, strict=False)


def candidate_blocks(config: F2IConfig) -> list[str]:
    """Every U-Net module a student may name in `light_blocks`: ResNets and attentions."""
    with torch.device("meta"):
        unet = build_model(config, lora=False).unet
    return [name for name, module in unet.named_modules()
            if isinstance(module, ResnetBlock2D | Transformer2DModel)]


@torch.no_grad()
def block_flops(config: F2IConfig, width: float = 1.0) -> dict[str, tuple[int, int]]:
    """Each candidate block's FLOPs at the config's tile, as it is and made light (`width`) or
    removed: one U-Net forward on the meta device records every block's inputs, then each
    block and its light counterpart run on them alone under torch's FLOP counter."""
    names = candidate_blocks(config)
    latent, tokens = (x.to("meta") for x in example_inputs(graph_specs(config)["unet"])[:2])
    inputs: dict[str, tuple] = {}
    with torch.device("meta"):
        model = build_model(config, lora=False)
        handles = [model.unet.get_submodule(n).register_forward_pre_hook(
            lambda _m, args, kwargs, n=n: inputs.__setitem__(n, (args, kwargs)), with_kwargs=True)
            for n in names]
        model.stages()["unet"](latent, tokens)
        for handle in handles:
            handle.remove()
        costs = {}
        for name in names:
            heavy = model.unet.get_submodule(name)
            counts = []
            for block in (heavy, light_counterpart(heavy, width, name)):
                args, kwargs = inputs[name]
                with FlopCounterMode(display=False) as counter:
                    block(*args, **kwargs)
                counts.append(counter.get_total_flops())
            costs[name] = (counts[0], counts[1])
    return costs


@torch.no_grad()
def block_table(teacher: F2IDiffSR, lr: torch.Tensor, width: float = 1.0) -> list[dict]:
    """The cost/sensitivity table the `pocket` recipe is chosen from, one row per candidate
    block of the teacher's U-Net: its GFLOPs per tile, as it is and made light (`width`) or
    removed, and the PSNR (dB, images in [0, 1]) of the teacher's output on `lr` with the block
    replaced by a fresh light block (its shortcut: what the rest of the network gives when the
    block adds nothing) against the teacher's own output: the lower, the more the block
    matters."""
    merged = merged_copy(teacher).eval()
    reference = merged(lr)
    rows = []
    for name, (heavy, light) in block_flops(teacher.config, width).items():
        probe = copy.deepcopy(merged)
        lighten(probe.unet, (name,), width)
        mse = F.mse_loss(probe(lr), reference).clamp_min(1e-12)
        rows.append({"block": name, "kind": type(merged.unet.get_submodule(name)).__name__,
                     "gflops": heavy / 1e9, "gflops_light": light / 1e9,
                     "psnr_without": float(-10 * torch.log10(mse))})
    return rows


def default_feature_layers(config: F2IConfig) -> tuple[tuple[str, str], ...]:
    """Every U-Net down, mid and up block, and with LiteED every decoder level (both decoders
    name their levels `up_blocks.i`, at the same resolutions)."""
    n = len(config.unet.block_out_channels)
    names = [f"unet.down_blocks.{i}" for i in range(n)]
    names += ["unet.mid_block"] if config.unet.mid_block_type else []
    names += [f"unet.up_blocks.{i}" for i in range(n)]
    if config.vae.lite is not None:
        names += [f"vae.decoder.up_blocks.{i}" for i in range(len(config.vae.block_out_channels))]
    return tuple((name, name) for name in names)


class FeatureHooks:
    """Forward hooks on named submodules of `root` that keep each one's output (the first tensor
    of a tuple: a down block's hidden state, not its skip connections) while in use."""

    def __init__(self, root: nn.Module, names: tuple[str, ...]):
        self.root, self.names = root, names
        self.features: dict[str, torch.Tensor] = {}
        self.handles = []

    def __enter__(self) -> FeatureHooks:
        self.features = {}
        for name in self.names:
            try:
                module = self.root.get_submodule(name)
            except AttributeError:
                raise F2IError(f"feature layer {name!r}: no such module in "
                               f"{type(self.root).__name__}") from None
            self.handles.append(module.register_forward_hook(self._keeper(name)))
        return self

    def _keeper(self, name: str):
        def keep(module, args, output):
            self.features[name] = output if torch.is_tensor(output) else output[0]
        return keep

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


@torch.no_grad()
def feature_widths(model: F2IDiffSR, names: tuple[str, ...]) -> dict[str, int]:
    """The channel count of each named layer's output, from one forward at the smallest LR."""
    side = 2 * lr_multiple(model.config)
    device = next(model.parameters()).device
    with FeatureHooks(model, names) as hooks:
        model(torch.rand(1, 3, side, side, device=device))
    missing = [n for n in names if n not in hooks.features]
    if missing:
        raise F2IError(f"feature layer {missing[0]!r} does not run in the one-step forward")
    return {n: hooks.features[n].shape[1] for n in names}


def feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE relative to the teacher feature's mean square: layers of very different magnitude
    then weigh alike."""
    teacher = teacher.detach()
    return F.mse_loss(student, teacher) / teacher.pow(2).mean().clamp_min(1e-6)


def perceptual(model: F2IDiffSR, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The SR stage's perceptual term: MSE of the (frozen) conditioner's tokens."""
    return F.mse_loss(model.conditioner(image), model.conditioner(target).detach())


class DistillStage(Stage):
    name = "distill"

    def __init__(self, model: F2IDiffSR, cfg: TrainConfig, teacher: F2IDiffSR):
        super().__init__(model, cfg)
        # Not a submodule: frozen, so neither optimised, nor wrapped by DDP, nor in state.pt.
        object.__setattr__(self, "teacher", teacher.eval())
        for p in teacher.parameters():
            p.requires_grad_(False)
        for p in (*model.vae.parameters(), *model.unet.parameters()):
            p.requires_grad_(True)
        self.pairs = cfg.distill.feature_layers or default_feature_layers(model.config)
        teacher_widths = feature_widths(teacher, tuple(t for t, _ in self.pairs))
        student_widths = feature_widths(model, tuple(s for _, s in self.pairs))
        self.projections = nn.ModuleList(
            nn.Conv2d(student_widths[s], teacher_widths[t], 1)
            if student_widths[s] != teacher_widths[t] else nn.Identity()
            for t, s in self.pairs)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def saved_model(self) -> F2IDiffSR:
        """The student as it is kept: every annealed block's heavy path dropped (mid-run, the
        light path alone, whatever `a` is)."""
        for wrapper in annealed(self.model.unet):
            wrapper.local = None  # a graph's tensor: it cannot be copied
        model = copy.deepcopy(self.model)
        drop_heavy(model.unet)
        return model

    def _teacher(self, device: torch.device) -> F2IDiffSR:
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        return self.teacher

    def forward(self, batch, gen):
        step = int(self.step)
        self.step += 1
        d = self.cfg.distill
        teacher = self._teacher(batch["hr"].device)
        if step < d.lite_steps:
            return self.lite_loss(teacher, batch)
        a = anneal_factor(step - d.lite_steps, d.anneal_start, d.anneal_steps, d.anneal_shape)
        set_factor(self.model.unet, a)
        loss, logs = self.end_to_end_loss(teacher, batch)
        return loss, logs | {"a": a}

    def lite_loss(self, teacher: F2IDiffSR, batch: dict) -> tuple[torch.Tensor, dict]:
        """LiteED against the teacher VAE: its encoder's latents of the LR input, the HR crop
        from the teacher VAE's own latent of it, and the teacher decoder's SR image."""
        d, m, lr, hr = self.cfg.distill, self.model, batch["lr"], batch["hr"]
        ts, ss = teacher.stages(), m.stages()
        with torch.no_grad():
            t_latent = ts["encoder"](lr)
            with adapters_off(teacher.vae):  # the VAE's own encoder, not the SR-tuned one
                z_hr = teacher.vae.encode(hr * 2 - 1).latent_dist.mean
            t_sr_latent = ts["unet"](t_latent, teacher.condition(lr))
            t_sr = ts["decoder"](t_sr_latent)
        s = m.config.vae.scaling_factor  # latent terms on unit-variance (scaled) latents
        encoder = F.mse_loss(ss["encoder"](lr) * s, t_latent * s)
        recon_image = ss["decoder"](z_hr)
        recon = F.l1_loss(recon_image, hr)
        perc = perceptual(m, recon_image, hr) if self.cfg.perceptual_weight else hr.new_zeros(())
        decoder = F.l1_loss(ss["decoder"](t_sr_latent), t_sr)
        loss = d.encoder_weight * encoder + d.recon_weight * recon \
            + self.cfg.perceptual_weight * perc + d.decoder_weight * decoder
        return loss, {"enc": encoder.item(), "recon": recon.item(), "perc": perc.item(),
                      "dec": decoder.item()}

    def end_to_end_loss(self, teacher: F2IDiffSR, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg, d, m, lr, hr = self.cfg, self.cfg.distill, self.model, batch["lr"], batch["hr"]
        ts, ss = teacher.stages(), m.stages()
        with torch.no_grad(), FeatureHooks(teacher, tuple(t for t, _ in self.pairs)) as th:
            tokens = teacher.condition(lr)
            t_latent = ts["unet"](ts["encoder"](lr), tokens)
            t_sr = ts["decoder"](t_latent)
        with FeatureHooks(m, tuple(s for _, s in self.pairs)) as sh:
            s_latent = ss["unet"](ss["encoder"](lr), tokens)
            sr = ss["decoder"](s_latent)
        output = F.l1_loss(sr, t_sr)
        s = m.config.vae.scaling_factor
        latent = F.mse_loss(s_latent * s, t_latent * s)
        feature = torch.stack([
            feature_loss(proj(sh.features[s]), th.features[t])
            for proj, (t, s) in zip(self.projections, self.pairs, strict=True)]).mean() \
            if d.feature_weight and self.pairs else sr.new_zeros(())
        local_terms = [w.local for w in annealed(m.unet) if w.local is not None]
        local = torch.stack(local_terms).mean() if local_terms else sr.new_zeros(())
        pixel = F.mse_loss(sr, hr)
        color = F.mse_loss(low_pass(sr), low_pass(hr)) if cfg.color_weight else sr.new_zeros(())
        perc = perceptual(m, sr, hr) if cfg.perceptual_weight else sr.new_zeros(())
        loss = d.output_weight * output + d.latent_weight * latent + d.feature_weight * feature \
            + d.local_weight * local + cfg.pixel_weight * pixel + cfg.color_weight * color \
            + cfg.perceptual_weight * perc
        return loss, {"out": output.item(), "lat": latent.item(), "feat": feature.item(),
                      "local": local.item(), "pixel": pixel.item(), "color": color.item(),
                      "perc": perc.item()}


def run_distill(cfg: TrainConfig, out: str | Path, teacher: str | None = None,
                student: str = "pocket", data: str | None = None, resume: bool = False,
                progress: bool = True) -> Path:
    """`f2i-mobile distill`: teacher (a folder or bundled name; default `mobile`) -> student
    (`student_config`), trained by the core's loop; returns RUN/model."""
    if cfg.stage != "distill":
        raise F2IError(f"run_distill takes a distill TrainConfig, not {cfg.stage!r}")
    teacher_model = load_model(teacher)
    config = student_config(student, teacher_model.config)
    model = build_student(teacher_model, config, seed=cfg.seed, annealing=cfg.distill.anneal)
    model.metadata = {
        "origin": f"f2i-mobile distill: {teacher or 'mobile'} -> {config.name}, "
                  f"{cfg.max_steps} steps ({cfg.distill.lite_steps} LiteED), seed {cfg.seed}, "
                  f"data {data or 'bundled'}",
        "teacher": str(teacher or "mobile"),
    }
    images = load_images(data)
    return train(model, cfg, images, out, resume=resume, frozen_conditioner=True,
                 progress=progress, build=lambda m, c, _: DistillStage(m, c, teacher_model))
