"""On the CPU the paddle engine tells Paddle's OpenMP runtime how long idle threads spin, before
Paddle starts it: from devices.yaml's ``engines.paddle.options.cpu.omp_blocktime_ms``, unless
the environment already says."""

from __future__ import annotations

import os

import pytest

from mlcls import create_pipeline
from mlcls.catalogue import load_catalogue


@pytest.fixture
def no_blocktime(monkeypatch):
    monkeypatch.delenv("KMP_BLOCKTIME", raising=False)


def _build(model_dir, **device_options):
    create_pipeline("multi_label_image_classification", device="cpu", model_dir=model_dir,
                    engine="paddle", device_options=device_options or None).close()


def test_the_catalogue_value_reaches_the_environment(tiny_model, no_blocktime):
    configured = load_catalogue().options_for("paddle", "cpu").get("omp_blocktime_ms")
    assert configured is not None, "devices.yaml should set omp_blocktime_ms for paddle on cpu"
    _build(tiny_model)
    assert os.environ["KMP_BLOCKTIME"] == str(int(configured))


def test_a_device_option_overrides_the_catalogue(tiny_model, no_blocktime):
    _build(tiny_model, omp_blocktime_ms=7)
    assert os.environ["KMP_BLOCKTIME"] == "7"


def test_the_users_environment_wins(tiny_model, monkeypatch):
    monkeypatch.setenv("KMP_BLOCKTIME", "150")
    _build(tiny_model, omp_blocktime_ms=0)
    assert os.environ["KMP_BLOCKTIME"] == "150"
