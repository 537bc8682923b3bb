"""FaithDiff as an SR training method, on the tiny preset: the alignment module, its two training
phases, the checkpoint that records the method, and the extra tensor through export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from f2i_mobile.core.contract import FEATURES
from f2i_mobile.models import build_model, from_pretrained, preset, save_pretrained
from f2i_mobile.models.align import AlignmentModule, aligned
from f2i_mobile.models.config import AlignConfig
from f2i_mobile.models.sr import LatentEncoder
from f2i_mobile.train.config import default_train_config
from f2i_mobile.train.run import run_stage
from f2i_mobile.train.stages import build_stage


def faithdiff_config(**align):
    return preset("tiny").replace(method="faithdiff", align=AlignConfig(**align))


@pytest.fixture(scope="module")
def foundation(tmp_path_factory):
    """What the sr stage starts from: a model without adapters (the fm stage's form)."""
    return save_pretrained(build_model(preset("tiny"), seed=0, lora=False),
                           tmp_path_factory.mktemp("fm") / "fm")


def sr_run(out, foundation, resume=False, **changes):
    cfg = default_train_config("sr").replace(batch=1, crop=32, method="faithdiff", **changes)
    return run_stage(cfg, str(out), init=str(foundation), resume=resume, progress=False)


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_faithdiff_alignment_module_shapes_and_identity_at_init():
    torch.manual_seed(0)
    config = faithdiff_config(width=24, convs=1, blocks=2, heads=3)
    align = AlignmentModule(config)
    h = torch.randn(2, config.unet.block_out_channels[0], 8, 8)
    features = torch.randn(2, config.vae.block_out_channels[-1], 8, 8)
    tokens = torch.randn(2, config.conditioner.num_tokens, config.cross_attention_dim)
    out = align(h, features, tokens)
    assert out.shape == h.shape
    assert torch.equal(out, h)  # zero-initialised projection: the identity on the U-Net
    # The residual carries the features once the projection is non-zero.
    with torch.no_grad():
        align.proj.weight.normal_(0, 0.1)
    moved = align(h, features, tokens)
    assert not torch.allclose(moved, h)
    assert not torch.allclose(moved, align(h, features + 1, tokens))
    # Inside the U-Net: at init the aligned U-Net predicts exactly what the foundation does.
    model = build_model(config, seed=0)
    base = build_model(preset("tiny"), seed=0, lora=False)
    model.unet.load_state_dict(base.unet.state_dict())
    z, t = torch.randn(1, 4, 32, 32), 999
    f = torch.randn(1, config.vae.block_out_channels[-1], 32, 32)
    c = tokens[:1]
    with torch.no_grad(), aligned(model.unet, model.align, f, c):
        got = model.unet(z, t, encoder_hidden_states=c).sample
        want = base.unet(z, t, encoder_hidden_states=c).sample
    assert torch.equal(got, want)
    # The ablation's last-layer features are the posterior moments: 2 x latent channels.
    last = build_model(faithdiff_config(features="last"), seed=0)
    latent, lq = last.stages()["encoder"](torch.rand(1, 3, 16, 16))
    assert lq.shape == (1, 2 * config.vae.latent_channels, 32, 32)
    assert torch.equal(lq[:, :config.vae.latent_channels], latent)


def test_faithdiff_phase1_trains_only_the_alignment_module(tmp_path, foundation):
    final = sr_run(tmp_path / "run", foundation, max_steps=2, align_steps=2)
    before = from_pretrained(foundation).state_dict()
    model = from_pretrained(final)
    after = model.state_dict()
    aligner = {k for k in after if k.startswith("align.")}
    assert aligner and set(after) - set(before) == aligner
    assert changed(before, after) == set()  # every other tensor byte for byte
    fresh = AlignmentModule(model.config).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in model.align.state_dict().items())
    assert model.config.method == "faithdiff"


def test_faithdiff_phase2_trains_encoder_alignment_and_unet_not_the_decoder(tmp_path, foundation):
    # Phase 1 for one step, then phase 2 resumed from its checkpoint for one more.
    first = sr_run(tmp_path / "run", foundation, max_steps=1, align_steps=1, checkpoint_every=1)
    before = from_pretrained(first).state_dict()
    final = sr_run(tmp_path / "run", foundation, max_steps=2, align_steps=1, checkpoint_every=1,
                   resume=True)
    after = from_pretrained(final).state_dict()
    moved = {k.split(".")[0] + "." + k.split(".")[1] for k in changed(before, after)}
    assert {"vae.encoder", "vae.quant_conv"} <= moved
    assert any(k.startswith("unet.") for k in moved) and any(k.startswith("align.")
                                                                 for k in moved)
    assert not any(k.startswith(("vae.decoder", "vae.post_quant_conv", "conditioner."))
                   for k in moved), moved


def test_faithdiff_latent_weight_holds_the_latent_to_the_frozen_encoders(foundation):
    """`latent_weight`: the MSE of the one-step latent to the latent the foundation's own
    encoder gives the HR crop; that encoder is a frozen copy, so the term's target stays put
    while the LQ encoder trains."""
    cfg = default_train_config("sr").replace(
        method="faithdiff", latent_weight=1.0, pixel_weight=0.0, perceptual_weight=0.0,
        color_weight=0.0, vsd_weight=0.0)
    model = from_pretrained(foundation)
    stage = build_stage(model, cfg)
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 32, 32)
    batch = {"hr": hr, "lr": F.avg_pool2d(hr, model.config.scale), "caption": ["x"]}
    loss, terms = stage(batch, torch.Generator().manual_seed(0))
    base = from_pretrained(foundation)
    with torch.no_grad():
        target = LatentEncoder(torch.nn.Identity(), base.vae)(hr) * base.config.vae.scaling_factor
        z = model.denoise(batch["lr"], model.condition(batch["lr"])) \
            * model.config.vae.scaling_factor
    assert loss.item() == pytest.approx(F.mse_loss(z, target).item(), rel=1e-5)
    assert terms["latent"] == pytest.approx(loss.item())
    loss.backward()
    assert model.vae.encoder.conv_in.weight.grad is not None  # the LQ encoder trains ...
    assert all(p.grad is None and not p.requires_grad for p in stage.hr_encoder.parameters())
    with torch.no_grad():  # ... and the target's encoder is not the model's
        model.vae.encoder.conv_in.weight.add_(1.0)
    assert torch.equal(stage.hr_encoder(hr) * model.config.vae.scaling_factor, target)
    # Off (the default): no frozen copy, no term.
    plain = build_stage(from_pretrained(foundation), cfg.replace(latent_weight=0.0))
    assert plain.hr_encoder is None
    assert "latent" not in plain(batch, torch.Generator().manual_seed(0))[1]
    from f2i_mobile.core.errors import F2IError

    with pytest.raises(F2IError, match="sr stage"):
        default_train_config("fm").replace(latent_weight=1.0)
    with pytest.raises(F2IError, match="negative"):
        cfg.replace(latent_weight=-1.0)


def test_faithdiff_lora_rank_puts_adapters_on_every_layer(tmp_path, foundation):
    final = sr_run(tmp_path / "run", foundation, max_steps=1, lora_rank=2)
    model = from_pretrained(final)
    from peft.tuners.lora import LoraLayer

    layers = [n for n, m in model.unet.named_modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and ".base_layer" not in n
              and "lora_" not in n]
    wrapped = {n for n, m in model.unet.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped and all(n in wrapped or any(n.startswith(w + ".") for w in wrapped)
                           for n in layers)
    # Round trip of an adapted faithdiff model gives the same SR.
    lr = torch.rand(1, 3, 16, 16)
    again = from_pretrained(save_pretrained(model, tmp_path / "again"))
    with torch.no_grad():
        assert torch.equal(model(lr), again(lr))


def test_faithdiff_checkpoint_round_trip_records_the_method(tmp_path):
    model = build_model(faithdiff_config(width=16, convs=1, blocks=1), seed=3)
    with torch.no_grad():
        model.align.proj.weight.normal_(0, 0.1)  # so the module matters to the output
    folder = save_pretrained(model, tmp_path / "faith")
    header = json.loads((folder / "f2i_config.json").read_text())
    assert header["config"]["method"] == "faithdiff"
    assert header["config"]["align"]["width"] == 16
    assert (folder / "align" / "model.safetensors").is_file()
    loaded = from_pretrained(folder)
    assert loaded.config == model.config and loaded.config.hash() == model.config.hash()
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(lr), model(lr))
    from f2i_mobile.models.info import format_model_report, model_report

    report = model_report(str(folder))
    assert report["method"] == "faithdiff"
    assert FEATURES in report["graphs"]["encoder"]["outputs"]
    assert list(report["graphs"]["unet"]["inputs"])[:2] == ["latent", FEATURES]
    assert "method       faithdiff" in format_model_report(report)
    # An OSEDiff checkpoint keeps the form (and hash) it had before methods existed.
    plain = save_pretrained(build_model(preset("tiny")), tmp_path / "plain")
    config = json.loads((plain / "f2i_config.json").read_text())["config"]
    assert "method" not in config and "align" not in config
    assert from_pretrained(plain).config.method == "osediff"
    # A faithdiff folder without its alignment module is refused in one line.
    (folder / "align" / "model.safetensors").unlink()
    from f2i_mobile.core.errors import F2IError

    with pytest.raises(F2IError, match="align"):
        from_pretrained(folder)


def test_faithdiff_encoder_graph_exports_the_lq_features_to_onnx(tmp_path):
    """The extra tensor through ONNX (the encoder graph, seconds; the whole export with parity
    end to end is in the slow tier below)."""
    import onnxruntime as ort

    from f2i_mobile.export.onnx import lower
    from f2i_mobile.models.graphs import graph_modules, graph_specs

    model = build_model(faithdiff_config(), seed=0)
    spec = graph_specs(model.config)["encoder"]
    assert spec.output_names == ("latent", FEATURES)
    module = graph_modules(model)["encoder"]
    lower(module, spec, tmp_path / "encoder.onnx", "fp32")
    session = ort.InferenceSession(str(tmp_path / "encoder.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["latent", FEATURES]
    inputs = spec.examples()
    got = session.run(None, inputs)
    with torch.no_grad():
        want = module(*(torch.from_numpy(inputs[n]) for n in spec.input_names))
    for g, w, t in zip(got, want, spec.outputs):
        assert g.shape == t.shape
        err = float(np.abs(g - w.numpy()).max())
        psnr = 10 * np.log10(float(np.square(w.numpy()).max()) / max(
            float(np.square(g - w.numpy()).mean()), 1e-30))
        assert psnr >= 60, (t.name, psnr, err)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # tile 16 cannot overlap the tiny model's field
def test_faithdiff_trained_checkpoint_exports_to_onnx_with_parity_and_tiled_upscale(
        tmp_path, foundation, capsys):
    """`train sr --method faithdiff` -> export -> parity -> the host bench -> a tiled upscale
    through ONNX Runtime that agrees with the torch model's -> w8a8 ONNX graphs quantized from
    the same float graphs (the encoder's features calibrated like any tensor) that pass the
    quantization gate."""
    from f2i_mobile.calibration.capture import capture
    from f2i_mobile.calibration.quantize import QuantRequest, quantize_model
    from f2i_mobile.cli import main
    from f2i_mobile.core.image import Photo
    from f2i_mobile.export.parity import check_all
    from f2i_mobile.upscale import UpscaleOptions, open_engine, plan_job, run_job

    code = main(["train", "sr", "--method", "faithdiff", "--init", str(foundation), "--out",
                 str(tmp_path / "run"), "--max-steps", "2", "--align-steps", "1", "--batch", "1",
                 "--crop", "32"])
    assert code == 0
    model = from_pretrained(tmp_path / "run" / "model")
    assert main(["export", "--model", str(tmp_path / "run" / "model"), "--out",
                 str(tmp_path / "export"), "--backends", "onnx"]) == 0
    report = check_all(model, tmp_path / "export")
    assert report.checks and all(c.status == "pass" for c in report.checks), report.table()
    # the host bench feeds the U-Net graph its extra input and times every graph
    assert main(["bench", "--artifacts", str(tmp_path / "export"), "--host", "--runs", "1",
                 "--warmup", "0", "--json", str(tmp_path / "bench.json")]) == 0
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert not bench["failures"]
    assert {r["graph"] for r in bench["results"]} >= {"encoder", "unet", "decoder"}
    assert bench["end_to_end"]
    rgb = np.random.default_rng(0).random((32, 40, 3), dtype=np.float32)
    outs = {}
    for backend in ("torch", "onnx"):
        options = UpscaleOptions(backend=backend, artifacts=str(tmp_path / "export"),
                                 color_fix="none")
        engine = open_engine(tmp_path / "run" / "model", options)
        photo = Photo(rgb)
        job = plan_job(engine, photo, None, options)
        assert job.plan.count > 1
        outs[backend] = np.concatenate([b for _, b in run_job(engine, job, photo, options)])
        engine.close()
    assert float(np.abs(outs["torch"] - outs["onnx"]).max()) < 1e-3

    calib = capture(model, tmp_path / "calib", tiles=4, seed=3)
    assert FEATURES in calib.index["tensors"]
    int8 = tmp_path / "int8"
    quantize_model(model, int8, QuantRequest("onnx", "w8a8"), calibration=calib.folder,
                   float_export=tmp_path / "export")
    capsys.readouterr()  # what train, export and bench printed
    assert main(["quant-check", "--artifacts", str(int8), "--min-psnr", "20", "--json"]) == 0
    gate = json.loads(capsys.readouterr().out)
    assert gate["ok"], gate


def test_faithdiff_multi_step_sampling_on_the_torch_backend():
    """`upscale --steps N`: one DDIM step is the one-step formula; more steps run tiled with one
    block of U-Net statistics per call, and are refused where exported graphs would run."""
    from f2i_mobile.core.errors import F2IError
    from f2i_mobile.core.image import Photo
    from f2i_mobile.models.graphs import graph_specs
    from f2i_mobile.runners.base import run_chain
    from f2i_mobile.runners.torch_runner import TorchRunner
    from f2i_mobile.upscale import UpscaleOptions, upscale_photo

    model = build_model(faithdiff_config(), seed=0)
    with torch.no_grad():
        model.align.proj.weight.normal_(0, 0.1)
    lr = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    one = run_chain(TorchRunner.of_model(model), {"lr": lr})
    three = run_chain(TorchRunner.of_model(model, steps=3), {"lr": lr})
    assert three["unet_stats"].shape[1] == 3 * one["unet_stats"].shape[1]
    assert graph_specs(model.config, steps=3)["unet"].inputs[-1].shape[1] == \
        three["unet_stats"].shape[1]
    assert float(np.abs(three["sr"] - one["sr"]).max()) > 1e-3
    stages = model.stages()
    from f2i_mobile.models.sr import MultiStepDenoiser

    with torch.no_grad():
        latent, features = stages["encoder"](torch.from_numpy(lr))
        tokens = model.conditioner(torch.from_numpy(lr))
        ddim = MultiStepDenoiser(stages["unet"], model.config, 1)(latent, features, tokens)
        torch.testing.assert_close(ddim, stages["unet"](latent, features, tokens),
                                   rtol=1e-4, atol=1e-4)
    rgb = np.random.default_rng(1).random((32, 40, 3), dtype=np.float32)
    out = upscale_photo(model, Photo(rgb), UpscaleOptions(steps=2, color_fix="none",
                                                          overlap=8))
    assert out.rgb.shape == (128, 160, 3) and np.isfinite(out.rgb).all()
    with pytest.raises(F2IError, match="--steps 2 runs on --backend torch only"):
        UpscaleOptions(steps=2, backend="onnx").check()


@pytest.fixture(scope="module")
def faith_model():
    """A tiny faithdiff model whose alignment module matters (its projection off zero)."""
    model = build_model(faithdiff_config(), seed=0)
    with torch.no_grad():
        model.align.proj.weight.normal_(0, 0.1)
    return model.eval()


@pytest.mark.slow
def test_faithdiff_encoder_and_unet_run_in_executorch_like_torch(faith_model, tmp_path):
    """ExecuTorch, whose XNNPACK partitions hand tensors over in a dim order of their own, runs
    the encoder's two outputs and the U-Net's extra input like torch. Only those two graphs are
    lowered: the others are the tiny preset's, which the export tests cover, and the FaithDiff
    chain end to end is checked through ONNX (TFLite lays `lq_features` out NHWC like the
    latents, by the spec's NCHW layout; its export of a FaithDiff model was checked once, at
    447 s too slow for CI)."""
    from executorch.runtime import Runtime

    from f2i_mobile.core.fidelity import output_scores
    from f2i_mobile.export import executorch as et
    from f2i_mobile.export.parity import GRAPH_MIN_PSNR
    from f2i_mobile.models.graphs import graph_modules, graph_specs

    modules, specs = graph_modules(faith_model), graph_specs(faith_model.config)
    assert FEATURES in [t.name for t in specs["encoder"].outputs]
    assert FEATURES in [t.name for t in specs["unet"].inputs]
    for graph in ("encoder", "unet"):
        spec = specs[graph]
        et.lower(modules[graph], spec, tmp_path / f"{graph}.pte", "fp32")
        method = Runtime.get().load_program(tmp_path / f"{graph}.pte").load_method("forward")
        inputs = spec.examples()
        got = method.execute([torch.from_numpy(inputs[t.name]) for t in spec.inputs])
        with torch.no_grad():
            want = modules[graph](*(torch.from_numpy(inputs[t.name]) for t in spec.inputs))
        want = want if isinstance(want, tuple) else (want,)
        for t, out, ref in zip(spec.outputs, got, want, strict=True):
            assert out.shape == ref.shape, (graph, t.name)
            score, _ = output_scores(t.name, out.numpy(), ref.numpy(), 0)
            assert score > GRAPH_MIN_PSNR["fp32"], (graph, t.name, score)
