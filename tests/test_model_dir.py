from __future__ import annotations

import shutil

import pytest
import yaml

from mlcls.errors import ModelError
from mlcls.model import load_model_dir


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_model, target)
    return target


def test_reads_paddlex_layout(tiny_model):
    spec = load_model_dir(tiny_model)
    assert spec.graph_file.name == "inference.json"
    assert spec.model_name == "TinyNet_ML"
    assert spec.label_list == [f"class_{i}" for i in range(5)]
    assert spec.threshold == 0.5
    assert [next(iter(op)) for op in spec.transform_ops] == [
        "ResizeImage", "NormalizeImage", "ToCHWImage"]


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(ModelError, match=f"{tmp_path / 'nope'}: model directory does not"):
        load_model_dir(tmp_path / "nope")


@pytest.mark.parametrize("name, message", [
    ("inference.json", "missing the network graph"),
    ("inference.pdiparams", "inference.pdiparams: missing weights file"),
    ("inference.yml", "inference.yml: missing model configuration"),
])
def test_missing_file_is_named(model_copy, name, message):
    (model_copy / name).unlink()
    with pytest.raises(ModelError, match=message):
        load_model_dir(model_copy)


def test_empty_weights_file_is_named(model_copy):
    (model_copy / "inference.pdiparams").write_bytes(b"")
    with pytest.raises(ModelError, match="inference.pdiparams: weights file is empty"):
        load_model_dir(model_copy)


def test_corrupt_yaml_is_named(model_copy):
    (model_copy / "inference.yml").write_text("PreProcess: [unclosed\n")
    with pytest.raises(ModelError, match="inference.yml: corrupt model configuration"):
        load_model_dir(model_copy)


def test_not_a_multilabel_model(model_copy):
    cfg = yaml.safe_load((model_copy / "inference.yml").read_text())
    cfg["PostProcess"] = {"Topk": {"topk": 5}}
    (model_copy / "inference.yml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelError, match="Topk, not MultiLabelThreshOutput"):
        load_model_dir(model_copy)


def test_corrupt_weights_fail_at_load_with_the_directory_named(model_copy):
    from mlcls import create_pipeline

    (model_copy / "inference.pdiparams").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match=str(model_copy)):
        create_pipeline(model_dir=model_copy, device="cpu")
