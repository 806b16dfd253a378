"""``--pretrained`` from the two formats users have: training checkpoints keyed by
PaddleClas' layer names and inference-model folders keyed by generated names; the head of
another class count skipped, another architecture refused. Weights are made here; the
PaddleX-made reference model, when present, checks the whole mapping against PaddleX's own
scores."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from mlcls.errors import UsageError
from shared_paths import REFERENCE

MODEL = "PP-LCNet_x0_25_ML"


def _build(name=MODEL, classes=3, seed=0, **kw):
    import paddle

    from mlcls.training.models import build_model

    paddle.seed(seed)
    return build_model(name, classes, **kw)


def _values(net):
    return {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def source():
    """A 10-class model whose batch-norm statistics are not the initial ones."""
    import paddle

    net = _build(classes=10, seed=1)
    for layer in net.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer._mean.set_value(paddle.rand(layer._mean.shape))
    return net


def test_paddleclas_checkpoint_of_another_class_count(source, tmp_path):
    import paddle

    from mlcls.training.weights import load_pretrained

    path = tmp_path / "best_model.pdparams"  # PaddleX's output/best_model layout
    paddle.save(source.state_dict(), str(path))
    net = _build()
    report = load_pretrained(net, tmp_path, MODEL)
    total = len(net.state_dict())
    head = {"fc.query_pos_embed.weight", "fc.group_conv.weight", "fc.group_conv.bias"}
    assert {name for name, _, _ in report.skipped} == head
    assert len(report.loaded) == total - 3 and not report.missing
    assert f"loaded {total - 3} of {total} tensors" in report.summary()
    assert "the head" in report.summary()
    want, got = _values(source), _values(net)
    for key in report.loaded:
        np.testing.assert_array_equal(got[key], want[key])


def test_imagenet_backbone_file_fills_the_backbone(source, tmp_path):
    """PaddleClas' ImageNet files (PPLCNet_x0_25_pretrained.pdparams) hold the backbone and
    a plain ``fc`` classifier of 1000 classes."""
    import paddle

    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    state["fc.weight"] = paddle.zeros([1280, 1000])
    state["fc.bias"] = paddle.zeros([1000])
    paddle.save(state, str(tmp_path / "PPLCNet_x0_25_pretrained.pdparams"))
    net = _build()
    report = load_pretrained_file(net, tmp_path / "PPLCNet_x0_25_pretrained.pdparams")
    assert sorted(report.unused) == ["fc.bias", "fc.weight"]
    assert report.missing and all(k.startswith("fc.") for k in report.missing)
    assert len(report.loaded) == len(state) - 2
    np.testing.assert_array_equal(_values(net)["blocks6.1.se.conv1.weight"],
                                  source.state_dict()["blocks6.1.se.conv1.weight"].numpy())


def load_pretrained_file(net, path):
    from mlcls.training.weights import load_pretrained

    return load_pretrained(net, path, MODEL)


def test_inference_model_folder(source, tmp_path):
    from mlcls.training.export import export_network
    from mlcls.training.weights import load_pretrained

    folder = export_network(source, tmp_path / "inf", model_name=MODEL, image_size=32,
                            label_names=[str(i) for i in range(10)])
    for target_classes, skipped in ((10, 0), (3, 3)):
        net = _build(classes=target_classes)
        report = load_pretrained(net, folder, MODEL)
        assert report.kind == "inference model"
        assert len(report.skipped) == skipped and not report.missing
        want, got = _values(source), _values(net)
        for key in report.loaded:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # the .pdiparams file itself names the folder too
    assert load_pretrained(_build(), folder / "inference.pdiparams", MODEL).loaded


def test_inference_model_with_shifted_generated_names(tmp_path):
    """An exporter that built other layers first numbers the tensors on from there."""
    import paddle

    from mlcls.training.export import export_network
    from mlcls.training.weights import load_pretrained

    with paddle.utils.unique_name.guard():
        paddle.nn.Conv2D(1, 1, 1), paddle.nn.BatchNorm2D(2), paddle.nn.Linear(2, 2)
        paddle.seed(3)
        from mlcls.training.models import build_model

        shifted = build_model(MODEL, 3, fresh_names=False)
    assert shifted.state_dict()["conv1.conv.weight"].name == "conv2d_1.w_0"
    folder = export_network(shifted, tmp_path / "inf", model_name=MODEL, image_size=32,
                            label_names=["a", "b", "c"])
    net = _build()
    report = load_pretrained(net, folder, MODEL)
    assert len(report.loaded) == len(net.state_dict())
    want, got = _values(shifted), _values(net)
    for key in got:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_another_architecture_is_refused(source, tmp_path):
    import paddle

    from mlcls.training.export import export_network
    from mlcls.training.weights import load_pretrained

    paddle.save(source.state_dict(), str(tmp_path / "x025.pdparams"))
    with pytest.raises(UsageError, match=r"not weights of PP-LCNet_x0_5_ML.*another shape"):
        load_pretrained(_build("PP-LCNet_x0_5_ML"), tmp_path / "x025.pdparams",
                        "PP-LCNet_x0_5_ML")
    with pytest.raises(UsageError, match=r"not weights of ResNet50_ML.*named like"):
        load_pretrained(_build("ResNet50_ML"), tmp_path / "x025.pdparams", "ResNet50_ML")
    folder = export_network(source, tmp_path / "inf", model_name=MODEL, image_size=32,
                            label_names=[str(i) for i in range(10)])
    with pytest.raises(UsageError, match=r"inference.yml names PP-LCNet_x0_25_ML"):
        load_pretrained(_build("PP-HGNetV2-B0_ML"), folder, "PP-HGNetV2-B0_ML")
    # without the model name to go by, the tensors themselves give it away
    cfg = yaml.safe_load((folder / "inference.yml").read_text())
    del cfg["Global"]
    (folder / "inference.yml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(UsageError, match="not weights of PP-HGNetV2-B0_ML"):
        load_pretrained(_build("PP-HGNetV2-B0_ML"), folder, "PP-HGNetV2-B0_ML")


def test_unreadable_sources_are_named(tmp_path):
    from mlcls.training.weights import load_pretrained

    with pytest.raises(UsageError, match="no such file"):
        load_pretrained(_build(), tmp_path / "nothing", MODEL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="expected a .pdparams file"):
        load_pretrained(_build(), tmp_path / "empty", MODEL)
    (tmp_path / "bad.pdparams").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="bad.pdparams"):
        load_pretrained(_build(), tmp_path / "bad.pdparams", MODEL)
    (tmp_path / "inf").mkdir()
    (tmp_path / "inf" / "inference.pdiparams").write_bytes(b"")
    with pytest.raises(UsageError, match="without inference.json"):
        load_pretrained(_build(), tmp_path / "inf", MODEL)


REF_MODEL = REFERENCE / "model" / "PP-LCNet_x1_0_ML"


@pytest.mark.skipif(not REF_MODEL.is_dir(), reason=f"no reference model at {REF_MODEL}")
def test_paddlex_inference_model_gives_paddlex_scores_in_the_training_net():
    """The whole chain on a model PaddleX exported: generated names -> our layer tree ->
    forward pass, against PaddleX's own scores on the reference images."""
    import paddle

    from mlcls.inputs import decode_bytes
    from mlcls.preprocess import NumpyPreprocessor
    from mlcls.training.weights import load_pretrained

    net = _build("PP-LCNet_x1_0_ML", classes=80)
    report = load_pretrained(net, REF_MODEL, "PP-LCNet_x1_0_ML")
    assert len(report.loaded) == len(net.state_dict()) == 167
    order = (REFERENCE / "expected" / "raw_scores_order.txt").read_text().split()
    raw = np.load(REFERENCE / "expected" / "raw_scores.npy")
    cfg = yaml.safe_load((REF_MODEL / "inference.yml").read_text())
    pre = NumpyPreprocessor(cfg["PreProcess"]["transform_ops"])
    rows = [0, 9, 20]
    batch = pre.collate([pre.prepare(decode_bytes((REFERENCE / "images" / order[i])
                                                  .read_bytes(), order[i])) for i in rows])
    net.eval()
    with paddle.no_grad():
        scores = paddle.nn.functional.sigmoid(net(paddle.to_tensor(batch))).numpy()
    np.testing.assert_allclose(scores, raw[rows], atol=1e-4)
    # fine-tuning it for 5 classes keeps everything but the head
    small = _build("PP-LCNet_x1_0_ML", classes=5)
    report = load_pretrained(small, REF_MODEL, "PP-LCNet_x1_0_ML")
    assert len(report.loaded) == 164 and len(report.skipped) == 3


def test_auto_head_follows_the_pretrained_weights(source, tmp_path):
    """``--head auto``: the ML-Decoder when the weights bring one (checkpoint or inference
    folder), else the backbone's own classifier, whose ``fc`` then loads by name from an
    ImageNet-style file of the same class count."""
    import paddle

    from mlcls.training.export import export_network
    from mlcls.training.trainer import TrainConfig, resolve_head
    from mlcls.training.weights import load_pretrained

    def head(pretrained):
        return resolve_head(TrainConfig("d", MODEL, "o", pretrained=pretrained))

    paddle.save(source.state_dict(), str(tmp_path / "ml.pdparams"))
    ml_folder = export_network(source, tmp_path / "ml_inf", model_name=MODEL, image_size=32,
                               label_names=[str(i) for i in range(10)])
    linear = _build(head="linear")
    paddle.save(linear.state_dict(), str(tmp_path / "linear.pdparams"))
    linear_folder = export_network(linear, tmp_path / "linear_inf", model_name=MODEL,
                                   image_size=32, label_names=["a", "b", "c"])
    assert head(None) == "linear"
    assert head(str(tmp_path / "ml.pdparams")) == "mldecoder"
    assert head(str(ml_folder)) == "mldecoder"
    assert head(str(tmp_path / "linear.pdparams")) == "linear"
    assert head(str(linear_folder)) == "linear"
    assert head(str(tmp_path / "missing")) == "linear"  # load_pretrained names the problem
    assert resolve_head(TrainConfig("d", MODEL, "o", head="mldecoder")) == "mldecoder"

    again = _build(head="linear", seed=5)
    report = load_pretrained(again, tmp_path / "linear.pdparams", MODEL)
    assert len(report.loaded) == len(again.state_dict()) and not report.skipped
    np.testing.assert_array_equal(_values(again)["fc.weight"], _values(linear)["fc.weight"])
    from_folder = load_pretrained(_build(head="linear", seed=6), linear_folder, MODEL)
    assert len(from_folder.loaded) == len(again.state_dict())
