"""The demo model that ships inside the package (built by scripts/build_demo_model.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

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


def _scores_by_engine(model_dir: Path, images: list, engine: str) -> list[dict[int, float]]:
    """Every class's score (threshold 0) on each image, computed by ``engine``."""
    with mlcls.create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=model_dir, engine=engine) as pipeline:
        results = list(pipeline.predict(images, threshold=0.0))
    assert all(r.ok and r["engine"] == engine for r in results), results
    return [dict(zip(r["class_ids"], r["scores"])) for r in results]


def _assert_same_scores(model_dir: Path, images: list) -> None:
    paddle = _scores_by_engine(model_dir, images, "paddle")
    onnx = _scores_by_engine(model_dir, images, "onnxruntime")
    for want, got in zip(paddle, onnx, strict=True):
        assert got.keys() == want.keys()
        gap = max(abs(got[k] - want[k]) for k in want)
        assert gap <= 1e-4, (gap, want, got)


def _images(size: int) -> list:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(3)]


def test_shipped_onnx_gives_the_shipped_paddle_files_scores():
    """The README's first command runs the demo model's inference.onnx (ONNX Runtime, no
    conversion): it must score as the Paddle files beside it do, on the demo image and on
    others, for every class."""
    assert (DEMO / "inference.onnx").is_file()
    _assert_same_scores(DEMO, [str(ASSETS / "demo.png"), *_images(80)])


def _build_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "build_demo_model.py"
    spec = importlib.util.spec_from_file_location("build_demo_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_script_writes_the_onnx_file_from_the_paddle_files(tiny_model, tmp_path):
    """scripts/build_demo_model.py converts with mlcls's own code and never keeps a stale
    inference.onnx that happens to be in the model directory."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "inference.onnx").write_bytes(b"stale, not the network beside it")
    script = _build_script()
    written = script.write_onnx(model)
    assert written == model / "inference.onnx"
    assert written.read_bytes()[:20] != b"stale, not the netwo"
    assert not list(model.glob(".*tmp"))
    _assert_same_scores(model, _images(40))
    image = tmp_path / "x.png"
    Image.fromarray(_images(40)[0]).save(image)
    assert script.onnx_score_gap(model, image) <= script.ONNX_TOLERANCE
