"""The learning-rate schedule, the progress line and the device rule of ``mlcls train``."""

from __future__ import annotations

import io
import math

import pytest

from mlcls.errors import UsageError
from mlcls.training.trainer import TrainConfig, TrainProgress, learning_rate, paddle_device


def test_warm_up_then_cosine():
    cfg = TrainConfig("d", "PP-LCNet_x0_25_ML", "o", learning_rate=0.01, warmup_epochs=2)
    per_epoch, total = 10, 100
    lrs = [learning_rate(cfg, s, total, per_epoch) for s in range(total)]
    assert lrs[0] == pytest.approx(0.0001)
    assert lrs[10] == pytest.approx(0.01 * (0.01 + 0.99 * 0.5))
    assert lrs[20] == pytest.approx(0.01)  # peak right after the warm-up
    assert lrs[20 + 40] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))
    assert lrs[-1] < 0.0001
    # a warm-up longer than the run is cut short instead of never reaching the peak
    short = [learning_rate(cfg, s, 5, 10) for s in range(5)]
    assert max(short) == pytest.approx(0.01)


def test_progress_line_shows_loss_and_eta():
    bar = TrainProgress(10, stream=io.StringIO(), enabled=True, min_interval=0)
    bar.epoch, bar.loss = "1/2", 0.6931
    for _ in range(4):
        bar.update()
    line = bar.line()
    assert "epoch 1/2" in line and "4/10 steps" in line and "loss 0.6931" in line
    assert "ETA" in line
    assert bar.stream.getvalue().count("\r") == 4


def test_training_takes_one_device():
    assert paddle_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="one device"):
        paddle_device("cpu:0,1")


def test_the_head_learns_at_its_own_rate():
    import numpy as np
    import paddle

    from mlcls.training.models import build_model
    from mlcls.training.trainer import scale_head_lr

    net = build_model("PP-LCNet_x0_25_ML", 3)
    scale_head_lr(net, 0.1)
    params = dict(net.named_parameters())
    head, body = params["fc.input_proj.weight"], params["conv1.conv.weight"]
    assert head.optimize_attr["learning_rate"] == 0.1
    assert body.optimize_attr["learning_rate"] == 1.0
    before = {k: params[k].numpy().copy() for k in ("fc.input_proj.weight",
                                                    "conv1.conv.weight")}
    opt = paddle.optimizer.Adam(1e-2, parameters=[head, body])
    (head.sum() + body.sum()).backward()
    opt.step()
    # Adam's first step moves every weight by about the rate: 1e-3 for the head, 1e-2 else
    np.testing.assert_allclose(before["fc.input_proj.weight"] - head.numpy(), 1e-3, rtol=1e-2)
    np.testing.assert_allclose(before["conv1.conv.weight"] - body.numpy(), 1e-2, rtol=1e-2)


_THREADS_PROBE = """
import os, sys
from mlcls.paddle_engine import import_paddle_inference
from mlcls.training.trainer import compute_threads
compute_threads(int(sys.argv[1]), import_paddle_inference)
print(os.environ["OMP_NUM_THREADS"])
"""


@pytest.mark.parametrize("exported, expected", [(None, "3"), ("1", "1")])
def test_training_threads_reach_paddle_and_its_notice_is_dropped(exported, expected):
    """Paddle pins OpenMP to one thread unless OMP_NUM_THREADS says otherwise before it loads:
    the trainer sets its count first (a value the user exported wins), and the notice Paddle
    prints about a count above 1 does not reach the user."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if exported:
        env["OMP_NUM_THREADS"] = exported
    done = subprocess.run([sys.executable, "-c", _THREADS_PROBE, "3"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
    assert "OMP_NUM_THREADS" not in done.stderr


def test_negative_threads_refused():
    from mlcls.training.trainer import Trainer

    with pytest.raises(UsageError, match="--threads"):
        Trainer(TrainConfig("d", "PP-LCNet_x0_25_ML", "o", threads=-1))
