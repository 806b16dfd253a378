"""Trainable networks: a backbone, PaddleX's ML-Decoder multi-label head, and a sigmoid at
export time.

Layer names follow PaddleClas' (``conv1``, ``blocks2``... ``dw_conv``/``se``/``pw_conv`` for
PP-LCNet), so a PaddleClas backbone ``.pdparams`` can be passed to ``--pretrained``.
"""

from __future__ import annotations

import math

import paddle
from paddle import nn

from ..errors import UsageError
from .zoo import MODELS, ModelInfo, model_info

__all__ = ["MODELS", "ModelInfo", "build_model", "model_info"]


def _divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


class ConvBNLayer(nn.Layer):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 act: str | None = "hardswish"):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(cout)
        self.act = {"hardswish": nn.Hardswish(), "relu": nn.ReLU(), None: nn.Identity()}[act]

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SEModule(nn.Layer):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x):
        w = self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))
        return x * w


class DepthwiseSeparable(nn.Layer):
    def __init__(self, cin: int, cout: int, k: int, stride: int, use_se: bool):
        super().__init__()
        self.dw_conv = ConvBNLayer(cin, cin, k, stride, groups=cin)
        self.se = SEModule(cin) if use_se else nn.Identity()
        self.pw_conv = ConvBNLayer(cin, cout, 1)

    def forward(self, x):
        return self.pw_conv(self.se(self.dw_conv(x)))


# (kernel, in, out, stride, squeeze-excitation) per block, before scaling.
_LCNET_STAGES = {
    "blocks2": [(3, 16, 32, 1, False)],
    "blocks3": [(3, 32, 64, 2, False), (3, 64, 64, 1, False)],
    "blocks4": [(3, 64, 128, 2, False), (3, 128, 128, 1, False)],
    "blocks5": [(3, 128, 256, 2, False)] + [(5, 256, 256, 1, False)] * 5,
    "blocks6": [(5, 256, 512, 2, True), (5, 512, 512, 1, True)],
}


class PPLCNet(nn.Layer):
    """PP-LCNet's feature extractor (no pooling, no classifier): stride 32."""

    def __init__(self, scale: float):
        super().__init__()
        self.conv1 = ConvBNLayer(3, _divisible(16 * scale), 3, stride=2)
        for stage, blocks in _LCNET_STAGES.items():
            setattr(self, stage, nn.Sequential(*[
                DepthwiseSeparable(_divisible(cin * scale), _divisible(cout * scale), k, s, se)
                for k, cin, cout, s, se in blocks]))
        self.out_channels = _divisible(512 * scale)

    def forward(self, x):
        x = self.conv1(x)
        for stage in _LCNET_STAGES:
            x = getattr(self, stage)(x)
        return x


class Bottleneck(nn.Layer):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv0 = ConvBNLayer(cin, width, 1, act="relu")
        self.conv1 = ConvBNLayer(width, width, 3, stride, act="relu")
        self.conv2 = ConvBNLayer(width, cout, 1, act=None)
        self.short = (ConvBNLayer(cin, cout, 1, stride, act=None)
                      if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(self.conv0(x))) + self.short(x))


class ResNet50(nn.Layer):
    """ResNet-50's feature extractor (no pooling, no classifier): stride 32."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(ConvBNLayer(3, 64, 7, 2, act="relu"),
                                  nn.MaxPool2D(3, 2, padding=1))
        layers, cin = [], 64
        for i, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            for j in range(blocks):
                layers.append(Bottleneck(cin, width, 2 if j == 0 and i > 0 else 1))
                cin = width * Bottleneck.expansion
        self.blocks = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x):
        return self.blocks(self.stem(x))


class MLDecoderHead(nn.Layer):
    """ML-Decoder: learned class queries cross-attend to the spatial features, then a grouped
    linear layer turns each query into its classes' logits.

    With fewer queries than classes each query answers for ``ceil(classes / queries)`` of
    them, which keeps the head's cost flat as the label set grows. There is no self-attention
    between queries (ML-Decoder drops it: it costs quadratic time and does not help).
    """

    def __init__(self, in_channels: int, num_classes: int, dim: int = 768, ffn: int = 2048,
                 heads: int = 8, max_queries: int = 100, dropout: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.num_queries = min(num_classes, max_queries)
        self.per_query = math.ceil(num_classes / self.num_queries)
        self.proj = nn.Linear(in_channels, dim)
        self.query = nn.Embedding(self.num_queries, dim)
        self.attn = nn.MultiHeadAttention(dim, heads, dropout=dropout)
        self.drop1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn, dim))
        self.drop2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        bound = 1.0 / math.sqrt(dim)
        self.group_weight = self.create_parameter(
            [self.num_queries, dim, self.per_query],
            default_initializer=nn.initializer.Uniform(-bound, bound))
        self.group_bias = self.create_parameter(
            [num_classes], default_initializer=nn.initializer.Constant(0.0))

    def forward(self, feats):
        tokens = feats.flatten(2).transpose([0, 2, 1])  # [B, HW, C]
        memory = nn.functional.relu(self.proj(tokens))
        batch = paddle.shape(feats)[0]
        q = self.query.weight.unsqueeze(0).expand([batch, self.num_queries, -1])
        h = self.norm1(q + self.drop1(self.attn(q, memory, memory)))
        h = self.norm2(h + self.drop2(self.ffn(h)))  # [B, Q, D]
        logits = paddle.matmul(h.transpose([1, 0, 2]), self.group_weight)  # [Q, B, K]
        logits = logits.transpose([1, 0, 2]).reshape([batch, -1])
        return logits[:, :self.num_classes] + self.group_bias


class MultiLabelNet(nn.Layer):
    """Backbone + ML-Decoder head; returns logits (the sigmoid is added at export)."""

    def __init__(self, name: str, num_classes: int):
        super().__init__()
        info = model_info(name)
        self.backbone = PPLCNet(info.scale) if info.backbone == "pplcnet" else ResNet50()
        self.head = MLDecoderHead(self.backbone.out_channels, num_classes, info.head_dim,
                                  info.head_ffn)

    def forward(self, x):
        return self.head(self.backbone(x))


class WithSigmoid(nn.Layer):
    """What is exported: scores in [0, 1], as the pipeline's threshold expects."""

    def __init__(self, net: nn.Layer):
        super().__init__()
        self.net = net

    def forward(self, x):
        return nn.functional.sigmoid(self.net(x))


def build_model(name: str, num_classes: int) -> MultiLabelNet:
    if num_classes < 1:
        raise UsageError(f"a model needs at least one class, got {num_classes}")
    return MultiLabelNet(name, num_classes)
