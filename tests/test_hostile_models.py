"""Model directories and pipeline YAMLs from strangers: bounded YAML, preprocessing and labels
checked when the model loads (one model error, not a failure per image), wrong types in a
pipeline YAML named instead of a TypeError."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys

import pytest
import yaml

from mlcls import create_pipeline
from mlcls.config import load_pipeline_config, settings_from_config
from mlcls.errors import ModelError, UsageError
from mlcls.model import load_model_dir

LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_model, target)
    return target


def edit_yml(model_dir, change) -> None:
    path = model_dir / "inference.yml"
    cfg = yaml.safe_load(path.read_text())
    change(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def laughs_into(model_dir, where: str) -> None:
    """A billion-laughs document whose last alias lands on ``where``."""
    text = (model_dir / "inference.yml").read_text()
    cfg = yaml.safe_load(text)
    cfg.pop("Global", None)
    body = yaml.safe_dump(cfg, sort_keys=False)
    if where == "label_list":
        body = body.replace("    label_list:\n", "    label_list: *i\n    old_labels:\n")
        assert "label_list: *i" in body
        text = LAUGHS + body
    else:
        text = LAUGHS + "Global:\n  model_name: *i\n" + body
    (model_dir / "inference.yml").write_text(text)


@pytest.mark.parametrize("where", ["label_list", "model_name"])
def test_billion_laughs_is_refused_quickly_and_cheaply(model_copy, where):
    laughs_into(model_copy, where)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelError, match="inference.yml: .*(aliases|expands to more than)"):
        load_model_dir(model_copy)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000, f"peak memory grew by {grown_kib} KiB"


def test_a_pipeline_yaml_with_laughs_is_a_usage_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(LAUGHS + "SubModules:\n  ImageMultiLabelClassification:\n"
                    "    model_name: *i\n")
    with pytest.raises(UsageError, match="p.yaml: .*(aliases|expands to more than)"):
        load_pipeline_config(str(path))


def test_a_huge_yaml_file_is_not_read_whole(model_copy):
    with open(model_copy / "inference.yml", "a") as fh:
        fh.write("# " + "x" * (5 * 1024 * 1024) + "\n")
    with pytest.raises(ModelError, match="larger than"):
        load_model_dir(model_copy)


@pytest.mark.parametrize("size, message", [
    (["a", "b"], "expected whole numbers of pixels, got 'a'"),
    (100000, "100000 is outside 1..8192"),
    ([32, 32, 3], "expected a number or \\[width, height\\], got 3 values"),
    (0, "0 is outside"),
    (True, "expected whole numbers"),
    ({"w": 3}, "expected whole numbers"),
])
def test_preprocessing_is_checked_at_load(model_copy, size, message):
    def change(cfg):
        cfg["PreProcess"]["transform_ops"][0]["ResizeImage"]["size"] = size

    edit_yml(model_copy, change)
    with pytest.raises(ModelError, match=f"transform_ops\\[0\\] \\(ResizeImage.size\\): {message}"):
        load_model_dir(model_copy)


def test_bad_normalisation_is_checked_at_load(model_copy):
    def change(cfg):
        for op in cfg["PreProcess"]["transform_ops"]:
            if "NormalizeImage" in op:
                op["NormalizeImage"]["mean"] = [0.5, "x", 0.5]

    edit_yml(model_copy, change)
    with pytest.raises(ModelError, match="NormalizeImage.mean\\): expected 3 numbers"):
        load_model_dir(model_copy)


def test_label_entries_must_be_names(model_copy):
    def change(cfg):
        cfg["PostProcess"]["MultiLabelThreshOutput"]["label_list"][2] = ["nested"]

    edit_yml(model_copy, change)
    with pytest.raises(ModelError, match="label_list: entry 2 is a list"):
        load_model_dir(model_copy)


def test_a_label_list_of_the_wrong_length_fails_the_model_at_load(model_copy):
    def change(cfg):
        cfg["PostProcess"]["MultiLabelThreshOutput"]["label_list"] = ["a", "b", "c"]

    edit_yml(model_copy, change)
    with pytest.raises(ModelError, match="label_list has 3 names but the model outputs 5"):
        create_pipeline(model_dir=model_copy, device="cpu")


@pytest.mark.parametrize("key, value, shown", [
    ("model_name", ["PP-LCNet_x1_0_ML", "x"], "a list with 2 entries"),
    ("model_dir", {"path": "/x"}, "a dict with 1 entries"),
    ("device", 3, "3"),
])
def test_pipeline_yaml_types_are_named(key, value, shown):
    cfg = {"SubModules": {"ImageMultiLabelClassification": {key: value}}}
    with pytest.raises(UsageError, match=f"{key} must be a string, got {shown}"):
        settings_from_config(cfg)


def test_the_cli_reports_a_bad_pipeline_yaml_without_a_traceback(tmp_path, image_dir):
    path = tmp_path / "p.yaml"
    path.write_text("SubModules:\n  ImageMultiLabelClassification:\n    model_dir:\n"
                    "      nested: true\n")
    proc = subprocess.run([sys.executable, "-m", "mlcls.cli", "--pipeline", str(path),
                           "--input", str(image_dir)], capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())
    assert proc.returncode == 2
    assert "model_dir must be a string" in proc.stderr and "Traceback" not in proc.stderr
