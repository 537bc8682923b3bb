"""The GPU path up to where a GPU is needed: the bf16 graphs (SDPA, channels_last) run on a CPU
and agree with fp32; compiled graphs take one batch and the tiler pads to it; `--device cuda`
without a GPU, and a GPU with an exported backend, are one line each; training's `auto`
precision is no mixed precision without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import upscale
from PIL import Image

from f2i_mobile.core.errors import F2IError
from f2i_mobile.runners.base import run_chain
from f2i_mobile.runners.torch_runner import TorchRunner, check_device


def psnr(a, b):
    return 10 * np.log10(1 / np.mean((a - b) ** 2))


def test_bf16_graphs_run_as_on_a_gpu_and_stay_close_to_fp32(tiny_model):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    lr = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    fp32 = TorchRunner.of_model(tiny_model)
    bf16 = TorchRunner.of_model(tiny_model, precision="bf16")
    attentions = [m for m in bf16.modules["unet"].modules() if isinstance(m, Attention)]
    assert attentions and all(isinstance(a.processor, AttnProcessor2_0) for a in attentions)
    convs = [p for p in bf16.modules["decoder"].parameters() if p.dim() == 4]
    assert all(p.dtype == torch.bfloat16 for p in convs)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    a, b = run_chain(fp32, {"lr": lr})["sr"], run_chain(bf16, {"lr": lr})["sr"]
    assert b.dtype == np.float32 and b.shape == a.shape
    assert 30 < psnr(a, b) < 80  # bf16's rounding, not fp32 run twice


def test_sdpa_graphs_compute_what_the_exported_attention_does(tiny_model):
    """The graphs a GPU runs (attention through SDPA) and the ones export lowers (matmul,
    softmax, matmul) are the same function; the CPU's fp32 runner keeps the exported form."""
    from diffusers.models.attention_processor import Attention, AttnProcessor

    from f2i_mobile.models.graphs import graph_modules, graph_specs

    spec = graph_specs(tiny_model.config)["unet"]
    inputs = [torch.from_numpy(a) for a in spec.examples().values()]
    with torch.no_grad():
        explicit = graph_modules(tiny_model)["unet"](*inputs)
        sdpa = graph_modules(tiny_model, attention="sdpa")["unet"](*inputs)
    torch.testing.assert_close(sdpa, explicit, rtol=1e-4, atol=1e-5)
    fp32 = TorchRunner.of_model(tiny_model)
    attentions = [m for m in fp32.modules["unet"].modules() if isinstance(m, Attention)]
    assert attentions and all(type(a.processor) is AttnProcessor for a in attentions)
    with pytest.raises(ValueError, match="attention must be one of"):
        graph_modules(tiny_model, attention="flash")


def test_fp16_or_unknown_precision_is_refused(tiny_model):
    with pytest.raises(F2IError, match="fp32 or bf16"):
        TorchRunner.of_model(tiny_model, precision="fp16")


def test_compiled_runner_fixes_the_tile_batch_only():
    runner = TorchRunner({}, {}, batch=8)
    assert runner.batch_size("unet") == runner.batch_size("decoder") == 8
    assert runner.batch_size("statistics") is None and runner.batch_size("conditioner") is None
    assert TorchRunner({}, {}).batch_size("unet") is None


@pytest.mark.parametrize("device, message", [
    ("tpu", "not a torch device"), ("meta", "only cpu and cuda"),
])
def test_a_device_torch_cannot_run_on_is_refused(device, message):
    with pytest.raises(F2IError, match=message):
        check_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path, tiny_checkpoint, capsys):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    code, _, err = upscale([src, "-o", dst, "--model", tiny_checkpoint, "--device", "cuda"],
                           capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "no CUDA GPU" in err and not dst.exists()


def test_a_gpu_does_not_run_exported_backends(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    code, _, err = upscale([src, "-o", tmp_path / "o.png", "--model", tiny_checkpoint,
                            "--device", "cuda", "--backend", "onnx"], capsys)
    assert code == 1 and "runs the torch model" in err and len(err.strip().splitlines()) == 1


def test_auto_mixed_precision_is_none_without_a_gpu(monkeypatch):
    from f2i_mobile.train import device
    from f2i_mobile.train.config import TrainConfig

    cfg = TrainConfig("fm")
    assert cfg.mixed_precision == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.mixed_precision(cfg) == "no"
    assert device.mixed_precision(cfg.replace(mixed_precision="bf16")) == "bf16"
    with pytest.raises(F2IError, match="mixed-precision"):
        TrainConfig("fm", mixed_precision="fp8")


def test_compile_with_a_cpu_runtime_is_one_line(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    code, _, err = upscale([src, "-o", tmp_path / "o.png", "--model", tiny_checkpoint,
                            "--compile", "--backend", "auto"], capsys)  # ONNX Runtime here
    assert code == 1 and "--compile compiles the torch model" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_train_compile_without_a_gpu_is_one_line(tmp_path, capsys):
    from f2i_mobile.cli import main

    code = main(["train", "vae", "--preset", "tiny", "--out", str(tmp_path / "run"),
                 "--max-steps", "1", "--batch", "1", "--crop", "32", "--compile"])
    err = capsys.readouterr().err
    assert code == 1 and "--compile compiles the U-Net for a CUDA GPU" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run" / "model").exists()


def test_a_checkpoint_with_other_layer_names_is_one_line(tmp_path, tiny_checkpoint):
    from safetensors.torch import load_file, save_file

    from f2i_mobile.models import from_pretrained

    path = tmp_path / "ckpt"
    import shutil
    shutil.copytree(tiny_checkpoint, path)
    weights = path / "conditioner" / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if "query" in k or "q_proj" in k)
    state[key.replace("q_proj", "query_x").replace("query", "query_x")] = state.pop(key)
    save_file(state, str(weights))
    with pytest.raises(F2IError, match=r"conditioner.*1 missing, 1 unexpected; transformers"):
        from_pretrained(path)
