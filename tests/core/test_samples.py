"""The bundled image sets and the generated images: disjoint sets, a held-out evaluation set
of varied colour, generators that are functions of their seed."""

from __future__ import annotations

import numpy as np
import pytest

from f2i_mobile.core import synthetic
from f2i_mobile.core.errors import F2IError
from f2i_mobile.core.samples import (
    CALIBRATION,
    EVAL,
    HELD_OUT,
    HELD_OUT_GENERATED,
    TRAIN,
    bundled_images,
)


def test_held_out_images_are_in_no_other_set():
    assert not set(HELD_OUT) & set(TRAIN) and not set(HELD_OUT) & set(CALIBRATION)
    assert not set(EVAL) & set(TRAIN)
    assert set(CALIBRATION) <= set(TRAIN)
    assert len(set(EVAL)) == len(EVAL) >= 8
    # Generated held-out images: from a family training never draws, or from generators that
    # training never creates (spawned off HELD_OUT_ENTROPY, see core.synthetic).
    families = {name.split("-")[0] for name in HELD_OUT_GENERATED}
    assert families <= set(synthetic.FAMILIES)
    assert families - set(synthetic.TRAINING_FAMILIES)


def test_the_evaluation_set_has_varied_colour():
    images = bundled_images(EVAL)
    assert [im.name for im in images] == list(EVAL)
    # Colourful: the spread between channels of each image, in 8-bit levels.
    colour = [float(np.abs(im.pixels - im.pixels.mean(axis=2, keepdims=True)).mean() * 255)
              for im in images]
    assert sum(c > 10 for c in colour) >= 5, dict(zip(EVAL, colour))
    means = np.array([im.pixels.reshape(-1, 3).mean(axis=0) for im in images])
    assert np.ptp(means, axis=0).min() > 0.2  # every channel's mean varies across the set
    for im in images:
        assert min(im.pixels.shape[:2]) >= 256 and im.pixels.dtype == np.float32


@pytest.mark.parametrize("family", synthetic.FAMILIES)
def test_generated_images_are_a_function_of_the_generator(family):
    a = synthetic.generate(family, 96, np.random.default_rng(3))
    b = synthetic.generate(family, 96, np.random.default_rng(3))
    c = synthetic.generate(family, 96, np.random.default_rng(4))
    assert a.shape == (96, 96, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 0.02  # not a flat image
    assert np.array_equal(synthetic.held_out(family, 0, 64), synthetic.held_out(family, 0, 64))
    assert not np.array_equal(synthetic.held_out(family, 0, 64), synthetic.held_out(family, 1, 64))


def test_an_unknown_family_is_one_line():
    with pytest.raises(F2IError, match="unknown image family 'stripes'"):
        synthetic.generate("stripes", 32, np.random.default_rng(0))
