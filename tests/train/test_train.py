"""The training core: each stage learns, resume is exact, the degradation is seedable and does
what its parameters say, bad data is skipped with a warning."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from f2i_mobile.core.samples import HRImage, bundled_images, folder_images
from f2i_mobile.models import build_model, from_pretrained, preset, save_pretrained
from f2i_mobile.train.config import TrainConfig, default_train_config
from f2i_mobile.train.data import Crops
from f2i_mobile.train.degrade import Degradation, DegradationConfig, DegradationOrder
from f2i_mobile.train.run import run_stage
from f2i_mobile.train.stages import build_stage

CLI = [sys.executable, "-m", "f2i_mobile.cli"]


@pytest.fixture(scope="module")
def images():
    return bundled_images(("astronaut", "coffee"))


def fixed_batch(images, scale=4):
    cfg = DegradationConfig(scale=scale)
    return Crops(images, crop=32, batch=4, seed=0, degrade=Degradation(cfg))[0]


def tiny_start():
    """A model without SR adapters: what the vae and fm stages build, and (trained or not) what
    the sr stage starts from."""
    return build_model(preset("tiny"), seed=0, lora=False)


# Which logged term is the stage's own objective: for sr the generator's pixel loss, not the
# sum, which the fake score's diffusion loss could lower on its own.
OBJECTIVE = {"vae": "l1", "fm": "mse", "sr": "pixel"}


@pytest.mark.parametrize("stage", ["vae", "fm", "sr"])
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(stage, images):
    torch.manual_seed(0)
    cfg = TrainConfig(stage, crop=32, batch=4)
    module = build_stage(tiny_start(), cfg).train()
    optimizer = torch.optim.AdamW(module.trainable(), lr=2e-3)
    batch = fixed_batch(images)
    losses = []
    for _ in range(12):
        loss, logs = module(batch, torch.Generator().manual_seed(0))  # same noise every step
        losses.append(logs[OBJECTIVE[stage]])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.9 * losses[0], losses


def test_sr_stage_trains_only_the_adapters(images):
    module = build_stage(tiny_start(), TrainConfig("sr"))
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any(n.startswith("model.vae.encoder") for n in names)
    assert not any(n.startswith("model.vae.decoder") for n in names)
    # The fake score is the critic, trained by its own optimizer: not among the stage's.
    critic = [n for n, p in module.critic.named_parameters() if p.requires_grad]
    assert critic and all("lora_" in n for n in critic)
    assert not {id(p) for p in module.critic.trainable()} & {id(p) for p in module.trainable()}


def _state(folder):
    return torch.load(folder / "state.pt", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    """Two checkpoints' state.pt hold the same networks, optimizer states and LR schedules."""
    assert a["nets"].keys() == b["nets"].keys() == a["optimizers"].keys()
    for net, tensors in a["nets"].items():
        for key, value in tensors.items():
            assert torch.equal(value, b["nets"][net][key]), (net, key)
    for net, optimizer in a["optimizers"].items():
        other = b["optimizers"][net]["state"]
        assert optimizer["state"] and optimizer["state"].keys() == other.keys()
        for i, s in optimizer["state"].items():
            for k, v in s.items():
                assert torch.equal(v, other[i][k]), (net, i, k)
    assert a["schedules"] == b["schedules"]


def test_resume_continues_from_the_saved_step_with_identical_state(tmp_path, images):
    cfg = default_train_config("fm").replace(max_steps=4, checkpoint_every=2, batch=2, crop=32)
    vae = run_stage(default_train_config("vae").replace(max_steps=1, batch=2, crop=32),
                    str(tmp_path / "vae"), preset_name="tiny", progress=False,
                    data=None if images is None else None)
    straight = run_stage(cfg, str(tmp_path / "a"), init=str(vae), progress=False)
    run_stage(cfg.replace(max_steps=2), str(tmp_path / "b"), init=str(vae), progress=False)
    resumed = run_stage(cfg, str(tmp_path / "b"), init=str(vae), resume=True, progress=False)

    a = _state(tmp_path / "a/checkpoints/step-0000004")
    b = _state(tmp_path / "b/checkpoints/step-0000004")
    assert_same_state(a, b)
    assert a["ema"]["optimization_step"] == b["ema"]["optimization_step"] == 4
    ma, mb = from_pretrained(straight), from_pretrained(resumed)
    for (k, v), (_, w) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(v, w), k


def test_sr_resume_restores_the_generator_and_the_fake_score(tmp_path):
    fm = save_pretrained(tiny_start(), tmp_path / "fm")
    cfg = default_train_config("sr").replace(max_steps=2, checkpoint_every=1, batch=1, crop=32,
                                             ema_decay=0.9)
    straight = run_stage(cfg, str(tmp_path / "a"), init=str(fm), progress=False)
    run_stage(cfg.replace(max_steps=1), str(tmp_path / "b"), init=str(fm), progress=False)
    resumed = run_stage(cfg, str(tmp_path / "b"), init=str(fm), resume=True, progress=False)

    a = _state(tmp_path / "a/checkpoints/step-0000002")
    b = _state(tmp_path / "b/checkpoints/step-0000002")
    assert set(a["nets"]) == {"generator", "critic"}
    assert_same_state(a, b)
    ma, mb = from_pretrained(straight), from_pretrained(resumed)
    for (k, v), (_, w) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(v, w), k


def test_vae_stage_fits_the_latent_scale(tmp_path):
    out = run_stage(default_train_config("vae").replace(max_steps=2, batch=2, crop=32),
                    str(tmp_path / "vae"), preset_name="tiny", progress=False)
    model = from_pretrained(out)
    assert model.config.vae.scaling_factor != preset("tiny").vae.scaling_factor
    assert model.one_step.scaling_factor == model.config.vae.scaling_factor
    assert "train vae" in model.metadata["origin"]


def test_a_bundled_model_name_is_a_starting_model(tmp_path):
    # `--init mobile` (as `--model mobile` everywhere else): fm keeps the bundled VAE and starts
    # a fresh U-Net; an unknown name is the one-line model error, not a traceback.
    from f2i_mobile.core.errors import F2IError
    from f2i_mobile.core.model_files import bundled_models
    from f2i_mobile.train.run import starting_model

    bundled = from_pretrained(bundled_models()["mobile"])
    model = starting_model(default_train_config("fm"), preset("mobile"), "mobile", None, None)
    for k, v in bundled.vae.state_dict().items():
        assert torch.equal(model.vae.state_dict()[k], v), k
    unet = dict(bundled.unet.state_dict())
    assert not all(torch.equal(v, unet[k]) for k, v in model.unet.state_dict().items())
    with pytest.raises(F2IError, match="not a bundled model"):
        starting_model(default_train_config("sr"), preset("mobile"), "nosuch", None, None)


def _only(**first) -> DegradationConfig:
    """A degradation with everything off except what `first` turns on (first order only)."""
    off = DegradationOrder(blur_prob=0.0, resize_prob=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0,
                           noise_sigma=(0.0, 0.0), jpeg_quality=(100.0, 100.0))
    return DegradationConfig(first=replace(off, **first), second=off, final_sinc_prob=0.0)


def _laplacian_energy(image: np.ndarray) -> float:
    import cv2

    return float(np.abs(cv2.Laplacian(image.mean(axis=2), cv2.CV_32F)).mean())


def test_degradation_is_deterministic_under_a_seed(images):
    hr = images[0].pixels[:128, :128]
    d = Degradation()
    a = d(hr, np.random.default_rng(7))
    b = d(hr, np.random.default_rng(7))
    c = d(hr, np.random.default_rng(8))
    assert a.shape == (32, 32, 3) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_degradation_statistics_follow_its_parameters(images):
    hr = images[0].pixels[:256, :256]

    def energy(**first) -> float:
        # Averaged over seeds: the resize to the LR size draws its interpolation (area averages
        # noise away, bilinear and bicubic keep it), as Real-ESRGAN does.
        return float(np.mean([_laplacian_energy(Degradation(_only(**first))(
            hr, np.random.default_rng(seed))) for seed in range(4)]))

    assert energy(noise_sigma=(25.0, 25.0)) > 1.3 * energy(noise_sigma=(2.0, 2.0))
    blur = dict(blur_prob=1.0, kernel_prob=(1, 0, 0, 0, 0, 0), sinc_prob=0.0)
    assert energy(blur_sigma=(3.0, 3.0), **blur) < 0.8 * energy(blur_sigma=(0.2, 0.2), **blur)
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    clean = Degradation(_only())(hr, rng())
    jpeg = Degradation(_only(jpeg_quality=(10.0, 10.0)))(hr, rng())
    assert np.abs(jpeg - clean).mean() > 0.005


def test_a_corrupt_image_in_the_data_folder_is_skipped_with_a_warning(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.png", "sub/b.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning) as caught:
        found = folder_images(tmp_path)
    assert sorted(i.name for i in found) == ["a.png", "sub/b.jpg"]
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.png" in messages and "truncated.png" in messages


def test_crops_are_a_function_of_seed_and_step():
    image = [HRImage("x", np.random.default_rng(0).random((64, 80, 3), dtype=np.float32))]

    def crops(seed):
        return Crops(image, crop=32, batch=2, seed=seed, degrade=Degradation())

    a, again, other = crops(3)[5], crops(3)[5], crops(4)[5]
    assert torch.equal(a["hr"], again["hr"]) and torch.equal(a["lr"], again["lr"])
    assert not torch.equal(a["hr"], other["hr"])
    assert not torch.equal(a["hr"], crops(3)[6]["hr"])
    assert a["lr"].shape == (2, 3, 8, 8)


def test_missing_inputs_are_refused_before_torch_is_imported(tmp_path):
    """A missing --init, data folder or vendor SDK is known from the command line alone: the
    one line comes before the seconds of importing torch and the models."""
    script = (
        "import sys\nfrom f2i_mobile.cli import main\n"
        f"codes = [main(['train', 'sr', '--out', {str(tmp_path / 'x')!r}]),\n"
        f"         main(['train', 'vae', '--out', {str(tmp_path / 'y')!r}, '--data', "
        f"{str(tmp_path / 'nope')!r}]),\n"
        f"         main(['export', '--model', 'tiny', '--out', {str(tmp_path / 'z')!r}, "
        "'--backends', 'onnx,qnn'])]\n"
        "print(codes, 'torch' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "QNN_SDK_ROOT"}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.stdout.split() == ["[1,", "1,", "1]", "False"], (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and "--init" in lines[0] and "not a folder" in lines[1], r.stderr
    assert "QNN_SDK_ROOT" in lines[2], r.stderr
    assert not any((tmp_path / d).exists() for d in "xyz")
