"""The degradation follows Real-ESRGAN's train_realesrgan_x4plus recipe: where the second order
resizes to, how many JPEG passes there are, how kernel shapes and shot noise are drawn, and that
LR lands on the 8-bit grid whichever order the final step takes."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from f2i_mobile.core.samples import bundled_images
from f2i_mobile.train import degrade
from f2i_mobile.train.degrade import (
    Degradation,
    DegradationConfig,
    DegradationOrder,
    poisson_noise,
    shape_beta,
)

# An order that changes nothing: no blur, no resize, zero noise, JPEG at quality 100.
OFF = DegradationOrder(blur_prob=0.0, resize_prob=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0,
                       noise_sigma=(0.0, 0.0), jpeg_quality=(100.0, 100.0))


def photo(size: int = 128) -> np.ndarray:
    return bundled_images(("astronaut",))[0].pixels[:size, :size]


def test_the_second_order_resizes_relative_to_the_lr_size():
    # Whatever size the first order left (here half the HR size), the second order's factor
    # scales HR / scale = 32: keep -> 32, up (factor in [1, 1.2]) -> 32 .. 38, down (factor in
    # [0.5, 1)) -> 16 .. 31. Relative to the 64 it was given, every size would be twice that.
    after_first = np.full((64, 64, 3), 0.5, np.float32)
    for resize_prob, low, high in (((0, 0, 1), 32, 32), ((1, 0, 0), 32, 38), ((0, 1, 0), 16, 31)):
        d = Degradation(DegradationConfig(second=replace(OFF, resize_prob=resize_prob,
                                                         resize_range=(0.5, 1.2))))
        for seed in range(4):
            out = d.second_order(after_first, np.random.default_rng(seed), hr_size=(128, 128))
            assert out.shape[2] == 3 and out.shape[0] == out.shape[1], out.shape
            assert low <= out.shape[0] <= high, (resize_prob, out.shape)
    # The first order's factor scales the HR size: down (factor in [0.5, 1)) -> 64 .. 127.
    d = Degradation(DegradationConfig(first=replace(OFF, resize_prob=(0, 1, 0),
                                                    resize_range=(0.5, 1.2))))
    for seed in range(4):
        assert 64 <= d.first_order(photo(), np.random.default_rng(seed)).shape[0] <= 127


def test_two_jpeg_passes_one_per_order(monkeypatch):
    # Real-ESRGAN compresses once in the first order and once in the final step (the second
    # order's JPEG); the final step compresses before or after its resize, 50/50.
    seen = []
    real_jpeg = degrade._jpeg

    def counting(img, quality):
        seen.append(img.shape[:2])
        return real_jpeg(img, quality)

    monkeypatch.setattr(degrade, "_jpeg", counting)
    hr, d = photo(), Degradation()
    final_before_resize = final_after_resize = 0
    for seed in range(16):
        seen.clear()
        lr = d(hr, np.random.default_rng(seed))
        assert len(seen) == 2, (seed, seen)
        if seen[1] == lr.shape[:2]:
            final_after_resize += 1
        else:
            final_before_resize += 1
    assert final_before_resize and final_after_resize


def test_lr_is_on_the_8_bit_grid_in_either_final_order():
    hr, d = photo(), Degradation()
    for seed in range(16):
        lr = d(hr, np.random.default_rng(seed))
        assert lr.dtype == np.float32 and lr.shape == (32, 32, 3)
        assert np.abs(lr * 255 - np.round(lr * 255)).max() < 1e-3, seed


def test_kernel_shapes_are_drawn_half_below_and_half_above_one():
    rng = np.random.default_rng(0)
    betag = np.array([shape_beta((0.5, 4.0), rng) for _ in range(4000)])
    assert betag.min() >= 0.5 and betag.max() <= 4.0
    # Uniform over [0.5, 4] would put only 1/7 of the draws below 1.
    assert 0.46 < (betag < 1.0).mean() < 0.54
    betap = np.array([shape_beta((1.0, 2.0), rng) for _ in range(4000)])
    assert 0.46 < (betap == 1.0).mean() < 0.54 and betap.max() <= 2.0


def test_colour_poisson_noise_counts_photons_on_the_8_bit_levels():
    # 128 distinct 8-bit levels (64 .. 191), each pixel off the grid by its own fraction: the
    # draw is on the rounded image at 128 photons per unit (128 levels rounded up to a power of
    # two), and the difference is multiplied by the scale: variance scale^2 * q / 128.
    rng = np.random.default_rng(0)
    levels = np.repeat(np.arange(64, 192, dtype=np.float32)[None, :, None], 256, axis=0)
    img = np.repeat(levels, 3, axis=2) + rng.uniform(-0.4, 0.4, (256, 128, 3)).astype(np.float32)
    img /= 255.0
    q = np.round(img * 255) / 255
    scale = 2.0
    noise = poisson_noise(img, scale, gray=False, rng=rng)
    assert noise.shape == img.shape
    # The clean image in "noisy minus clean" is the rounded one: noise + q is a photon count.
    counts = (noise / scale + q) * 128
    assert np.allclose(counts, np.round(counts), atol=1e-6)
    ratio = (noise ** 2).sum() / (scale ** 2 * q / 128).sum()
    assert 0.97 < ratio < 1.03, ratio


def test_gray_poisson_noise_is_drawn_on_the_luma_and_added_to_every_channel():
    # Green varies over 128 levels, red and blue are fixed: luma and channel mean differ by far.
    img = np.empty((256, 128, 3), np.float32)
    img[..., 0] = img[..., 2] = 0.2
    img[..., 1] = np.arange(64, 192, dtype=np.float32)[None, :] / 255
    luma = np.round((0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]) * 255) / 255
    distinct = len(np.unique(luma))
    assert 64 < distinct <= 128  # so 128 photons per unit
    order = replace(OFF, gaussian_noise_prob=0.0, gray_noise_prob=1.0, poisson_scale=(0.5, 0.5))
    noisy = degrade._noise(img, order, np.random.default_rng(1))
    diff = noisy - img
    inside = (noisy > 0).all(axis=2) & (noisy < 1).all(axis=2)  # not clipped
    assert inside.mean() > 0.99
    assert np.allclose(diff[inside][:, 0], diff[inside][:, 1], atol=1e-6)
    assert np.allclose(diff[inside][:, 0], diff[inside][:, 2], atol=1e-6)
    ratio = (diff[inside][:, 0] ** 2).sum() / (0.25 * luma[inside] / 128).sum()
    assert 0.95 < ratio < 1.05, ratio  # on the channel mean it would be ~0.7


def _only_second(**second) -> DegradationConfig:
    """Everything off except what `second` turns on in the second order."""
    return DegradationConfig(first=OFF, second=replace(OFF, **second), final_sinc_prob=0.0)


def _laplacian_energy(image: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(image.mean(axis=2), cv2.CV_32F)).mean())


def test_second_order_statistics_follow_its_parameters():
    hr = photo(256)

    def run(**second):
        return Degradation(_only_second(**second))(hr, np.random.default_rng(0))

    clean = run()
    assert _laplacian_energy(run(noise_sigma=(25.0, 25.0))) > 1.3 * _laplacian_energy(
        run(noise_sigma=(2.0, 2.0)))
    blur = dict(blur_prob=1.0, kernel_prob=(1, 0, 0, 0, 0, 0), sinc_prob=0.0)
    assert _laplacian_energy(run(blur_sigma=(1.5, 1.5), **blur)) < 0.8 * _laplacian_energy(
        run(blur_sigma=(0.2, 0.2), **blur))
    assert np.abs(run(jpeg_quality=(10.0, 10.0)) - clean).mean() > 0.005
    # Poisson noise at the second order's scale leaves more detail energy than none at all.
    shot = run(gaussian_noise_prob=0.0, poisson_scale=(2.5, 2.5))
    assert _laplacian_energy(shot) > 1.2 * _laplacian_energy(clean)
