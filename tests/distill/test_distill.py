"""PocketSR distillation on `tiny`: the annealing wrapper and its schedule, feature hooks on
named layers, the student's fit to its teacher, exact resume, and a distilled model that loads
and exports through the same graphs."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import CLI
from diffusers.models.resnet import ResnetBlock2D
from safetensors.torch import load_file

from f2i_mobile.core.errors import F2IError
from f2i_mobile.models import build_model, load_model, preset
from f2i_mobile.models.anneal import Annealed, anneal_factor, annealed, drop_heavy
from f2i_mobile.models.config import F2IConfig, pocket_of
from f2i_mobile.models.lite import LightResBlock, LiteAutoencoder, SkipAttention
from f2i_mobile.train.config import default_train_config
from f2i_mobile.train.distill import (
    FeatureHooks,
    build_student,
    default_feature_layers,
    run_distill,
    student_config,
)

STEPS, LITE, ANNEAL = 4, 1, 2  # LiteED alone at step 0, then a = 1, 0.5, 0 ...


def tiny_cfg(max_steps: int = STEPS):
    cfg = default_train_config("distill").replace(max_steps=max_steps, batch=2, crop=32,
                                                  checkpoint_every=2)
    return cfg.replace(distill=replace(cfg.distill, lite_steps=LITE, anneal_steps=ANNEAL))


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint (LoRA randomised) distilled into its pocket student, uninterrupted."""
    out = tmp_path_factory.mktemp("distill") / "run"
    run_distill(tiny_cfg(), out, teacher=str(tiny_checkpoint), progress=False)
    return out


def _randomize(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def _pair():
    heavy = ResnetBlock2D(in_channels=16, out_channels=32, temb_channels=24, groups=8)
    light = LightResBlock.like(heavy, 1.0)
    _randomize(light, 1)  # a fresh light block is its shortcut; give it a path of its own
    x, temb = torch.randn(2, 16, 8, 8), torch.randn(2, 24)
    return heavy, light, x, temb


@pytest.mark.parametrize("training", [False, True])
def test_annealed_block_is_heavy_at_1_light_at_0_and_the_mix_between(training):
    heavy, light, x, temb = _pair()
    wrapper = Annealed(heavy, light).train(training)
    h, g = heavy(x, temb), light(x, temb)
    assert not torch.allclose(h, g, atol=1e-3)
    wrapper.a = 1.0
    assert torch.equal(wrapper(x, temb), h)
    wrapper.a = 0.0
    assert torch.equal(wrapper(x, temb), g)
    wrapper.a = 0.25
    torch.testing.assert_close(wrapper(x, temb), 0.25 * h + 0.75 * g)
    # in training the light path learns the heavy one's output while it is still hidden
    wrapper.a = 1.0
    wrapper(x, temb)
    assert (wrapper.local is not None) == training


def test_heavy_path_does_not_run_at_0_and_is_dropped():
    heavy, light, x, temb = _pair()
    calls = []
    heavy.register_forward_hook(lambda *_: calls.append(1))
    root = torch.nn.Sequential(Annealed(heavy, light))
    root[0].a = 0.0
    root[0](x, temb)
    assert not calls
    drop_heavy(root)
    assert root[0] is light and not annealed(root)


def test_removed_attention_passes_its_input_in_both_return_forms():
    x = torch.randn(1, 8, 4, 4)
    skip = SkipAttention()
    assert skip(x, encoder_hidden_states=None, return_dict=False)[0] is x
    assert skip(x).sample is x


@pytest.mark.parametrize("shape", ["cosine", "linear"])
def test_annealing_schedule(shape):
    start, steps = 3, 10
    values = [anneal_factor(s, start, steps, shape) for s in range(20)]
    assert values[:start + 1] == [1.0] * (start + 1)
    assert values[start + steps:] == [0.0] * (20 - start - steps)
    assert values[start + steps // 2] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert all(0.0 < v < 1.0 for v in values[start + 1:start + steps])
    if shape == "cosine":  # slow at both ends
        assert 1 - values[start + 1] < values[start + 5] - values[start + 6]
    assert anneal_factor(5, 0, 0, shape) == 0.0  # no annealing steps: light at once
    with pytest.raises(F2IError):
        anneal_factor(0, 0, 1, "step")


def test_feature_hooks_capture_the_named_layers_and_go_away():
    model = build_model(pocket_of(preset("tiny")), seed=0, lora=False)
    names = ("unet.conv_in", "unet.down_blocks.0", "unet.mid_block", "vae.decoder.up_blocks.0")
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad(), FeatureHooks(model, names) as hooks:
        model(lr)
        latent = model.stages()["encoder"](lr) * model.config.vae.scaling_factor
        conv_in = model.unet.conv_in(latent)
    assert set(hooks.features) == set(names)
    torch.testing.assert_close(hooks.features["unet.conv_in"], conv_in)
    # a down block returns (hidden, skips): the hidden state is kept
    assert hooks.features["unet.down_blocks.0"].shape[1] == model.config.unet.block_out_channels[0]
    assert hooks.features["vae.decoder.up_blocks.0"].shape[-1] == 2 * latent.shape[-1]
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(F2IError, match="no such module"), FeatureHooks(model, ("unet.nope",)):
        pass


def test_default_feature_layers_name_real_layers_in_teacher_and_student():
    teacher, student = preset("tiny"), pocket_of(preset("tiny"))
    pairs = default_feature_layers(student)
    assert ("vae.decoder.up_blocks.1", "vae.decoder.up_blocks.1") in pairs
    for config in (teacher, student):
        model = build_model(config, lora=False)
        for name, _ in pairs:
            model.get_submodule(name)


def test_pocket_preset_is_mobile_with_lite_parts_and_keeps_old_hashes():
    mobile, pocket = preset("mobile"), preset("pocket")
    assert pocket.vae.lite is not None and pocket.unet.light_blocks
    assert F2IConfig.from_dict(pocket.to_dict()) == pocket
    # configs without the new fields are written as before, so their hashes stay
    assert "lite" not in mobile.to_dict()["vae"]
    assert "light_blocks" not in mobile.to_dict()["unet"]
    student_config("pocket", mobile)  # fits its teacher


def test_pocket_is_at_most_30_gflops_per_tile():
    from f2i_mobile.models.info import model_report

    assert model_report(preset_name="pocket")["total_gflops_per_tile"] <= 30.0


def test_student_must_fit_its_teacher():
    with pytest.raises(F2IError, match="does not fit"):
        student_config("mobile", preset("tiny"))
    with pytest.raises(F2IError, match="not a preset"):
        student_config("/no/such/file.json", preset("tiny"))


def test_student_starts_as_the_teacher_where_it_kept_the_teacher(tiny_model):
    student = build_student(tiny_model, pocket_of(tiny_model.config))
    assert isinstance(student.vae, LiteAutoencoder)
    wrappers = annealed(student.unet)
    assert len(wrappers) == len(student.config.unet.light_blocks)
    # at a = 1 the student's U-Net is the teacher's (adapters merged), block for block
    tokens = tiny_model.condition(torch.rand(1, 3, 8, 8))
    z = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        ref = tiny_model.unet(z, 999, encoder_hidden_states=tokens).sample
        out = student.unet(z, 999, encoder_hidden_states=tokens).sample
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def _tensors(folder):
    return {**{f"unet.{k}": v for k, v in load_file(folder / "unet" /
                                                   "diffusion_pytorch_model.safetensors").items()},
            **{f"vae.{k}": v for k, v in load_file(folder / "vae" /
                                                  "diffusion_pytorch_model.safetensors").items()}}


def test_resume_gives_the_weights_of_an_uninterrupted_run(distilled, tmp_path, tiny_checkpoint):
    out = tmp_path / "run"
    run_distill(tiny_cfg(2), out, teacher=str(tiny_checkpoint), progress=False)
    run_distill(tiny_cfg(STEPS), out, teacher=str(tiny_checkpoint), resume=True, progress=False)
    a, b = _tensors(distilled / "model"), _tensors(out / "model")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    sa = torch.load(distilled / "checkpoints" / "step-0000004" / "state.pt", weights_only=True)
    sb = torch.load(out / "checkpoints" / "step-0000004" / "state.pt", weights_only=True)
    for key, value in sa["nets"]["generator"].items():
        assert torch.equal(value, sb["nets"]["generator"][key]), key
    assert int(sb["nets"]["generator"]["step"]) == STEPS


def test_resume_with_annealing_switched_is_one_line(distilled, tmp_path, tiny_checkpoint):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(distilled / "checkpoints", out / "checkpoints")
    cfg = tiny_cfg(STEPS + 2)
    cfg = cfg.replace(distill=replace(cfg.distill, anneal=False))
    with pytest.raises(F2IError, match="does not fit this run"):
        run_distill(cfg, out, teacher=str(tiny_checkpoint), resume=True, progress=False)


def test_distilled_model_loads_without_heavy_paths(distilled, tiny_checkpoint):
    model = load_model(distilled / "model")
    assert model.config.name == "tiny-pocket" and isinstance(model.vae, LiteAutoencoder)
    assert not annealed(model)
    assert not any("heavy" in k for k in _tensors(distilled / "model"))
    assert model.metadata["teacher"] == str(tiny_checkpoint)
    sr = model(torch.rand(1, 3, 8, 8))
    assert sr.shape == (1, 3, 32, 32) and torch.isfinite(sr).all()
    # LiteED answers encode/decode as AutoencoderKL does (eval's reconstruction ceiling uses it)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        posterior = model.vae.encode(x).latent_dist
        recon = model.vae.decode(posterior.mean).sample
        latent = model.stages()["encoder"](torch.rand(1, 3, 4, 4))
    assert posterior.mean.shape == (1, model.config.vae.latent_channels, 8, 8)
    assert recon.shape == x.shape and latent.shape == (1, 4, 8, 8)


@pytest.mark.parametrize("graph", ["decoder", pytest.param("unet", marks=pytest.mark.slow)])
def test_distilled_graphs_lower_to_onnx_and_run_as_in_torch(distilled, tmp_path, graph):
    """The graphs that hold the new modules (light U-Net blocks; LiteED, whose encoder is the
    decoder's mirror), lowered as export lowers them, with their statistics as inputs, run in
    ONNX Runtime."""
    import onnxruntime as ort

    from f2i_mobile.export.onnx import lower
    from f2i_mobile.models.graphs import example_inputs, graph_modules, graph_specs

    model = load_model(distilled / "model")
    spec = graph_specs(model.config)[graph]
    module = graph_modules(model)[graph]
    lower(module, spec, tmp_path / f"{graph}.onnx", "fp32")
    inputs = example_inputs(spec, seed=1)
    session = ort.InferenceSession(str(tmp_path / f"{graph}.onnx"),
                                   providers=["CPUExecutionProvider"])
    [got] = session.run(None, {t.name: x.numpy() for t, x in zip(spec.inputs, inputs,
                                                                 strict=True)})
    with torch.no_grad():
        ref = module(*inputs).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_distilled_model_exports_to_onnx_and_matches_torch(distilled, tmp_path):
    from f2i_mobile.core.fidelity import Status
    from f2i_mobile.export.lowering import check_backends
    from f2i_mobile.export.parity import check_all
    from f2i_mobile.export.pipeline import export_model

    model = load_model(distilled / "model")
    manifest, failures = export_model(model, tmp_path / "export", check_backends("onnx"),
                                      progress=False)
    assert not failures, [str(f) for f in failures]
    assert manifest.model.name == "tiny-pocket"
    # LiteED's GroupNorms are in the statistics contract like the AutoencoderKL's
    assert any(n.name.startswith("decoder.up_blocks") for n in manifest.tiling.statistics["decoder"])
    results = [r for r in check_all(model, tmp_path / "export").checks if r.backend == "onnx"]
    assert results and all(r.status == Status.PASS for r in results), results


def test_cli_says_in_one_line_when_the_student_does_not_fit(tmp_path, tiny_checkpoint):
    r = subprocess.run(CLI + ["distill", "--teacher", str(tiny_checkpoint), "--student", "mobile",
                              "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "does not fit" in r.stderr, r.stderr
    assert not (tmp_path / "run" / "model").exists()


def test_cli_distills_and_info_reads_the_result(tmp_path, tiny_checkpoint, capsys):
    from f2i_mobile.cli import main

    out = tmp_path / "run"
    assert main(["distill", "--teacher", str(tiny_checkpoint), "--out", str(out), "--quiet",
                 "--max-steps", "2", "--lite-steps", "1", "--anneal-steps", "1", "--batch", "1",
                 "--crop", "16", "--no-anneal", "--feature-weight", "0"]) == 0
    trainer = (out / "checkpoints" / "step-0000002" / "trainer.json").read_text()
    assert '"anneal": false' in trainer and '"feature_weight": 0.0' in trainer
    capsys.readouterr()
    assert main(["info", "--model", str(out / "model"), "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["name"] == "tiny-pocket"
    assert report["total_gflops_per_tile"] < 0.27  # tiny's own


def test_block_table_costs_and_sensitivities(tiny_model):
    from f2i_mobile.train.distill import block_table, candidate_blocks

    rows = block_table(tiny_model, torch.rand(1, 3, 8, 8))
    assert [r["block"] for r in rows] == candidate_blocks(tiny_model.config)
    assert {r["kind"] for r in rows} == {"ResnetBlock2D", "Transformer2DModel"}
    for r in rows:
        assert 0 <= r["gflops_light"] < r["gflops"], r  # light or removed: cheaper
        assert np.isfinite(r["psnr_without"]), r
    pocket = pocket_of(tiny_model.config)
    assert set(pocket.unet.light_blocks) <= {r["block"] for r in rows}


def test_a_student_config_file_with_removed_attention_and_resize_resampling(tmp_path,
                                                                             tiny_checkpoint):
    import json

    teacher = load_model(tiny_checkpoint).config
    base = pocket_of(teacher)
    custom = replace(
        base, name="tiny-custom",
        vae=replace(base.vae, lite=replace(base.vae.lite, resample="resize", blocks_per_level=1)),
        unet=replace(base.unet, light_width=0.5,
                     light_blocks=("down_blocks.0.attentions.0", "up_blocks.1.resnets.0")))
    path = tmp_path / "student.json"
    path.write_text(json.dumps({"config": custom.to_dict()}))
    assert student_config(str(path), teacher) == custom
    out = run_distill(tiny_cfg(2), tmp_path / "run", teacher=str(tiny_checkpoint),
                      student=str(path), progress=False)
    model = load_model(out)
    assert model.config == custom
    assert isinstance(model.unet.get_submodule("down_blocks.0.attentions.0"), SkipAttention)
    light = model.unet.get_submodule("up_blocks.1.resnets.0")
    assert isinstance(light, LightResBlock) and light.dw.out_channels == light.out_channels // 2
    assert torch.isfinite(model(torch.rand(1, 3, 8, 8))).all()


@pytest.mark.parametrize("name", ["eff", "full"])
def test_the_pocket_recipe_applies_to_the_sd_sized_presets(name):
    """LiteED in SD's f8 latent space and light blocks at the named places of the SD-sized
    U-Nets: the student builds (on the meta device) and fits its teacher."""
    teacher = preset(name)
    student = student_config("pocket", teacher)
    with torch.device("meta"):
        model = build_model(student, lora=False)
    assert isinstance(model.vae, LiteAutoencoder)
    assert all(isinstance(model.unet.get_submodule(n), LightResBlock)
               for n in student.unet.light_blocks)


def test_the_bundled_pocket_is_mobile_distilled():
    """`pocket` ships beside `mobile`: the PocketSR recipe applied to the bundled teacher, at
    most 30 GFLOPs per tile, and on a held-out photo its output follows its teacher's, which
    the same architecture fresh from `build_student` (LiteED and light blocks untrained) does
    not."""
    from f2i_mobile.core.fidelity import psnr
    from f2i_mobile.core.imaging import bicubic_downscale
    from f2i_mobile.evaluate import eval_images
    from f2i_mobile.models.info import model_report
    from f2i_mobile.train.distill import build_student

    teacher, pocket = load_model("mobile").eval(), load_model("pocket").eval()
    assert pocket.config == student_config("pocket", teacher.config)
    assert model_report("pocket")["total_gflops_per_tile"] <= 30.0
    fresh = build_student(teacher, pocket.config).eval()
    hr = next(i for i in eval_images(None) if i.name == "camera").pixels[:128, :128]
    lr = torch.from_numpy(bicubic_downscale(hr, 4).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        target, distilled, untrained = (m(lr)[0].numpy() for m in (teacher, pocket, fresh))
    assert psnr(distilled, target, 1.0) >= 27.0
    assert psnr(untrained, target, 1.0) < psnr(distilled, target, 1.0) - 6.0
