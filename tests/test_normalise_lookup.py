"""The table look-up normalisation must give the same bits as PaddleX's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from mlcls.preprocess import NumpyPreprocessor

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def _paddlex_formula(img: np.ndarray, scale: float, mean, std) -> np.ndarray:
    """PaddleX's NormalizeImage: float32 constants, multiply then add, in float32."""
    alpha = (scale / np.asarray(std, dtype=np.float64)).astype(np.float32)
    beta = (-np.asarray(mean, dtype=np.float64) / np.asarray(std)).astype(np.float32)
    return img.astype(np.float32) * alpha + beta


def _every_value_image(seed: int = 0) -> np.ndarray:
    """Each channel takes all 256 values (plus random pixels) in a non-square image."""
    img = np.random.default_rng(seed).integers(0, 256, (37, 300, 3), dtype=np.uint8)
    for c in range(3):
        img[c, :256, c] = np.arange(256, dtype=np.uint8)
    return img


@pytest.mark.parametrize("scale, mean, std", [
    (1 / 255, MEAN, STD),
    ("1.0/255.0", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    (1.0, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
])
@pytest.mark.parametrize("chw", [True, False])
def test_lookup_is_bit_identical_to_the_formula(scale, mean, std, chw):
    ops = [{"NormalizeImage": {"scale": scale, "mean": mean, "std": std}}]
    pre = NumpyPreprocessor(ops + ([{"ToCHWImage": None}] if chw else []))
    images = [_every_value_image(0), _every_value_image(1)[:, ::-1]]  # one non-contiguous
    batch = pre.collate(images)
    num_scale = 1 / 255 if isinstance(scale, str) else scale
    for got, img in zip(batch, images):
        want = _paddlex_formula(img, num_scale, mean, std)
        if chw:
            want = want.transpose(2, 0, 1)
        assert got.dtype == np.float32
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_non_uint8_images_take_the_arithmetic_path():
    pre = NumpyPreprocessor([{"NormalizeImage": {"mean": MEAN, "std": STD}},
                             {"ToCHWImage": None}])
    img = np.random.default_rng(2).random((8, 9, 3)).astype(np.float32) * 255
    want = (img * pre.alpha + pre.beta).transpose(2, 0, 1)
    assert np.array_equal(pre.collate([img])[0], want)
