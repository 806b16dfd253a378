from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlcls.errors import ModelError
from mlcls.preprocess import NumpyPreprocessor

NORM = {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "scale": 0.00392156862745098, "order": ""}}


def _image(w=40, h=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pil_resize_then_normalise_matches_the_direct_formula():
    img = _image()
    pre = NumpyPreprocessor([{"ResizeImage": {"size": 16, "backend": "pil",
                                              "interpolation": "bilinear"}},
                             NORM, {"ToCHWImage": None}])
    batch = pre([img, img])
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == np.float32
    resized = np.asarray(Image.fromarray(img).resize((16, 16), Image.BILINEAR))
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    alpha = (0.00392156862745098 / std).astype(np.float32)
    beta = (-mean / std).astype(np.float32)
    expected = (resized.astype(np.float32) * alpha + beta).transpose(2, 0, 1)
    assert np.array_equal(batch[0], expected)  # bit-identical, as PaddleX computes it


def test_resize_short_keeps_aspect_then_centre_crop():
    pre = NumpyPreprocessor([{"ResizeImage": {"resize_short": 20}},
                             {"CropImage": {"size": 16}}, {"ToCHWImage": None}])
    prepared = pre.prepare(_image(w=60, h=30))
    assert prepared.shape == (16, 16, 3)
    assert pre.image_ops[0](_image(w=60, h=30)).shape == (20, 40, 3)


def test_string_scale_and_hwc_layout():
    pre = NumpyPreprocessor([{"ResizeImage": {"size": [8, 4]}},
                             {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0, 0, 0],
                                                 "std": [1, 1, 1]}}])
    out = pre([np.full((10, 10, 3), 255, np.uint8)])
    assert out.shape == (1, 4, 8, 3)
    assert np.allclose(out, 1.0)


@pytest.mark.parametrize("ops, message", [
    ([{"Mystery": {}}], "unsupported op 'Mystery'"),
    ([{"ResizeImage": {"size": 8, "interpolation": "wavy"}}], "unknown interpolation"),
    ([{"ResizeImage": {}}], "needs 'size' or 'resize_short'"),
    ([{"ResizeImage": {"size": 0}}], "positive"),
    ([{"NormalizeImage": {"std": [0, 1, 1]}}], "std non-zero"),
])
def test_bad_ops_are_named(ops, message):
    with pytest.raises(ModelError, match=message):
        NumpyPreprocessor(ops)


def test_crop_larger_than_image_is_an_error_for_that_image():
    pre = NumpyPreprocessor([{"CropImage": {"size": 64}}])
    with pytest.raises(ValueError, match="smaller than the crop"):
        pre.prepare(_image(w=32, h=32))
