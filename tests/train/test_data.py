"""Training data that teaches colour: augmentations that keep HR and LR consistent, are a
function of the seed and do change colour; crops at several scales; generated images mixed in;
and the sr stage's low-pass colour loss."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from f2i_mobile.core import synthetic
from f2i_mobile.core.imaging import bicubic_downscale
from f2i_mobile.core.samples import HRImage, bundled_images
from f2i_mobile.train.data import ColorAugment, Crops, DataConfig, augment_color
from f2i_mobile.train.degrade import Degradation, DegradationConfig
from f2i_mobile.train.stages import low_pass

NONE = ColorAugment(hue_prob=0.0, saturation_prob=0.0, gamma_prob=0.0, white_balance_prob=0.0,
                    permute_prob=0.0)
ALWAYS = ColorAugment(hue_prob=1.0, saturation_prob=1.0, gamma_prob=1.0, white_balance_prob=1.0,
                      permute_prob=1.0)


@pytest.fixture(scope="module")
def photo():
    return bundled_images(("coffee",))[0].pixels[:128, :128]


def channel_means(image: np.ndarray) -> np.ndarray:
    return image.reshape(-1, 3).mean(axis=0) * 255.0


@pytest.mark.parametrize("change", [
    dict(hue_prob=1.0), dict(saturation_prob=1.0, saturation=(0.3, 0.3)),
    dict(gamma_prob=1.0, gamma=(1.4, 1.4)), dict(white_balance_prob=1.0),
    dict(permute_prob=1.0),
])
def test_each_colour_augmentation_changes_colour(photo, change):
    moved = []
    for seed in range(8):
        out = augment_color(photo, replace(NONE, **change), np.random.default_rng(seed))
        assert out.shape == photo.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        moved.append(np.abs(channel_means(out) - channel_means(photo)).max())
    # (A permutation can be the identity: 1 draw in 6.)
    assert np.mean(np.array(moved) > 3.0) >= 0.75, moved


def test_without_augmentation_the_crop_is_untouched(photo):
    assert np.array_equal(augment_color(photo, NONE, np.random.default_rng(0)), photo)


def test_a_channel_permutation_moves_channels_and_nothing_else(photo):
    c = replace(NONE, permute_prob=1.0)
    for seed in range(6):
        out = augment_color(photo, c, np.random.default_rng(seed))
        assert sorted(map(tuple, out.reshape(-1, 3).T.round(6))) == \
            sorted(map(tuple, photo.reshape(-1, 3).T.round(6)))


def test_colour_augmentation_is_a_function_of_the_seed(photo):
    a = augment_color(photo, ALWAYS, np.random.default_rng(5))
    b = augment_color(photo, ALWAYS, np.random.default_rng(5))
    c = augment_color(photo, ALWAYS, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_lr_is_degraded_from_the_augmented_hr(photo):
    # With the clean bicubic degradation, every LR is exactly the bicubic downscale of its HR:
    # the colour change happened before the degradation, to both.
    images = [HRImage("coffee", photo)]
    data = Crops(images, crop=32, batch=6, seed=0,
                 degrade=Degradation(DegradationConfig(p_bicubic=1.0)),
                 config=DataConfig(synthetic_prob=0.5, color=ALWAYS))
    batch = data[0]
    for hr, lr in zip(batch["hr"].numpy(), batch["lr"].numpy()):
        expected = bicubic_downscale(np.ascontiguousarray(hr.transpose(1, 2, 0)), 4)
        assert np.array_equal(lr.transpose(1, 2, 0), expected)
    plain = Crops(images, crop=32, batch=6, seed=0,
                  degrade=Degradation(DegradationConfig(p_bicubic=1.0)),
                  config=DataConfig(synthetic_prob=0.5, color=NONE))[0]
    assert not torch.equal(plain["hr"], batch["hr"])


def test_batches_with_generated_images_are_a_function_of_seed_and_step(photo):
    def crops(seed):
        return Crops([HRImage("coffee", photo)], crop=32, batch=8, seed=seed,
                     degrade=Degradation(), config=DataConfig(synthetic_prob=0.5))

    a, again = crops(1)[3], crops(1)[3]
    assert torch.equal(a["hr"], again["hr"]) and torch.equal(a["lr"], again["lr"])
    assert a["caption"] == again["caption"]
    assert not torch.equal(a["hr"], crops(2)[3]["hr"])
    # Both sources are drawn, and generated images come only from the training families.
    assert "coffee" in a["caption"]
    generated = set(a["caption"]) - {"coffee"}
    assert generated and generated <= set(synthetic.TRAINING_FAMILIES)


def test_crops_are_cut_at_several_scales():
    # A one-pixel checkerboard: cut at scale 1 it stays one; cut at scale 2 and area-resized,
    # every output pixel averages a 2x2 block and the pattern is gone.
    board = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    image = [HRImage("board", np.repeat(board[..., None], 3, axis=2))]

    def hr(scale: float) -> np.ndarray:
        config = DataConfig(synthetic_prob=0.0, scale_range=(scale, scale), color=NONE)
        return Crops(image, crop=16, batch=2, seed=0, degrade=Degradation(),
                     config=config)[0]["hr"].numpy()

    assert set(np.unique(hr(1.0))) == {0.0, 1.0}
    assert np.allclose(hr(2.0), 0.5, atol=1e-6)


def test_the_colour_loss_sees_a_cast_and_not_fine_texture():
    gen = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 32, 32, generator=gen) * 0.5 + 0.25
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2 * 2 - 1
    textured = hr + 10 / 255 * checker  # zero mean over every 8x8 block
    tinted = hr.clone()
    tinted[:, 1] += 10 / 255
    assert torch.nn.functional.mse_loss(low_pass(textured), low_pass(hr)) < 1e-10
    cast = torch.nn.functional.mse_loss(low_pass(tinted), low_pass(hr))
    assert cast == pytest.approx((10 / 255) ** 2 / 3, rel=1e-4)
