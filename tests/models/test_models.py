"""The models: presets, budgets, the one-step math, LoRA and the checkpoint format."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from f2i_mobile.core.errors import F2IError
from f2i_mobile.models import (
    PRESETS,
    BicubicUpsample,
    F2IConfig,
    build_model,
    from_pretrained,
    merge_lora,
    preset,
    save_pretrained,
)
from f2i_mobile.models.graphs import count_flops, count_params
from f2i_mobile.models.lora import has_lora


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_runs_a_tile(name):
    config = preset(name)
    device = "meta" if name in ("full", "eff") else "cpu"  # full is 1.25 B parameters
    with torch.device(device):
        model = build_model(config, lora=name in ("mobile", "tiny"))
        lr = torch.rand(1, 3, config.tile, config.tile)
        with torch.no_grad():
            out = model(lr)
    assert out.shape == (1, 3, config.tile * config.scale, config.tile * config.scale)
    if device == "cpu":
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_mobile_fits_its_budget():
    model = build_model(preset("mobile"))
    params = sum(v for g, v in count_params(model).items() if g != "statistics")  # shared
    gflops = sum(v for g, v in count_flops(model, tile=128).items()
                 if g != "statistics") / 1e9  # 128 LR -> one 512x512 tile; statistics per photo
    assert params <= 10e6, params
    assert gflops <= 100, gflops


def test_eff_unet_is_about_half_of_full():
    with torch.device("meta"):
        full = build_model(preset("full"), lora=False)
        eff = build_model(preset("eff"), lora=False)
    ratio = count_params(eff)["unet"] / count_params(full)["unet"]
    assert 0.4 <= ratio <= 0.6, ratio
    assert count_params(full)["unet"] == pytest.approx(866e6, rel=0.01)  # SD2.1's U-Net
    assert count_params(full)["conditioner"] == pytest.approx(304e6, rel=0.01)  # DINOv2-large


def test_config_json_round_trip_and_errors():
    config = preset("mobile")
    again = F2IConfig.from_dict(json.loads(config.to_json()))
    assert again == config and again.hash() == config.hash()
    assert preset("tiny").hash() != config.hash()
    with pytest.raises(F2IError, match="unknown field"):
        F2IConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(F2IError, match="prediction_type"):
        config.replace(prediction_type="sample")
    with pytest.raises(F2IError, match="unknown preset"):
        preset("huge")


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_bicubic_upsample_is_torch_bicubic(scale):
    x = torch.rand(2, 3, 11, 7)
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert torch.allclose(BicubicUpsample(scale)(x), ref, atol=2e-6)


def test_one_step_constants_match_the_hand_computed_osediff_case():
    step = build_model(preset("tiny")).one_step
    # Scaled-linear schedule 0.00085..0.012 over 1000 steps, t* = 999 (OSEDiff's reference values).
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = float(torch.prod(1 - betas))
    assert step.alpha_bar == pytest.approx(abar, rel=1e-4)
    assert step.alpha_bar == pytest.approx(0.004660, abs=5e-6)
    z, eps = torch.tensor(1.0), torch.tensor(0.5)
    # z_H = (z_L - 0.99767 eps) / 0.06826, by hand:
    assert float(step.update(z, eps)) == pytest.approx((1 - 0.99767 * 0.5) / 0.06826, rel=1e-3)


def test_one_step_forward_matches_diffusers_reference(tiny_model):
    """The whole forward, recomputed through diffusers' public API: VAE encode/decode and the
    scheduler's own x0 formula at t*."""
    model = tiny_model
    lr = torch.rand(2, 3, 16, 12)
    s = model.config.vae.scaling_factor
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, num_train_timesteps=1000,
                              clip_sample=False)
    with torch.no_grad():
        x_up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
        z_l = model.vae.encode(x_up * 2 - 1).latent_dist.mode() * s
        tokens = model.conditioner(lr)
        eps = model.unet(z_l, 999, encoder_hidden_states=tokens).sample
        z_h = scheduler.step(eps, 999, z_l).pred_original_sample
        ref = (model.vae.decode(z_h / s).sample.clamp(-1, 1) + 1) / 2
        out = model(lr)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


def test_v_prediction_update():
    step = build_model(preset("tiny").replace(prediction_type="v_prediction", timestep=500)).one_step
    a, b = math.sqrt(step.alpha_bar), math.sqrt(1 - step.alpha_bar)
    assert float(step.update(torch.tensor(2.0), torch.tensor(1.0))) == pytest.approx(2 * a - b)


def test_lora_merge_matches_unmerged(tiny_model):
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = tiny_model(lr)
        merged = build_model(tiny_model.config)
        merged.load_state_dict(tiny_model.state_dict())
        assert has_lora(merged.unet) and has_lora(merged.vae)
        merge_lora(merged.unet), merge_lora(merged.vae)
        after = merged(lr)
    assert not has_lora(merged.unet) and not has_lora(merged.vae)
    assert torch.allclose(before, after, atol=1e-5), (before - after).abs().max()


def test_lora_changes_the_output(tiny_model):
    """The adapters are live: the same base weights without them give another image."""
    plain = build_model(tiny_model.config, lora=False)
    own = {k.replace(".base_layer.", "."): v for k, v in tiny_model.state_dict().items()
           if "lora_" not in k}
    plain.load_state_dict(own)
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (plain(lr) - tiny_model(lr)).abs().max() > 1e-4


def test_only_the_vae_encoder_gets_lora(tiny_model):
    names = [n for n, _ in tiny_model.vae.named_parameters() if "lora_" in n]
    assert names and all(n.startswith(("encoder.", "quant_conv.")) for n in names)


def test_checkpoint_round_trip_is_bit_exact(tiny_model, tiny_checkpoint):
    loaded = from_pretrained(tiny_checkpoint)
    assert loaded.config == tiny_model.config
    ours, theirs = tiny_model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(tiny_model(lr), loaded(lr))


def test_adapter_targets_are_written_in_a_fixed_order(tiny_checkpoint):
    """peft holds the target modules in a set and would write them in the order of the
    process's string hashing, so the same model saved by two processes would differ in bytes;
    the default path keys its cache of exported graphs by the checkpoint's content."""
    targets = json.loads((tiny_checkpoint / "lora" / "unet" / "adapter_config.json")
                         .read_text())["target_modules"]  # the VAE's are one regular expression
    assert len(targets) > 2 and targets == sorted(targets)


def test_checkpoint_layout_is_diffusers_and_peft(tiny_checkpoint):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig

    assert (tiny_checkpoint / "f2i_config.json").is_file()
    UNet2DConditionModel.from_pretrained(tiny_checkpoint / "unet")  # loads as it is
    AutoencoderKL.from_pretrained(tiny_checkpoint / "vae")
    for part in ("unet", "vae_encoder"):
        folder = tiny_checkpoint / "lora" / part
        assert LoraConfig.from_pretrained(str(folder)).r == 2
        assert (folder / "adapter_model.safetensors").is_file()
    assert not list(tiny_checkpoint.rglob("*.bin")) and not list(tiny_checkpoint.rglob("*.pt"))


def test_fp16_checkpoint_is_half_the_size(tiny_model, tmp_path):
    full = save_pretrained(tiny_model, tmp_path / "fp32")
    half = save_pretrained(tiny_model, tmp_path / "fp16", dtype=torch.float16)
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*.safetensors"))  # noqa: E731
    assert size(half) < 0.6 * size(full)
    loaded = from_pretrained(half)
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (loaded(lr) - tiny_model(lr)).abs().max() < 1e-2


def test_save_over_an_existing_checkpoint_replaces_it(tiny_model, tmp_path):
    target = tmp_path / "ckpt"
    save_pretrained(tiny_model, target)
    (target / "stale.txt").write_text("old")
    save_pretrained(tiny_model, target)
    assert not (target / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp folders left behind


@pytest.mark.parametrize("damage, message", [
    ("missing_dir", "does not exist"),
    ("no_config", "not an f2i-mobile checkpoint"),
    ("bad_json", "not valid JSON"),
    ("missing_weights", "incomplete"),
    ("corrupt_weights", "not a readable safetensors"),
])
def test_broken_checkpoints_are_one_line_errors(tiny_model, tmp_path, damage, message):
    folder = save_pretrained(tiny_model, tmp_path / "ckpt")
    target = folder
    if damage == "missing_dir":
        target = tmp_path / "nowhere"
    elif damage == "no_config":
        (folder / "f2i_config.json").unlink()
    elif damage == "bad_json":
        (folder / "f2i_config.json").write_text("{not json")
    elif damage == "missing_weights":
        (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    elif damage == "corrupt_weights":
        (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(F2IError, match=message) as info:
        from_pretrained(target)
    assert "\n" not in str(info.value)


def test_missing_real_weights_say_what_to_pass(tmp_path):
    with pytest.raises(F2IError, match="facebook/dinov2-large"):
        build_model(preset("tiny"), dinov2=tmp_path / "dinov2")
    with pytest.raises(F2IError, match="AutoencoderKL"):
        build_model(preset("tiny"), vae=tmp_path / "vae")


def test_real_dinov2_folder_loads_and_is_resampled_to_the_conditioner_size(tmp_path):
    """A Hugging Face-layout DINOv2 folder (here a small one written by transformers) loads,
    and its position embeddings are resampled once from 518 px to the conditioner's input."""
    from transformers import Dinov2Config, Dinov2Model

    config = preset("tiny")
    hf = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  patch_size=14, image_size=518))
    hf.save_pretrained(tmp_path / "dinov2", safe_serialization=True)
    model = build_model(config, dinov2=tmp_path / "dinov2")
    backbone = model.conditioner.backbone
    assert backbone.config.image_size == config.conditioner.image_size
    assert backbone.embeddings.position_embeddings.shape[1] == config.conditioner.num_tokens
    assert torch.equal(backbone.embeddings.patch_embeddings.projection.weight,
                       hf.embeddings.patch_embeddings.projection.weight)
    tokens = model.conditioner(torch.rand(1, 3, 16, 16))
    assert tokens.shape == (1, config.conditioner.num_tokens, config.cross_attention_dim)


def test_text_conditioner_baseline_runs(tmp_path):
    config = preset("tiny")
    text = config.replace(conditioner=config.conditioner.__class__(
        **{**config.conditioner.__dict__, "kind": "text"}))
    model = build_model(text)
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        cat, dog = model(lr, prompts=["a cat"]), model(lr, prompts=["a dog"])
    assert cat.shape == (1, 3, 64, 64)
    assert (cat - dog).abs().max() > 0  # the prompt reaches the U-Net
    loaded = from_pretrained(save_pretrained(model, tmp_path / "t2i"))
    assert loaded.conditioner.input_kind == "text"


def test_sizes_the_vae_cannot_take_are_refused():
    model = build_model(preset("mobile"))
    multiple = model.config.pixel_multiple
    with pytest.raises(F2IError, match=f"multiple of {multiple}"):
        model(torch.rand(1, 3, multiple // 4 + 1, multiple // 4))
