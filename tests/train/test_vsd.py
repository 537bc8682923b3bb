"""Variational score distillation as OSEDiff does it: a guided real score that training leaves
alone, a generator gradient from the fake toward the real score, and a fake score trained on its
own timestep and noise."""

from __future__ import annotations

import pytest
import torch

from f2i_mobile.core.samples import bundled_images
from f2i_mobile.models import build_model, preset
from f2i_mobile.train.config import TrainConfig
from f2i_mobile.train.data import Crops
from f2i_mobile.train.degrade import Degradation
from f2i_mobile.train.loop import train
from f2i_mobile.train.stages import adapters_off, build_stage, x0_from


@pytest.fixture(scope="module")
def images():
    return bundled_images(("astronaut",))


def sr_stage(**changes):
    model = build_model(preset("tiny"), seed=0, lora=False)
    return build_stage(model, TrainConfig("sr", crop=32, batch=2, **changes))


def probe(stage, seed: int = 0):
    """A latent, tokens of the conditioner's shape, and a VSD draw for them."""
    gen = torch.Generator().manual_seed(seed)
    c = stage.model.config
    z = torch.randn(2, c.vae.latent_channels, 8, 8, generator=gen)
    tokens = stage.model.condition(torch.rand(2, 3, 8, 8, generator=gen))
    tokens = tokens + 0.5 * torch.randn(tokens.shape, generator=gen)
    t, noise = stage.vsd_draw(z, gen)
    return z, tokens.detach(), t, noise


def randomize(parameters, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in parameters:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def test_the_real_score_is_guided_between_tokens_and_null_tokens():
    stage = sr_stage(vsd_cfg=3.0)
    randomize(stage.trainable(), 1)  # the generator's adapters must not leak into the real score
    z, tokens, t, noise = probe(stage)
    zt = stage.scheduler.add_noise(z, noise, t)
    unet, kind = stage.model.unet, stage.model.config.prediction_type
    with torch.no_grad(), adapters_off(unet):
        cond = unet(zt, t, encoder_hidden_states=tokens).sample
        uncond = unet(zt, t, encoder_hidden_states=torch.zeros_like(tokens)).sample
        real = stage.real_x0(zt, t, tokens)
    assert not torch.allclose(cond, uncond, atol=1e-4)  # null tokens do change the prediction
    expected = x0_from(stage.scheduler, kind, uncond + 3.0 * (cond - uncond), zt, t)
    assert torch.allclose(real, expected, atol=1e-4)


def test_the_generator_gradient_points_from_the_fake_toward_the_real_score():
    stage = sr_stage()
    randomize(stage.critic.trainable(), 2)  # a fake score that differs from the real one
    z, tokens, t, noise = probe(stage)
    z.requires_grad_(True)
    (grad,) = torch.autograd.grad(stage.vsd_loss(z, tokens, t, noise), z)
    zt = stage.scheduler.add_noise(z.detach(), noise, t)
    with torch.no_grad():
        direction = stage.critic.x0(zt, t, tokens) - stage.real_x0(zt, t, tokens)
    for g, d in zip(grad, direction):
        assert d.abs().max() > 1e-3
        # d loss / d z = c (x0_fake - x0_real) with c > 0: descent moves z toward the real x0.
        cosine = torch.nn.functional.cosine_similarity(g.flatten(), d.flatten(), dim=0)
        assert cosine > 0.9999, float(cosine)


def test_the_fake_score_trains_on_its_own_timestep_and_noise(images, monkeypatch):
    stage = sr_stage()
    batch = Crops(images, crop=32, batch=2, seed=0, degrade=Degradation())[0]
    noised = []
    add_noise = stage.scheduler.add_noise

    def record(z, noise, t):
        noised.append((noise, t))
        return add_noise(z, noise, t)

    monkeypatch.setattr(stage.scheduler, "add_noise", record)
    gen = torch.Generator().manual_seed(0)
    stage(batch, gen)
    loss, logs = stage.critic(*stage.critic_inputs, gen)
    assert len(noised) == 2 and "fake" in logs and loss.requires_grad
    (vsd_noise, vsd_t), (fake_noise, fake_t) = noised
    assert not torch.equal(vsd_noise, fake_noise) and not torch.equal(vsd_t, fake_t)
    # The critic's loss reaches only its own adapters, never the generator's.
    loss.backward()
    assert all(p.grad is not None for p in stage.critic.trainable())
    assert all(p.grad is None for p in stage.trainable())


def test_a_training_step_leaves_the_real_score_alone_and_trains_both_networks(tmp_path, images):
    model = build_model(preset("tiny"), seed=0, lora=False)
    z, tokens, t, _ = probe(sr_stage())
    with torch.no_grad():
        before = model.unet(z, t, encoder_hidden_states=tokens).sample
    cfg = TrainConfig("sr", max_steps=1, batch=2, crop=32, warmup_steps=0, vsd_weight=1.0)
    train(model, cfg, images, tmp_path, progress=False)
    unet = model.unet  # the stage trained it in place: it now carries the SR adapters
    with torch.no_grad():
        with adapters_off(unet):
            after = unet(z, t, encoder_hidden_states=tokens).sample
        adapted = unet(z, t, encoder_hidden_states=tokens).sample
    assert torch.equal(before, after)
    assert not torch.allclose(adapted, before, atol=1e-6)  # the step did move the generator
    state = torch.load(tmp_path / "checkpoints/step-0000001/state.pt", weights_only=True)
    critic_b = [v for k, v in state["nets"]["critic"].items() if "lora_B" in k]
    assert critic_b and any(v.abs().max() > 0 for v in critic_b)  # peft starts B at zero
    assert set(state["optimizers"]) == {"generator", "critic"}


def test_fm_trains_the_unconditional_score_on_null_tokens(images):
    batch = Crops(images, crop=32, batch=2, seed=0, degrade=Degradation())[0]

    def conditioner_grads(dropout: float) -> list[torch.Tensor | None]:
        model = build_model(preset("tiny"), seed=0, lora=False)
        stage = build_stage(model, TrainConfig("fm", cond_dropout=dropout))
        loss, _ = stage(batch, torch.Generator().manual_seed(0))
        loss.backward()
        return [p.grad for p in model.conditioner.parameters()]

    assert all(g is None or not g.any() for g in conditioner_grads(1.0))
    assert any(g is not None and g.any() for g in conditioner_grads(0.0))
