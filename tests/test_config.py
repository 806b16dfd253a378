from __future__ import annotations

import pytest
import yaml

from mlcls import create_pipeline
from mlcls.cli import main
from mlcls.errors import UsageError


def _write_yaml(path, module):
    cfg = {"pipeline_name": "image_multilabel_classification",
           "SubModules": {"ImageMultiLabelClassification": module}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_yaml_beats_inference_yml_and_call_beats_yaml(tiny_model, tmp_path):
    cfg = _write_yaml(tmp_path / "p.yaml", {"model_name": "TinyNet_ML",
                                            "model_dir": str(tiny_model),
                                            "batch_size": 3, "threshold": 0.25})
    from_yaml = create_pipeline(str(cfg), device="cpu")
    assert from_yaml.batch_size == 3 and from_yaml.threshold == 0.25
    called = create_pipeline(str(cfg), device="cpu", batch_size=2, threshold=0.75)
    assert called.batch_size == 2 and called.threshold == 0.75
    plain = create_pipeline("multi_label_image_classification", device="cpu",
                            model_dir=tiny_model)
    assert plain.threshold is None  # the model's own, from inference.yml
    img = [[[(i * 7) % 256] * 3 for i in range(20)] for _ in range(20)]
    import numpy as np

    arr = np.array(img, dtype=np.uint8)
    low = next(from_yaml.predict(arr))
    high = next(called.predict(arr))
    assert all(s > 0.25 for s in low["scores"]) and all(s > 0.75 for s in high["scores"])
    assert set(high["class_ids"]) <= set(low["class_ids"])
    for p in (from_yaml, called, plain):
        p.close()


def test_legacy_pipeline_layout_from_the_seed(tiny_model, tmp_path):
    cfg = tmp_path / "legacy.yaml"
    cfg.write_text(yaml.safe_dump({"Pipeline": {"model": str(tiny_model), "batch_size": 4,
                                                "device": "cpu"}}))
    with create_pipeline(str(cfg)) as pipeline:
        assert pipeline.batch_size == 4
        assert pipeline.device == "cpu"


@pytest.mark.parametrize("text, message", [
    ("pipeline_name: object_detection\nSubModules: {}\n", "pipeline_name 'object_detection'"),
    ("- just\n- a list\n", "expected a mapping"),
    ("SubModules: {}\n", "expected SubModules.ImageMultiLabelClassification"),
    ("SubModules:\n  ImageMultiLabelClassification:\n    batch_size: 0\n", "batch_size"),
])
def test_bad_pipeline_yaml_is_named(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(UsageError, match=message):
        create_pipeline(str(cfg))


def test_unknown_pipeline_name():
    with pytest.raises(UsageError, match="unknown pipeline 'ocr'"):
        create_pipeline("ocr")


def test_get_pipeline_config_round_trips(tmp_path, capsys, tiny_model):
    assert main(["--get_pipeline_config", "multi_label_image_classification",
                 "--save_path", str(tmp_path / "my_path")]) == 0
    written = tmp_path / "my_path" / "multi_label_image_classification.yaml"
    assert str(written) in capsys.readouterr().out
    cfg = yaml.safe_load(written.read_text())
    module = cfg["SubModules"]["ImageMultiLabelClassification"]
    assert module["model_name"] == "PP-LCNet_x1_0_ML"
    module["model_dir"] = str(tiny_model)
    written.write_text(yaml.safe_dump(cfg))
    with create_pipeline(str(written), device="cpu") as pipeline:
        assert pipeline.model.model_dir == tiny_model
