"""The tiler: plans, seamless blending, orders, the memory budget, streaming writes, colour fix."""

from __future__ import annotations

import mmap
import tracemalloc
import warnings

import cv2
import numpy as np
import pytest
import tifffile
from conftest import make_manifest, upscale
from PIL import Image

from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.image import Photo
from f2i_mobile.core.imaging import pad_reflect
from f2i_mobile.core.planner import Schedule, default_overlap
from f2i_mobile.runners import run_chain
from f2i_mobile.tiling.colorfix import adain, low_frequency, wavelet
from f2i_mobile.tiling.scheduler import TileScheduler
from f2i_mobile.tiling.writer import write_bands
from f2i_mobile.upscale import SeamWarning, UpscaleOptions, open_engine, plan_job

TILE = 64  # tiny model tile for the seam tests: room for a seam-safe overlap


def photo(h, w, seed=0):
    """A smooth random image (natural-ish spectrum), H x W x 3 float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(2, h // 6), max(2, w // 6), 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


# --- seams ---

@pytest.fixture(scope="module")
def engine(tiny_model):
    return open_engine(None, UpscaleOptions(tile=TILE), model=tiny_model)


def untiled(engine, canvas, shared):
    """The whole canvas through the tile graphs at once, with the photo's tokens and GroupNorm
    statistics: what the tiles must reproduce."""
    values = {"lr": np.ascontiguousarray(canvas.transpose(2, 0, 1))[None],
              **{name: value[None] for name, value in shared.items()}}
    return run_chain(engine.runner, values)["sr"][0].transpose(1, 2, 0)


def run_tiled(engine, rgb, overlap=None, order="tile", batch=1, spill=False):
    options = UpscaleOptions(tile=TILE, overlap=overlap, order=order, batch=batch)
    job = plan_job(engine, Photo(rgb), None, options)
    schedule = Schedule(order, batch, spill, 0)
    sched = TileScheduler(engine.runner, job.plan, schedule, progress=False)
    bands = list(sched.bands(rgb))
    assert [y for y, _ in bands] == sorted(y for y, _ in bands)
    return job.plan, sched, np.concatenate([b for _, b in bands])


def test_receptive_field_is_measured_and_local(engine):
    rf = engine.receptive_field
    assert 0 < rf.chain < TILE // 2 - 2 and not rf.saturated
    assert rf.graphs["decoder"] <= rf.chain and rf.graphs["encoder"] <= rf.chain


def test_tiled_equals_untiled_when_overlap_covers_the_receptive_field(engine):
    overlap = default_overlap(engine.receptive_field.chain, TILE, engine.multiple)
    size = 2 * TILE - overlap  # 2 x 2 tiles whose canvas is the image itself
    rgb = photo(size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeamWarning)
        plan, sched, tiled = run_tiled(engine, rgb)
    assert plan.count == 4 and plan.seam_safe and plan.canvas == (size, size)
    ref = untiled(engine, rgb, sched.shared)
    assert np.abs(tiled - ref).max() < 1e-3


def test_too_small_overlap_warns_and_does_seam(engine):
    size = 100
    rgb = photo(size, size, seed=1)
    with pytest.warns(SeamWarning, match="below"):
        plan, sched, tiled = run_tiled(engine, rgb, overlap=4)
    assert not plan.seam_safe
    ref = untiled(engine, pad_reflect(rgb, *plan.canvas[::-1]), sched.shared)
    assert np.abs(tiled - ref[: size * 4, : size * 4]).max() > 1e-3  # the warning was earned


def test_both_orders_batches_and_spilling_give_the_same_output(engine):
    rgb = photo(71, 99, seed=2)  # odd size: 3 x 2 tiles, padded canvas
    _, _, a = run_tiled(engine, rgb, order="tile", batch=1)
    _, _, b = run_tiled(engine, rgb, order="stage", batch=3)
    _, _, c = run_tiled(engine, rgb, order="stage", batch=2, spill=True)
    assert a.shape == (284, 396, 3)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)


# --- the command line ---

@pytest.mark.parametrize("kind", ["rgba", "gray16", "one_pixel", "rgb_small"])
def test_cli_tiles_every_kind_of_input(kind, tmp_path, tiny_checkpoint, capsys):
    rng = np.random.default_rng(3)
    h, w = {"one_pixel": (1, 1), "rgb_small": (7, 5)}.get(kind, (37, 45))
    src = tmp_path / "in.png"
    if kind == "rgba":
        a = np.dstack([(rng.random((h, w, 3)) * 255).astype(np.uint8),
                       np.full((h, w), 77, np.uint8)])
        Image.fromarray(a, "RGBA").save(src)
    elif kind == "gray16":
        cv2.imwrite(str(src), (rng.random((h, w)) * 65535).astype(np.uint16))
    else:
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(src)
    dst = tmp_path / "out.png"
    code, out, err = upscale([src, "-o", dst, "--model", tiny_checkpoint, "--tile", 16,
                              "--overlap", 4, "--order", "stage"], capsys)
    assert code == 0, err
    assert f"({4 * w}x{4 * h})" in out
    if kind == "gray16":
        data = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
        assert data.dtype == np.uint16 and data.shape == (4 * h, 4 * w)
        assert int(out.split(", ")[-1].split()[0]) > 1  # it really was tiled
    else:
        with Image.open(dst) as im:
            assert im.size == (4 * w, 4 * h)
            assert im.mode == ("RGBA" if kind == "rgba" else "RGB")
            if kind == "rgba":
                assert (np.asarray(im)[..., 3] == 77).all()


def test_budget_that_cannot_be_met_is_one_line_before_any_work(tmp_path, tiny_checkpoint,
                                                               capsys):
    src = tmp_path / "in.png"
    Image.fromarray((photo(40, 40) * 255).astype(np.uint8)).save(src)
    dst = tmp_path / "out.png"
    code, _, err = upscale([src, "-o", dst, "--model", tiny_checkpoint, "--memory-budget",
                            "1MiB"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "cannot be met" in err and "needs at least" in err
    assert not dst.exists()


def test_plan_prints_tiles_flops_and_memory_and_runs_nothing(tmp_path, tiny_checkpoint,
                                                             capsys):
    src = tmp_path / "in.png"
    Image.fromarray((photo(40, 50) * 255).astype(np.uint8)).save(src)
    code, out, err = upscale([src, "-o", tmp_path / "o.png", "--model", tiny_checkpoint,
                              "--tile", 16, "--overlap", 2, "--plan"], capsys)
    assert code == 0, err
    assert "tiles: 12 (4 x 3)" in out and "GFLOPs" in out and "peak memory estimate" in out
    assert "warning: overlap 2 LR px is below" in err
    assert not (tmp_path / "o.png").exists()


# --- the streaming writer ---

@pytest.mark.parametrize("suffix,channels", [(".png", 4), (".tif", 4), (".png", 1),
                                             (".tif", 2)])
def test_writer_round_trip_16bit_without_holding_the_image(suffix, channels, tmp_path):
    w, rows = 1000, 50
    shape = (w,) if channels == 1 else (w, channels)

    def band(y):  # deterministic content made on demand (uint16 arithmetic wraps mod 2^16)
        base = (np.arange(y, y + rows, dtype=np.uint16)[:, None] * np.uint16(37)
                + np.arange(w, dtype=np.uint16) * np.uint16(11))
        data = np.stack([base + np.uint16(9973 * c) for c in range(channels)], axis=-1)
        return data.reshape((rows, *shape))

    peaks = {}
    for h in (1000, 4000):  # the writer's memory must not grow with the image
        path = tmp_path / f"big{h}{suffix}"
        tracemalloc.start()
        write_bands(path, w, h, channels, np.uint16, (band(y) for y in range(0, h, rows)))
        peaks[h] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    whole_bytes = 4000 * w * channels * 2
    assert peaks[4000] < whole_bytes / 4 and peaks[4000] < 1.5 * peaks[1000] + (1 << 20), peaks
    back = (tifffile.imread(path) if suffix == ".tif"
            else cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    if suffix == ".png" and channels == 4:
        back = back[..., [2, 1, 0, 3]]
    want = np.concatenate([band(y) for y in range(0, 4000, rows)])
    np.testing.assert_array_equal(back, want)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_writer_leaves_nothing_when_the_bands_fail(tmp_path):
    def bands():
        yield np.zeros((10, 20, 3), np.uint8)
        raise F2IError("runner failed")

    with pytest.raises(F2IError):
        write_bands(tmp_path / "o.png", 20, 30, 3, np.uint8, bands())
    assert list(tmp_path.iterdir()) == []


# --- colour fix ---

def test_adain_matches_channel_statistics():
    rng = np.random.default_rng(4)
    img, ref = rng.random((32, 32, 3)).astype(np.float32), photo(32, 32)
    out = adain(img, ref)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), ref.mean(axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1)), ref.std(axis=(0, 1)), atol=1e-4)


def test_wavelet_takes_low_frequencies_from_the_reference():
    rng = np.random.default_rng(5)
    detail = (rng.random((64, 64, 3)).astype(np.float32) - 0.5) * 0.1
    sr = np.clip(photo(64, 64, seed=6) * 0.5 + 0.4 + detail, 0, 1)  # colour-shifted
    ref = photo(64, 64, seed=6)
    out = wavelet(sr, ref)
    before = np.abs(low_frequency(sr) - low_frequency(ref)).max()
    after = np.abs(low_frequency(out) - low_frequency(ref)).max()
    assert after < before / 5  # the colour shift is gone (the filter is not idempotent)
    hf = out - low_frequency(out)
    assert np.corrcoef(hf.ravel(), (sr - low_frequency(sr)).ravel())[0, 1] > 0.99


def test_color_fix_runs_through_the_cli_and_wavelet_is_the_default(tmp_path, tiny_checkpoint,
                                                                    capsys):
    src = tmp_path / "in.png"
    Image.fromarray((photo(20, 24) * 255).astype(np.uint8)).save(src)
    for method in ("adain", "wavelet", "none", None):
        flags = [] if method is None else ["--color-fix", method]
        code, _, err = upscale([src, "-o", tmp_path / f"{method}.png", "--model",
                                tiny_checkpoint, *flags], capsys)
        assert code == 0, err
    out = {m: np.asarray(Image.open(tmp_path / f"{m}.png"), np.float32) / 255
           for m in ("adain", "wavelet", "none", None)}
    lr_mean = np.asarray(Image.open(src), np.float32).mean(axis=(0, 1)) / 255
    assert np.abs(out["adain"].mean(axis=(0, 1)) - lr_mean).max() < 0.05
    assert np.array_equal(out[None], out["wavelet"]) and not np.array_equal(out[None],
                                                                            out["none"])
    cast = {m: np.abs(out[m].mean(axis=(0, 1)) - lr_mean).max() for m in ("wavelet", "none")}
    assert cast["wavelet"] < cast["none"]  # the untrained tiny model casts; the fix removes it


def test_artifact_costs_split_what_loading_keeps_from_what_a_run_adds():
    """The measurement behind `--memory-budget` for exported graphs, on a runner whose memory
    is known: loading keeps 40 MiB, each run of a batch of 2 touches 32 MiB more."""
    from f2i_mobile.core.contract import GraphSpec, TensorSpec
    from f2i_mobile.core.memory import peak_rise, touch_fresh_pages
    from f2i_mobile.runners.base import GraphRunner
    from f2i_mobile.tiling.runner_costs import artifact_costs

    if peak_rise(lambda: None) is None:
        pytest.skip("no resettable high-water mark on this system")

    class HoldingRunner(GraphRunner):
        def __init__(self):
            self.loaded = {}

        def run(self, graph, inputs):
            if graph not in self.loaded:
                block = mmap.mmap(-1, 40 << 20)
                for offset in range(0, len(block), mmap.PAGESIZE):
                    block[offset] = 1
                self.loaded[graph] = block
            touch_fresh_pages(32 << 20)
            return {"out": np.zeros((2, 3, 4, 4), np.float32)}

        def release(self, graph):
            self.loaded.pop(graph).close()

    shape = (2, 3, 4, 4)
    manifest = make_manifest(tile=4, batch=2)
    manifest.graphs = {g: GraphSpec(g, "", (TensorSpec("lr", shape, "NCHW"),),
                                    (TensorSpec("out", shape, "NCHW"),), flops=int(4e9))
                       for g in manifest.graphs}
    runner = HoldingRunner()
    costs = artifact_costs(runner, manifest)
    assert not runner.loaded  # every graph released after its measurement
    for cost in costs.values():
        assert cost.gflops == 2.0 and cost.io_bytes == 3 * 4 * 4 * 4
        assert 38 << 20 <= cost.weight_bytes < 80 << 20
        assert 15 << 20 <= cost.activation_bytes < 24 << 20
