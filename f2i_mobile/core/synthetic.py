"""Procedurally generated images: colour and structure that a dozen photographs do not cover.

    gradient  smooth colour fields (a coarse grid of random colours, bicubic-interpolated)
    text      random strings in OpenCV's Hershey fonts, random colours, on a coloured ground
    lines     gratings (sine or square, any angle and period) or random line segments
    noise     coloured fractal noise: octaves of smoothed white noise, mixed across channels
    patches   a chart of flat colour patches under a soft shading     } held out: never
    scene     all of the above in one image: a textured colour field    } trained on
              under shapes, lines and text

Every image is a pure function of the generator it is drawn from. Training draws from its
batch generator (`np.random.default_rng([seed, step, rank])`); the held-out images draw from
generators spawned off `HELD_OUT_ENTROPY` (`SeedSequence(entropy, spawn_key=(i,))`), which
training never creates. Images are H x W x 3 float32 in [0, 1]. Torch-free.
"""

from __future__ import annotations

import string

import cv2
import numpy as np

from f2i_mobile.core.errors import F2IError

FAMILIES = ("gradient", "text", "lines", "noise", "patches", "scene")
TRAINING_FAMILIES = ("gradient", "text", "lines", "noise")
HELD_OUT_ENTROPY = 0x5EED_E7A1_0F_15
HELD_OUT_SIZE = 512
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX)
CHARACTERS = string.ascii_letters + string.digits + " .,:-"


def generate(family: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size image of `family`, drawn from `rng`."""
    if family not in FAMILIES:
        raise F2IError(f"unknown image family {family!r}; use one of {', '.join(FAMILIES)}")
    image = {"gradient": _gradient, "text": _text, "lines": _lines, "noise": _noise,
             "patches": _patches, "scene": _scene}[family](size, rng)
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)


def held_out(family: str, index: int, size: int = HELD_OUT_SIZE) -> np.ndarray:
    """The `index`-th held-out image of `family` (the same on every machine)."""
    seq = np.random.SeedSequence(HELD_OUT_ENTROPY, spawn_key=(FAMILIES.index(family), index))
    return generate(family, size, np.random.default_rng(seq))


def _colors(n: int, rng: np.random.Generator) -> np.ndarray:
    """n random colours, saturated about half of the time."""
    colors = rng.random((n, 3))
    vivid = rng.random(n) < 0.5
    colors[vivid] = (colors[vivid] - colors[vivid].min(axis=1, keepdims=True))
    colors[vivid] /= np.maximum(colors[vivid].max(axis=1, keepdims=True), 1e-3)
    return colors.astype(np.float32)


def _gradient(size: int, rng: np.random.Generator) -> np.ndarray:
    cells = int(rng.integers(2, 5))
    grid = _colors(cells * cells, rng).reshape(cells, cells, 3)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _text(size: int, rng: np.random.Generator) -> np.ndarray:
    ground, ink = _colors(2, rng)
    if np.abs(ground - ink).max() < 0.3:  # legible: ink far from the ground in some channel
        ink = 1.0 - ground
    base = _gradient(size, rng) * 0.3 + ground * 0.7 if rng.random() < 0.5 else \
        np.broadcast_to(ground, (size, size, 3))
    canvas = _to8(base)  # OpenCV draws text on 8-bit images only
    y = 0
    while y < size:
        font = FONTS[rng.integers(len(FONTS))]
        scale = rng.uniform(0.3, 2.0) * size / 128
        thickness = int(rng.integers(1, 3))
        line = "".join(rng.choice(list(CHARACTERS), size=int(rng.integers(4, 24))))
        (_, h), _ = cv2.getTextSize(line, font, scale, thickness)
        y += h + int(rng.integers(2, max(3, h)))
        color = ink if rng.random() < 0.7 else _colors(1, rng)[0]
        cv2.putText(canvas, line, (int(rng.integers(-size // 4, size // 4)), y), font, scale,
                    _color8(color), thickness, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def _lines(size: int, rng: np.random.Generator) -> np.ndarray:
    a, b = _colors(2, rng)
    if rng.random() < 0.5:
        # A grating: period 2 .. size/4 pixels at any angle, sine or square profile.
        period = rng.uniform(2.0, max(3.0, size / 4))
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
        wave = 0.5 + 0.5 * np.sin(phase + rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.5:
            wave = (wave > 0.5).astype(np.float32)
        return a + wave[..., None] * (b - a)
    canvas = _to8(np.broadcast_to(a, (size, size, 3)))
    for _ in range(int(rng.integers(5, 40))):
        p, q = rng.integers(-size // 4, size + size // 4, size=(2, 2))
        color = b if rng.random() < 0.5 else _colors(1, rng)[0]
        cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), _color8(color),
                 int(rng.integers(1, max(2, size // 16))), cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def _to8(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.round(np.clip(image, 0.0, 1.0) * 255.0), dtype=np.uint8)


def _color8(color: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(round(float(c) * 255.0)) for c in color)


def _noise(size: int, rng: np.random.Generator) -> np.ndarray:
    total = np.zeros((size, size, 3), np.float32)
    weight, roughness = 1.0, rng.uniform(0.3, 0.8)
    cells = int(rng.integers(2, 6))
    while cells <= size:
        octave = rng.normal(size=(cells, cells, 3)).astype(np.float32)
        total += weight * cv2.resize(octave, (size, size), interpolation=cv2.INTER_CUBIC)
        weight *= roughness
        cells *= 2
    mix = rng.normal(size=(3, 3)).astype(np.float32) + np.eye(3, dtype=np.float32)
    total = total @ mix
    total = (total - total.mean(axis=(0, 1))) / (total.std() + 1e-6)
    return 0.5 + total * rng.uniform(0.1, 0.25) + (_colors(1, rng)[0] - 0.5) * 0.5


def _patches(size: int, rng: np.random.Generator) -> np.ndarray:
    rows, cols = int(rng.integers(3, 7)), int(rng.integers(3, 7))
    colors = _colors(rows * cols, rng).reshape(rows, cols, 3)
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.uniform(0.0, 0.3)
    gap = max(1, size // 64)
    ys = np.linspace(0, size, rows + 1).astype(int)
    xs = np.linspace(0, size, cols + 1).astype(int)
    for r in range(rows):
        for c in range(cols):
            image[ys[r] + gap:ys[r + 1] - gap, xs[c] + gap:xs[c + 1] - gap] = colors[r, c]
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    shading = 1.0 + rng.uniform(-0.15, 0.15) * (xx - 0.5) + rng.uniform(-0.15, 0.15) * (yy - 0.5)
    return image * shading[..., None]


def _scene(size: int, rng: np.random.Generator) -> np.ndarray:
    """A textured colour field with flat and textured shapes, lines and text on it: detail at
    every scale (bicubic does not reconstruct it) and large areas of one colour (where a cast
    shows)."""
    base = _gradient(size, rng) * 0.7 + _noise(size, rng) * 0.3
    canvas = _to8(base)
    for _ in range(int(rng.integers(4, 10))):
        color = _color8(_colors(1, rng)[0])
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 16, size // 4))
        if rng.random() < 0.5:
            cv2.circle(canvas, (x, y), r, color, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(canvas, (x - r, y - r // 2), (x + r, y + r // 2), color, -1,
                          cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 12))):
        p, q = rng.integers(0, size, size=(2, 2))
        cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])),
                 _color8(_colors(1, rng)[0]), int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 4))):
        line = "".join(rng.choice(list(CHARACTERS), size=int(rng.integers(4, 16))))
        x, y = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        cv2.putText(canvas, line, (x, y + size // 8), FONTS[rng.integers(len(FONTS))],
                    rng.uniform(0.4, 1.5) * size / 256, _color8(_colors(1, rng)[0]),
                    int(rng.integers(1, 3)), cv2.LINE_AA)
    grain = rng.normal(0.0, rng.uniform(0.01, 0.03), (size, size, 1)).astype(np.float32)
    return canvas.astype(np.float32) / 255.0 + grain

