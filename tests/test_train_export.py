"""``mlcls train`` -> checkpoints -> ``mlcls export`` / ``mlcls eval`` -> the pipeline, on a
tiny generated dataset (a few steps of real Paddle training on the CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from mldataset import NAMES, make_dataset
from PIL import Image

import mlcls
from mlcls.cli import main

ARGS = ["--model", "PP-LCNet_x0_25_ML", "--device", "cpu", "--image_size", "32",
        "--batch_size", "8"]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("mlds") / "ds", n_train=24, n_val=12)


@pytest.fixture(scope="session")
def trained(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "out"
    assert main(["train", "--dataset", str(tiny_dataset), "--output", str(out), "--epochs",
                 "2", *ARGS]) == 0
    return out


def test_training_writes_checkpoints_curves_and_best_model(trained):
    for epoch in (1, 2):
        assert (trained / f"epoch_{epoch}" / "model.pdparams").is_file()
        assert (trained / f"epoch_{epoch}" / "model.pdopt").is_file()
    history = json.loads((trained / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_map"]) == 2
    assert all(0.0 <= v <= 1.0 for v in history["val_map"])
    assert history["best_map"] == max(history["val_map"])
    with Image.open(trained / "curves.png") as png:
        assert png.format == "PNG"
    inference = trained / "best_model" / "inference"
    for name in ("inference.json", "inference.pdiparams", "inference.yml"):
        assert (inference / name).stat().st_size > 0
    cfg = yaml.safe_load((inference / "inference.yml").read_text())
    assert cfg["PostProcess"]["MultiLabelThreshOutput"]["label_list"] == NAMES
    assert cfg["Global"]["model_name"] == "PP-LCNet_x0_25_ML"


def test_exported_model_runs_in_the_pipeline_with_the_trained_scores(trained, tiny_dataset):
    """The export is faithful: the pipeline's scores equal the dygraph network's."""
    import paddle

    from mlcls.training.data import SplitData
    from mlcls.training.dataset import load_dataset
    from mlcls.training.models import build_model
    from mlcls.training.scoring import score_files
    from mlcls.training.trainer import predict_scores

    ds = load_dataset(tiny_dataset)
    head = json.loads((trained / "train_config.json").read_text())["head"]
    net = build_model("PP-LCNet_x0_25_ML", len(NAMES), head=head)
    missing, unexpected = net.set_state_dict(
        paddle.load(str(trained / "best_model" / "model.pdparams")))
    assert not missing and not unexpected
    expected = predict_scores(net, SplitData(ds.splits["val"], 32))
    pipeline = mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                                     model_dir=trained / "best_model" / "inference")
    try:
        got = score_files(pipeline, ds.splits["val"].paths, batch_size=5)
        results = list(pipeline.predict([str(p) for p in ds.splits["val"].paths[:3]],
                                        threshold=0.0))
    finally:
        pipeline.close()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.all((got >= 0) & (got <= 1))  # the sigmoid is inside the graph
    assert results[0]["device"] == "cpu"
    assert set(results[0]["label_names"]) <= set(NAMES)
    assert results[0]["scores"] == sorted(results[0]["scores"], reverse=True)


def test_export_command(trained, tmp_path, capsys):
    target = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(trained / "epoch_1"), "--output", str(target),
                 "--threshold", "0.3"]) == 0
    cfg = yaml.safe_load((target / "inference.yml").read_text())
    assert cfg["PostProcess"]["MultiLabelThreshOutput"]["threshold"] == 0.3
    assert cfg["PreProcess"]["transform_ops"][0]["ResizeImage"]["size"] == 32
    with mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=target) as pipeline:
        res = next(iter(pipeline.predict(np.zeros((40, 50, 3), np.uint8), threshold=0.0)))
    assert len(res["class_ids"]) == len(NAMES)
    assert main(["export", "--checkpoint", str(tmp_path / "nothing"), "--output",
                 str(tmp_path / "x")]) == 2
    assert "checkpoint weights not found" in capsys.readouterr().err


def test_export_format_onnx_from_a_checkpoint(trained, tmp_path):
    paddle_dir, onnx_dir = tmp_path / "paddle", tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(trained / "epoch_1"), "--output",
                 str(paddle_dir)]) == 0
    assert main(["export", "--format", "onnx", "--checkpoint", str(trained / "epoch_1"),
                 "--output", str(onnx_dir)]) == 0
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["inference.onnx", "inference.yml"]
    image = np.full((40, 50, 3), 90, np.uint8)
    scores = []
    for model_dir, engine in ((paddle_dir, "paddle"), (onnx_dir, "onnxruntime")):
        with mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                                   model_dir=model_dir, engine=engine) as pipeline:
            res = next(iter(pipeline.predict(image, threshold=0.0)))
        scores.append(dict(zip(res["class_ids"], res["scores"])))
    assert scores[0].keys() == scores[1].keys()
    assert all(abs(scores[0][k] - scores[1][k]) < 1e-4 for k in scores[0])


def test_eval_json_and_calibration(trained, tiny_dataset, tmp_path, capsys):
    import shutil

    from mlcls.training.dataset import load_dataset
    from mlcls.training.metrics import evaluate

    model = tmp_path / "model"
    shutil.copytree(trained / "best_model" / "inference", model)
    assert main(["eval", "--model_dir", str(model), "--dataset", str(tiny_dataset),
                 "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["mAP"] <= 1.0
    assert report["device"] == "cpu" and report["images"] == 12
    # eval's mAP is the integral mAP of the exported model's pipeline scores (a model this
    # briefly trained scores every image nearly alike, so the comparison with the trainer's
    # dygraph figure would hinge on ties; the scores themselves are compared above)
    from mlcls.training.metrics import mean_average_precision
    from mlcls.training.scoring import score_files

    ds = load_dataset(tiny_dataset)
    with mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=model) as pipeline:
        direct = score_files(pipeline, ds.splits["val"].paths)
    assert report["mAP"] == pytest.approx(
        mean_average_precision(direct, ds.splits["val"].labels), abs=1e-9)
    assert main(["eval", "--model_dir", str(model), "--dataset", str(tiny_dataset),
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "mAP (integral)" in text and "mAP (11-point)" in text and "square" in text

    assert main(["eval", "--model_dir", str(model), "--dataset", str(tiny_dataset),
                 "--device", "cpu", "--calibrate", "--write", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    thresholds = report["calibrated"]["threshold"]
    cfg = yaml.safe_load((model / "inference.yml").read_text())
    written = cfg["PostProcess"]["MultiLabelThreshOutput"]["threshold"]
    assert [written[i] for i in range(len(NAMES))] == thresholds
    assert report["calibrated"]["micro"]["f1"] >= report["micro"]["f1"] - 1e-9
    # the pipeline applies the per-class thresholds it now reads from inference.yml
    with mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=model) as pipeline:
        kept = [set(r["class_ids"]) for r in pipeline.predict(
            [str(p) for p in ds.splits["val"].paths])]
    with mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=model) as pipeline:
        scores = score_files(pipeline, ds.splits["val"].paths)
    expected = [set(np.flatnonzero(row > np.array(thresholds))) for row in scores]
    assert kept == expected
    assert evaluate(scores, ds.splits["val"].labels, thresholds).f1 == pytest.approx(
        report["calibrated"]["f1"])


def test_resume_continues_after_the_last_checkpoint(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["train", "--dataset", str(tiny_dataset), "--output", str(out), *ARGS]
    assert main([*base, "--epochs", "1"]) == 0
    first = json.loads((out / "history.json").read_text())
    capsys.readouterr()
    assert main([*base, "--epochs", "2", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming after epoch 1" in err and "epoch 2/2" in err and "epoch 1/2" not in err
    history = json.loads((out / "history.json").read_text())
    assert history["loss"][0] == first["loss"][0] and len(history["loss"]) == 2
    assert main([*base, "--epochs", "2", "--resume", "--image_size", "48"]) == 2
    assert "trained with image_size 32" in capsys.readouterr().err
    # auto chose the linear head (no pretrained weights); the run config keeps the choice
    assert json.loads((out / "train_config.json").read_text())["head"] == "linear"
    assert main([*base, "--epochs", "2", "--resume", "--head", "mldecoder"]) == 2
    assert "trained with head 'linear'" in capsys.readouterr().err


def test_pretrained_weights_are_loaded(trained, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--dataset", str(tiny_dataset), "--output", str(out), "--epochs",
                 "1", "--pretrained", str(trained / "best_model"), *ARGS]) == 0
    assert "loaded" in capsys.readouterr().err


def test_bad_requests_are_refused(tiny_dataset, tmp_path, capsys):
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit):
        main(["train", "--dataset", str(tiny_dataset), "--output", out,
              "--model", "NoSuchNet"])
    assert "NoSuchNet" in capsys.readouterr().err
    broken = make_dataset(tmp_path / "broken", n_train=4, n_val=2)
    (broken / "train.txt").write_text("images/train_000.png\t1,1\n")
    assert main(["train", "--dataset", str(broken), "--output", out, *ARGS]) == 2
    assert "train.txt:1" in capsys.readouterr().err
    assert main(["train", "--dataset", str(tiny_dataset), "--output", out, "--resume",
                 *ARGS]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "--dataset", str(tiny_dataset), "--output", out, *ARGS,
                 "--device", "warp:0"]) == 2
    assert "warp" in capsys.readouterr().err
