"""Every trainable model: one training step reaches every weight, and the export gives the
pipeline the training network's scores in PaddleX's model-directory layout. Also the layer
names PaddleClas gives these networks, on which pretrained weights depend."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from mlcls.training.zoo import MODELS

SIZE = 64  # 2x2 feature cells: with one, attention has nothing to choose and q, k get no gradient
CLASSES = 3


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        # smooth images: the scores then differ from image to image
        base = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(base).resize((80 + 10 * i, 70), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("name, head", [(name, "mldecoder") for name in MODELS]
                         + [("PP-LCNet_x0_25_ML", "linear"), ("PP-HGNetV2-B0_ML", "linear")])
def test_model_trains_a_step_and_exports_faithfully(name, head, images, tmp_path):
    import paddle

    import mlcls
    from mlcls.inputs import decode_bytes
    from mlcls.preprocess import NumpyPreprocessor
    from mlcls.training.data import preprocess_ops
    from mlcls.training.export import export_network
    from mlcls.training.loss import make_loss
    from mlcls.training.models import build_model
    from mlcls.training.scoring import score_files

    paddle.seed(0)
    net = build_model(name, CLASSES, head=head)
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.normal(size=(4, 3, SIZE, SIZE)).astype("float32"))
    y = paddle.to_tensor((rng.random((4, CLASSES)) < 0.4).astype("float32"))
    logits = net(x)
    assert logits.shape == [4, CLASSES]
    loss = make_loss("asl")(logits, y)
    assert np.isfinite(float(loss))
    loss.backward()
    dead = [n for n, p in net.named_parameters() if not p.stop_gradient and (
            p.grad is None or not np.any(p.grad.numpy()))]
    assert not dead, f"no gradient reaches {dead[:5]}"
    opt = paddle.optimizer.AdamW(1e-3, parameters=net.parameters())
    opt.step()
    opt.clear_grad()

    target = export_network(net, tmp_path / "model", model_name=name, image_size=SIZE,
                            label_names=["a", "b", "c"])
    cfg = yaml.safe_load((target / "inference.yml").read_text())
    assert list(cfg) == ["Global", "PreProcess", "PostProcess"]  # PaddleX's sections
    assert cfg["Global"]["model_name"] == name
    assert [next(iter(op)) for op in cfg["PreProcess"]["transform_ops"]] == [
        "ResizeImage", "NormalizeImage", "ToCHWImage"]
    assert cfg["PostProcess"]["MultiLabelThreshOutput"]["label_list"] == ["a", "b", "c"]
    assert (target / "inference.json").is_file() and (target / "inference.pdiparams").is_file()

    pre = NumpyPreprocessor(preprocess_ops(SIZE))
    batch = pre.collate([pre.prepare(decode_bytes(p.read_bytes(), str(p))) for p in images])
    net.eval()
    with paddle.no_grad():
        expected = paddle.nn.functional.sigmoid(net(paddle.to_tensor(batch))).numpy()
    with mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=target) as pipeline:
        got = score_files(pipeline, images, batch_size=2)
    np.testing.assert_allclose(got, expected, atol=1e-4)


# Tensor names as PaddleClas' model definitions produce them (legendary_models/pp_lcnet.py,
# pp_hgnet_v2.py, resnet.py with gears/ml_decoder.py replacing ``fc``), with their shapes for
# these models at 80 classes.
PADDLECLAS_NAMES = {
    "PP-LCNet_x1_0_ML": {
        "conv1.conv.weight": [16, 3, 3, 3],
        "conv1.bn._variance": [16],
        "blocks2.0.dw_conv.conv.weight": [16, 1, 3, 3],
        "blocks5.5.pw_conv.bn._mean": [256],
        "blocks6.1.se.conv2.bias": [512],
        "last_conv.weight": [1280, 512, 1, 1],
        "fc.input_proj.weight": [768, 1280, 1, 1],
        "fc.query_pos_embed.weight": [80, 768],
        "fc.decoder.layers.0.cross_attn.q_proj.weight": [768, 768],
        "fc.decoder.layers.0.linear1.weight": [768, 2048],
        "fc.decoder.layers.0.norm3.bias": [768],
        "fc.group_conv.weight": [80, 768, 1, 1],
        "fc.group_conv.bias": [80],
    },
    "PP-HGNetV2-B0_ML": {
        "stem.stem1.conv.weight": [16, 3, 3, 3],
        "stem.stem1.lab.scale": [1],
        "stem.stem2a.conv.weight": [8, 16, 2, 2],
        "stages.0.blocks.0.layers.0.conv.weight": [16, 16, 3, 3],
        "stages.2.downsample.conv.weight": [256, 1, 3, 3],
        "stages.2.blocks.1.layers.2.conv2.conv.weight": [64, 1, 5, 5],
        "stages.3.blocks.0.aggregation_excitation_conv.bn._mean": [1024],
        "last_conv.weight": [2048, 1024, 1, 1],
        "lab.bias": [1],
        "fc.input_proj.weight": [768, 2048, 1, 1],
    },
    "PP-HGNetV2-B6_ML": {
        "stem.stem4.conv.weight": [96, 48, 1, 1],
        "stages.0.blocks.1.aggregation_squeeze_conv.conv.weight": [96, 768, 1, 1],
        "stages.3.blocks.2.layers.5.conv2.bn.weight": [768],
        "last_conv.weight": [2048, 2048, 1, 1],
    },
    "ResNet50_ML": {
        "stem.0.conv.weight": [64, 3, 7, 7],
        "stem.0.bn._mean": [64],
        "blocks.0.short.conv.weight": [256, 64, 1, 1],
        "blocks.3.short.conv.weight": [512, 256, 1, 1],
        "blocks.15.conv2.bn.weight": [2048],
        "fc.input_proj.weight": [768, 2048, 1, 1],
    },
}


@pytest.mark.parametrize("name", list(PADDLECLAS_NAMES))
def test_tensor_names_are_paddleclas(name):
    from mlcls.training.models import build_model

    state = build_model(name, 80).state_dict()
    for key, shape in PADDLECLAS_NAMES[name].items():
        assert key in state, f"{name} lacks PaddleClas' {key}"
        assert list(state[key].shape) == shape, key
    assert not any(k.startswith(("backbone.", "head.")) for k in state)


def test_generated_names_follow_paddleclas_creation_order():
    """An inference model only knows generated names; ours must come out the same."""
    from mlcls.training.models import build_model

    state = build_model("PP-LCNet_x1_0_ML", 80).state_dict()
    generated = {k: v.name for k, v in state.items()}
    assert generated["conv1.conv.weight"] == "conv2d_0.w_0"
    assert generated["last_conv.weight"] == "conv2d_31.w_0"
    assert generated["fc.input_proj.weight"] == "conv2d_32.w_0"
    # the classifier the head replaces (linear_0) and the removed self-attention
    # (linear_1..4) were created first, as in PaddleClas
    assert generated["fc.decoder.layers.0.cross_attn.q_proj.weight"] == "linear_5.w_0"
    assert generated["fc.group_conv.weight"] == "conv2d_33.w_0"
    assert generated["blocks6.1.pw_conv.bn._variance"] == "batch_norm2d_26.w_2"
    # built twice in one process, the names do not drift
    again = build_model("PP-LCNet_x1_0_ML", 80).state_dict()
    assert {k: v.name for k, v in again.items()} == generated


def test_more_classes_than_queries_share_queries():
    import paddle

    from mlcls.training.models import MLDecoder

    head = MLDecoder(250, 16, query_num=80, embed_dim=32, num_heads=4, mlp_hidden_dim=64)
    assert head.num_queries == 80 and head.group_factor == 4
    head.eval()
    out = head(paddle.randn([2, 16, 3, 3]))
    assert out.shape == [2, 250]
