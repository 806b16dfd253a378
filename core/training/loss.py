"""Multi-label losses on logits: asymmetric loss (ASL, the default) and plain BCE.

ASL down-weights the many easy negatives of multi-label data: negatives get a focusing term
``p ** gamma_neg`` and a probability margin ``clip`` below which they count for nothing.
"""

from __future__ import annotations

import paddle
from paddle import nn

from ..errors import UsageError
from .zoo import LOSSES


class AsymmetricLoss(nn.Layer):
    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05,
                 eps: float = 1e-8):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = gamma_pos, gamma_neg, clip, eps

    def forward(self, logits, target):
        p = nn.functional.sigmoid(logits)
        p_neg = 1.0 - p
        if self.clip:
            p_neg = paddle.clip(p_neg + self.clip, max=1.0)
        log_pos = target * paddle.log(paddle.clip(p, min=self.eps))
        log_neg = (1.0 - target) * paddle.log(paddle.clip(p_neg, min=self.eps))
        with paddle.no_grad():  # the focusing weight scales the gradient, it is not learnt
            pt = p * target + p_neg * (1.0 - target)
            gamma = self.gamma_pos * target + self.gamma_neg * (1.0 - target)
            weight = paddle.pow(1.0 - pt, gamma)
        return -((log_pos + log_neg) * weight).sum(axis=1).mean()


class BCELoss(nn.Layer):
    def forward(self, logits, target):
        return nn.functional.binary_cross_entropy_with_logits(
            logits, target, reduction="none").sum(axis=1).mean()


def make_loss(name: str) -> nn.Layer:
    if name == "asl":
        return AsymmetricLoss()
    if name == "bce":
        return BCELoss()
    raise UsageError(f"unknown loss '{name}': use {' or '.join(LOSSES)}")
