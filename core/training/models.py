"""Trainable networks, laid out exactly as PaddleClas lays out the models PaddleX trains and
exports as ``*_ML``: the backbone (PP-LCNet, PP-HGNetV2, ResNet) whose classifier ``fc`` is
replaced by the ML-Decoder head, a sigmoid added at export time.

Two things are kept identical to PaddleClas on purpose, because pretrained weights depend on
them (see :mod:`mlcls.training.weights`):

* the attribute tree, so a PaddleClas / PaddleX training checkpoint (``.pdparams``, keys such
  as ``blocks2.0.dw_conv.conv.weight`` or ``fc.decoder.layers.0.cross_attn.q_proj.weight``)
  loads by name;
* the order in which layers are created (including the classifier that the head replaces and
  the self-attention that the head deletes), so that a network built under a fresh
  ``unique_name.guard`` gives its tensors the same generated names (``conv2d_0.w_0``,
  ``linear_5.w_0``...) as an exported inference model from PaddleX, whose
  ``inference.pdiparams`` knows no other names.

The forward passes compute what PaddleClas' do (the tests compare scores against PaddleX's on
a PP-LCNet_x1_0_ML inference model), so an official model fine-tunes from where it stands.
"""

from __future__ import annotations

import contextlib

import paddle
from paddle import nn

from ..errors import UsageError
from .zoo import HEADS, MODELS, ModelInfo, model_info

__all__ = ["HEADS", "MODELS", "ModelInfo", "build_model", "model_info"]

_NO_DECAY = paddle.ParamAttr(regularizer=paddle.regularizer.L2Decay(0.0))


def _act(name: str) -> nn.Layer:
    return {"hardswish": nn.Hardswish, "relu": nn.ReLU}[name]()


# --------------------------------------------------------------------------------------------
# PP-LCNet

def _divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


class ConvBNLayer(nn.Layer):
    """conv (no bias) -> batch-norm -> activation (PP-LCNet's unit)."""

    def __init__(self, cin: int, k: int, cout: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, k, stride=stride, padding=(k - 1) // 2,
                              groups=groups, bias_attr=False,
                              weight_attr=paddle.ParamAttr(
                                  initializer=nn.initializer.KaimingNormal()))
        self.bn = nn.BatchNorm2D(cout, weight_attr=_NO_DECAY, bias_attr=_NO_DECAY)
        self.act = nn.Hardswish()

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
        gate = self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))
        return paddle.multiply(x, gate)


class DepthwiseSeparable(nn.Layer):
    def __init__(self, cin: int, cout: int, stride: int, k: int, use_se: bool):
        super().__init__()
        self.use_se = use_se
        self.dw_conv = ConvBNLayer(cin, k, cin, stride, groups=cin)
        if use_se:
            self.se = SEModule(cin)
        self.pw_conv = ConvBNLayer(cin, 1, cout, 1)

    def forward(self, x):
        x = self.dw_conv(x)
        if self.use_se:
            x = self.se(x)
        return self.pw_conv(x)


# (kernel, in, out, stride, squeeze-excitation) per block, before scaling.
_LCNET_STAGES = {
    "blocks2": [(3, 16, 32, 1, False)],
    "blocks3": [(3, 32, 64, 2, False), (3, 64, 64, 1, False)],
    "blocks4": [(3, 64, 128, 2, False), (3, 128, 128, 1, False)],
    "blocks5": [(3, 128, 256, 2, False)] + [(5, 256, 256, 1, False)] * 5,
    "blocks6": [(5, 256, 512, 2, True), (5, 512, 512, 1, True)],
}


class PPLCNet(nn.Layer):
    def __init__(self, scale: float, class_num: int, class_expand: int = 1280,
                 dropout_prob: float = 0.2):
        super().__init__()
        self.conv1 = ConvBNLayer(3, 3, _divisible(16 * scale), 2)
        for stage, blocks in _LCNET_STAGES.items():
            setattr(self, stage, nn.Sequential(*[
                DepthwiseSeparable(_divisible(cin * scale), _divisible(cout * scale), s, k, se)
                for k, cin, cout, s, se in blocks]))
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(_divisible(512 * scale), class_expand, 1, bias_attr=False)
        self.act = nn.Hardswish()
        # downscale_in_infer: exported graphs scale by 1 - p, as PaddleClas' do
        self.dropout = nn.Dropout(p=dropout_prob, mode="downscale_in_infer")
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc = nn.Linear(class_expand, class_num)

    def forward(self, x):
        x = self.conv1(x)
        for stage in _LCNET_STAGES:
            x = getattr(self, stage)(x)
        x = self.dropout(self.act(self.last_conv(self.avg_pool(x))))
        return self.fc(self.flatten(x))


# --------------------------------------------------------------------------------------------
# PP-HGNetV2

class LearnableAffineBlock(nn.Layer):
    """``scale * x + bias`` with two learned scalars (learning rate x0.01). The class name is
    PaddleClas' on purpose: the generated tensor names derive from it."""

    def __init__(self, lr_scale: float = 0.01):
        super().__init__()
        attr = paddle.ParamAttr(learning_rate=lr_scale)
        self.scale = self.create_parameter(
            [1], attr=attr, default_initializer=nn.initializer.Constant(1.0))
        self.bias = self.create_parameter(
            [1], attr=paddle.ParamAttr(learning_rate=lr_scale),
            default_initializer=nn.initializer.Constant(0.0))

    def forward(self, x):
        return self.scale * x + self.bias


class ConvBNAct(nn.Layer):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1,
                 padding: int | str = 1, groups: int = 1, use_act: bool = True,
                 use_lab: bool = False):
        super().__init__()
        self.use_act, self.use_lab = use_act, use_lab
        self.conv = nn.Conv2D(cin, cout, k, stride,
                              padding=padding if isinstance(padding, str) else (k - 1) // 2,
                              groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(cout, weight_attr=_NO_DECAY, bias_attr=_NO_DECAY)
        if use_act:
            self.act = nn.ReLU()
            if use_lab:
                self.lab = LearnableAffineBlock()

    def forward(self, x):
        x = self.bn(self.conv(x))
        if self.use_act:
            x = self.act(x)
            if self.use_lab:
                x = self.lab(x)
        return x


class LightConvBNAct(nn.Layer):
    """1x1 convolution without activation, then a depthwise k x k with it."""

    def __init__(self, cin: int, cout: int, k: int, use_lab: bool):
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, 1, use_act=False, use_lab=use_lab)
        self.conv2 = ConvBNAct(cout, cout, k, groups=cout, use_act=True, use_lab=use_lab)

    def forward(self, x):
        return self.conv2(self.conv1(x))


class StemBlock(nn.Layer):
    def __init__(self, cin: int, mid: int, cout: int, use_lab: bool):
        super().__init__()
        self.stem1 = ConvBNAct(cin, mid, 3, 2, use_lab=use_lab)
        self.stem2a = ConvBNAct(mid, mid // 2, 2, 1, padding="SAME", use_lab=use_lab)
        self.stem2b = ConvBNAct(mid // 2, mid, 2, 1, padding="SAME", use_lab=use_lab)
        self.stem3 = ConvBNAct(mid * 2, mid, 3, 2, use_lab=use_lab)
        self.stem4 = ConvBNAct(mid, cout, 1, 1, use_lab=use_lab)
        self.pool = nn.MaxPool2D(kernel_size=2, stride=1, ceil_mode=True, padding="SAME")

    def forward(self, x):
        x = self.stem1(x)
        branch = self.stem2b(self.stem2a(x))
        x = paddle.concat([self.pool(x), branch], 1)
        return self.stem4(self.stem3(x))


class HGV2_Block(nn.Layer):  # noqa: N801 - PaddleClas' name, kept for recognisability
    """``layer_num`` convolutions in a chain whose outputs are all concatenated, squeezed and
    re-expanded; a residual connection on every block after a stage's first."""

    def __init__(self, cin: int, mid: int, cout: int, k: int, layer_num: int,
                 identity: bool, light_block: bool, use_lab: bool):
        super().__init__()
        self.identity = identity
        self.layers = nn.LayerList()
        for i in range(layer_num):
            src = cin if i == 0 else mid
            self.layers.append(LightConvBNAct(src, mid, k, use_lab) if light_block
                               else ConvBNAct(src, mid, k, 1, use_lab=use_lab))
        total = cin + layer_num * mid
        self.aggregation_squeeze_conv = ConvBNAct(total, cout // 2, 1, 1, use_lab=use_lab)
        self.aggregation_excitation_conv = ConvBNAct(cout // 2, cout, 1, 1, use_lab=use_lab)

    def forward(self, x):
        outs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outs.append(y)
        y = self.aggregation_excitation_conv(self.aggregation_squeeze_conv(
            paddle.concat(outs, axis=1)))
        return y + x if self.identity else y


class HGV2_Stage(nn.Layer):  # noqa: N801
    def __init__(self, cin: int, mid: int, cout: int, block_num: int, layer_num: int,
                 downsample: bool, light_block: bool, k: int, use_lab: bool):
        super().__init__()
        self.is_downsample = downsample
        if downsample:
            self.downsample = ConvBNAct(cin, cin, 3, 2, groups=cin, use_act=False,
                                        use_lab=use_lab)
        self.blocks = nn.Sequential(*[
            HGV2_Block(cin if i == 0 else cout, mid, cout, k, layer_num, i > 0, light_block,
                       use_lab) for i in range(block_num)])

    def forward(self, x):
        if self.is_downsample:
            x = self.downsample(x)
        return self.blocks(x)


# stem channels, use_lab, then per stage:
# (in, mid, out, blocks, downsample, light block, kernel, layers per block)
_HGNETV2 = {
    "B0": ((3, 16, 16), True, [(16, 16, 64, 1, False, False, 3, 3),
                               (64, 32, 256, 1, True, False, 3, 3),
                               (256, 64, 512, 2, True, True, 5, 3),
                               (512, 128, 1024, 1, True, True, 5, 3)]),
    "B4": ((3, 32, 48), False, [(48, 48, 128, 1, False, False, 3, 6),
                                (128, 96, 512, 1, True, False, 3, 6),
                                (512, 192, 1024, 3, True, True, 5, 6),
                                (1024, 384, 2048, 1, True, True, 5, 6)]),
    "B6": ((3, 48, 96), False, [(96, 96, 192, 2, False, False, 3, 6),
                                (192, 192, 512, 3, True, False, 3, 6),
                                (512, 384, 1024, 6, True, True, 5, 6),
                                (1024, 768, 2048, 3, True, True, 5, 6)]),
}


class PPHGNetV2(nn.Layer):
    def __init__(self, variant: str, class_num: int, class_expand: int = 2048):
        super().__init__()
        stem, use_lab, stages = _HGNETV2[variant]
        self.use_lab = use_lab
        self.stem = StemBlock(*stem, use_lab=use_lab)
        self.stages = nn.LayerList()
        for cin, mid, cout, blocks, down, light, k, layers in stages:
            self.stages.append(HGV2_Stage(cin, mid, cout, blocks, layers, down, light, k,
                                          use_lab))
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(stages[-1][2], class_expand, 1, bias_attr=False)
        self.act = nn.ReLU()
        if use_lab:
            self.lab = LearnableAffineBlock()
        self.dropout = nn.Dropout(p=0.0, mode="downscale_in_infer")
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc = nn.Linear(class_expand, class_num)
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                nn.initializer.KaimingNormal()(layer.weight)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = self.act(self.last_conv(self.avg_pool(x)))
        if self.use_lab:
            x = self.lab(x)
        return self.fc(self.flatten(self.dropout(x)))


# --------------------------------------------------------------------------------------------
# ResNet (the plain "vb" version, as PaddleClas' ResNet50)

class ResNetConvBN(nn.Layer):
    """conv -> batch-norm (the old ``nn.BatchNorm`` class, whose generated tensor names
    ``batch_norm_N`` PaddleClas' ResNet exports carry) -> optional ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, act: bool = False):
        super().__init__()
        self.use_relu = act
        self.conv = nn.Conv2D(cin, cout, k, stride=stride, padding=(k - 1) // 2,
                              bias_attr=False)
        self.bn = nn.BatchNorm(cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.relu(x) if self.use_relu else x


class BottleneckBlock(nn.Layer):
    def __init__(self, cin: int, width: int, stride: int, shortcut: bool):
        super().__init__()
        self.conv0 = ResNetConvBN(cin, width, 1, act=True)
        self.conv1 = ResNetConvBN(width, width, 3, stride, act=True)
        self.conv2 = ResNetConvBN(width, width * 4, 1)
        self.shortcut = shortcut
        if not shortcut:
            self.short = ResNetConvBN(cin, width * 4, 1, stride)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.conv2(self.conv1(self.conv0(x)))
        return self.relu(paddle.add(y, x if self.shortcut else self.short(x)))


class ResNet(nn.Layer):
    def __init__(self, depth: str, class_num: int):
        super().__init__()
        if depth != "50":
            raise UsageError(f"ResNet{depth} is not built here")
        self.stem = nn.Sequential(ResNetConvBN(3, 64, 7, 2, act=True))
        self.max_pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        blocks, cin = [], 64
        for stage, (depth_n, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            for i in range(depth_n):
                blocks.append(BottleneckBlock(cin, width, 2 if i == 0 and stage > 0 else 1,
                                              shortcut=i > 0))
                cin = width * 4
        self.blocks = nn.Sequential(*blocks)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, class_num)

    def forward(self, x):
        x = self.blocks(self.max_pool(self.stem(x)))
        return self.fc(self.flatten(self.avg_pool(x)))


# --------------------------------------------------------------------------------------------
# The ML-Decoder head

def _no_self_attention(query, *_):
    """Stands in for the decoder layer's self-attention, which ML-Decoder removes (it costs
    quadratic time in the number of queries and does not help)."""
    return query


class MLDecoder(nn.Layer):
    """Fixed random class queries cross-attend to the projected spatial features (one
    transformer decoder layer without self-attention), then a grouped 1x1 convolution turns
    each query into the logits of its ``ceil(classes / queries)`` classes."""

    def __init__(self, class_num: int, in_channels: int, query_num: int = 80,
                 embed_dim: int = 768, num_heads: int = 8, mlp_hidden_dim: int = 2048,
                 dropout: float = 0.1):
        super().__init__()
        self.class_num = class_num
        self.in_channels = in_channels
        query_num = min(max(query_num, 1), class_num)
        self.input_proj = nn.Conv2D(in_channels, embed_dim, 1)
        self.query_pos_embed = nn.Embedding(query_num, embed_dim)
        self.query_pos_embed.weight.stop_gradient = True  # the queries stay as drawn
        layer = nn.TransformerDecoderLayer(embed_dim, num_heads, mlp_hidden_dim,
                                           dropout=dropout, activation="relu",
                                           attn_dropout=dropout, act_dropout=dropout)
        # created, then removed, so that the generated names of the layers after it match
        del layer.self_attn
        layer.self_attn = _no_self_attention
        self.decoder = nn.TransformerDecoder(layer, num_layers=1)
        self.group_factor = -(-class_num // query_num)
        self.group_conv = nn.Conv2D(query_num * embed_dim, query_num * self.group_factor, 1,
                                    groups=query_num)
        nn.initializer.XavierNormal()(self.group_conv.weight)
        nn.initializer.Constant(0.0)(self.group_conv.bias)

    @property
    def num_queries(self) -> int:
        return self.query_pos_embed.weight.shape[0]

    def forward(self, x):
        tokens = nn.functional.relu(self.input_proj(x)).flatten(2).transpose([0, 2, 1])
        batch = paddle.shape(x)[0]
        queries = self.query_pos_embed.weight.unsqueeze(0).tile([batch, 1, 1])
        out = self.decoder(queries, tokens)  # [B, Q, D]
        logits = self.group_conv(out.flatten(1).unsqueeze(-1).unsqueeze(-1))
        return logits.flatten(1)[:, :self.class_num]


# --------------------------------------------------------------------------------------------

def _backbone(info: ModelInfo, num_classes: int) -> nn.Layer:
    if info.family == "pplcnet":
        return PPLCNet(float(info.variant), num_classes, class_expand=info.head_in)
    if info.family == "pphgnetv2":
        return PPHGNetV2(info.variant, num_classes, class_expand=info.head_in)
    return ResNet(info.variant, num_classes)


def build_model(name: str, num_classes: int, fresh_names: bool = True,
                head: str = "mldecoder") -> nn.Layer:
    """The backbone with a multi-label head; returns logits.

    ``head``: ``mldecoder`` swaps the backbone's ``fc`` for the ML-Decoder (PaddleX's
    ``*_ML`` models); ``linear`` keeps the backbone's own classifier (global average pool,
    then ``fc`` over the classes), PaddleClas' ImageNet layout, which learns far faster from
    scratch (docs/fine-tuning.md). Built under a fresh ``unique_name.guard`` (unless
    ``fresh_names`` is off) so that its tensors carry the names an export of the same model
    from PaddleX carries."""
    info = model_info(name)
    if num_classes < 1:
        raise UsageError(f"a model needs at least one class, got {num_classes}")
    if head not in HEADS:
        raise UsageError(f"unknown head '{head}': use {' or '.join(HEADS)}")
    scope = paddle.utils.unique_name.guard() if fresh_names else contextlib.nullcontext()
    with scope:
        net = _backbone(info, num_classes)
        if head == "mldecoder":
            net.avg_pool = nn.Identity()  # the head reads the whole feature map
            net.flatten = nn.Identity()
            net.fc = MLDecoder(num_classes, info.head_in, query_num=info.query_num)
    net.model_name = name
    net.head = head
    return net


class WithSigmoid(nn.Layer):
    """What is exported: scores in [0, 1], as the pipeline's threshold expects."""

    def __init__(self, net: nn.Layer):
        super().__init__()
        self.net = net

    def forward(self, x):
        return nn.functional.sigmoid(self.net(x))
