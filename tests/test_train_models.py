"""Every trainable model name builds, outputs one logit per class, and passes a gradient to
every parameter, from the head down to the stem."""

from __future__ import annotations

import numpy as np
import pytest

from mlcls.training.zoo import MODELS


@pytest.mark.parametrize("name", list(MODELS))
def test_model_trains_a_step(name):
    import paddle

    from mlcls.training.loss import make_loss
    from mlcls.training.models import build_model

    paddle.seed(0)
    net = build_model(name, 5)
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.normal(size=(4, 3, 64, 64)).astype("float32"))
    y = paddle.to_tensor((rng.random((4, 5)) < 0.4).astype("float32"))
    logits = net(x)
    assert logits.shape == [4, 5]
    loss = make_loss("asl")(logits, y)
    assert np.isfinite(float(loss))
    loss.backward()
    dead = [n for n, p in net.named_parameters() if not p.stop_gradient and (
            p.grad is None or not np.any(p.grad.numpy()))]
    assert not dead, f"no gradient reaches {dead[:5]}"


def test_more_classes_than_queries_share_queries():
    import paddle

    from mlcls.training.models import MLDecoderHead

    head = MLDecoderHead(16, 250, dim=32, ffn=64, heads=4)
    assert head.num_queries == 100 and head.per_query == 3
    out = head(paddle.randn([2, 16, 3, 3]))
    assert out.shape == [2, 250]
