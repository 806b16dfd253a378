"""The demo model that ships inside the package (built by scripts/build_demo_model.py)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import yaml

import mlcls
from mlcls.model import load_model_dir

ASSETS = Path(str(resources.files("mlcls") / "assets"))
DEMO = ASSETS / "demo_model"


@pytest.fixture(scope="module")
def demo_pipeline():
    if not (DEMO / "inference.yml").is_file():
        pytest.fail(f"{DEMO} is missing: run scripts/build_demo_model.py")
    with mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=DEMO) as pipeline:
        yield pipeline


def test_demo_model_is_small_and_in_paddlex_layout():
    spec = load_model_dir(DEMO)
    assert spec.graph_file.name == "inference.json"
    assert spec.label_list == ["zero", "one", "two", "three", "four", "five", "six", "seven",
                               "eight", "nine"]
    size = sum(p.stat().st_size for p in DEMO.iterdir())
    assert size <= 5 * 1024 * 1024, f"{DEMO} holds {size} bytes, over the 5 MB budget"
    cfg = yaml.safe_load((DEMO / "inference.yml").read_text())
    assert cfg["Global"]["model_name"] == "PP-LCNet_x0_25_ML"


def test_demo_model_beats_chance():
    """eval.json is what `mlcls eval` measured when the model was built."""
    figures = json.loads((DEMO / "eval.json").read_text())
    assert 0.0 <= figures["chance_mAP"] < figures["val_mAP"] <= 1.0
    assert figures["val_mAP"] >= figures["chance_mAP"] + 0.2


def test_demo_image_runs_offline(demo_pipeline):
    res = next(iter(demo_pipeline.predict(str(ASSETS / "demo.png"))))
    assert res.ok and res["device"] == "cpu"
    # every score is a probability and the labels are sorted best first
    assert all(0.0 < s < 1.0 for s in res["scores"])
    assert res["scores"] == sorted(res["scores"], reverse=True)
    # demo.png holds a 6 and a 7 (scripts/build_demo_model.py) and the packaged
    # per-class thresholds keep exactly those
    assert set(res["label_names"]) == {"six", "seven"}, res


def test_readme_first_command_by_name(tmp_path, capsys):
    """The README's first command: the demo model by its built-in name, offline."""
    from mlcls.cli import main

    assert main(["--pipeline", "multi_label_image_classification", "--input",
                 str(ASSETS / "demo.png"), "--model", "mlcls-demo", "--device", "cpu",
                 "--save_path", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "demo_res.json").read_text())
    assert set(saved["label_names"]) == {"six", "seven"}
    assert (tmp_path / "demo_res.png").is_file()
