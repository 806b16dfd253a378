from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from mlcls import create_pipeline
from mlcls.results import FailedResult, MultiLabelClsResult


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    with create_pipeline(model_dir=tiny_model, device="cpu", threshold=0.0) as p:
        yield p


def test_result_keys_and_files(pipeline, image_dir, tmp_path):
    res = next(pipeline.predict(str(image_dir / "a.jpg")))
    assert list(res) == ["input_path", "page_index", "class_ids", "scores", "label_names",
                         "device", "engine"]
    assert res["page_index"] is None and res["device"] == "cpu"
    assert res["engine"] == pipeline.placements[0].engine  # the engine auto chose
    assert res.json == {"res": dict(res)}
    json_path, img_path = res.save_all(tmp_path)
    assert json_path == tmp_path / "a_res.json"
    assert img_path == tmp_path / "a_res.jpg"
    assert json.loads(json_path.read_text()) == dict(res)
    with Image.open(img_path) as img:
        assert img.format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_res.jpg", "a_res.json"]


def test_png_input_saves_png_and_explicit_file_names(pipeline, image_dir, tmp_path):
    res = next(pipeline.predict(str(image_dir / "b.png")))
    assert res.save_to_img(tmp_path).name == "b_res.png"
    assert res.save_to_json(tmp_path / "chosen.json") == tmp_path / "chosen.json"


def test_in_memory_inputs_get_unique_names_across_calls(pipeline, tmp_path):
    """PaddleX names them <timestamp>_<random>; a second predict(frame) must not overwrite
    the first one's files."""
    arr = np.zeros((20, 30, 3), np.uint8)
    results = list(pipeline.predict([arr, arr])) + list(pipeline.predict(arr))
    assert [r["input_path"] for r in results] == [None, None, None]
    for res in results:
        res.save_all(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 6, names
    assert all(re.fullmatch(r"\d+_[0-9a-f]{8}_res\.(json|png)", n) for n in names), names
    # one result keeps one name for its JSON and its picture
    first = results[0]
    assert first.save_to_json(tmp_path).stem == first.save_to_img(tmp_path).stem


def test_print_formats_of_the_seed_and_of_paddlex(pipeline, image_dir, capsys):
    res = next(pipeline.predict(str(image_dir / "a.jpg")))
    res.print(json_format=True)
    assert json.loads(capsys.readouterr().out) == {"res": dict(res)}
    res.print(json_format=False)  # PaddleX 3.7.2: the dict, as Python prints it
    assert capsys.readouterr().out.startswith("{'res': {'input_path':")
    assert res.str == {"res": dict(res)}
    assert json.loads(res.to_str(json_format=True, indent=None)) == res.json


def test_print_formats(pipeline, image_dir, capsys):
    res = next(pipeline.predict(str(image_dir / "a.jpg")))
    res.print()
    out = capsys.readouterr().out
    assert json.loads(out) == {"res": dict(res)}
    assert out.startswith("{\n    \"res\"")
    res.print(format_json=False)
    assert capsys.readouterr().out.startswith("{'res':")


def test_visualisation_is_legible_on_tiny_and_large_images(tmp_path):
    labels = [f"label number {i}" for i in range(60)]
    for shape in [(8, 8, 3), (2000, 3000, 3)]:
        res = MultiLabelClsResult({"input_path": "x.png", "page_index": None,
                                   "class_ids": list(range(60)), "scores": [0.9] * 60,
                                   "label_names": labels, "device": "cpu"},
                                  image=np.full(shape, 128, np.uint8))
        img = res.img["res"]
        assert img.height >= 320  # tiny images are scaled up so the text fits
        assert img.width > shape[1]  # the legend is beside the picture, not over it
        shown_width = round(shape[1] * max(1.0, 320 / shape[0]))
        right = np.asarray(img)[:, shown_width + 5:]
        assert (right < 100).any()  # dark text drawn in the panel


def test_failed_result_writes_nothing(tmp_path, caplog):
    res = FailedResult("missing.jpg", "no such file")
    assert not res.ok
    res.save_all(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert "missing.jpg" in caplog.text


def test_existing_file_survives_a_failed_write(tmp_path):
    target = tmp_path / "keep_res.json"
    target.write_text("old")
    res = MultiLabelClsResult({"input_path": "keep.jpg", "bad": object()})
    with pytest.raises(TypeError):
        res.save_to_json(tmp_path)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep_res.json"]


def test_saved_files_get_ordinary_permissions(pipeline, image_dir, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        res = next(pipeline.predict(str(image_dir / "a.jpg")))
        paths = res.save_all(tmp_path)
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [0o644, 0o644]
    paths[0].chmod(0o600)  # an existing file keeps its own mode when replaced
    res.save_to_json(tmp_path)
    assert paths[0].stat().st_mode & 0o777 == 0o600


def test_labels_in_chinese_japanese_and_korean_draw_legibly():
    """Every character of these labels is drawn from a font that has it (not as the
    'missing glyph' box), in one legend line that mixes scripts."""
    from mlcls.visualize import draw_result, has_glyph, runs

    labels = ["猫 cat", "ねこ", "고양이", "café"]
    for label in labels:
        for path, piece in runs(label):
            assert all(has_glyph(path, ch) for ch in piece), (label, path, piece)
    fonts = {path.rsplit("/", 1)[1] for path, _ in runs("猫 cat")}
    assert fonts == {"DroidSansFallback-subset.ttf", "DejaVuSans.ttf"}
    picture = draw_result(np.zeros((64, 64, 3), np.uint8), [0, 1, 2, 3], [0.9] * 4, labels)
    assert picture.height >= 320


def test_a_font_of_ones_own_comes_first(monkeypatch):
    from mlcls import visualize

    own = visualize._shipped("DroidSansFallback-subset.ttf")
    monkeypatch.setenv("MLCLS_FONT", own)
    assert visualize.font_paths()[0] == own
    assert visualize.runs("ab")[0][0].endswith("DejaVuSans.ttf")  # what it lacks falls back
    monkeypatch.setenv("MLCLS_FONT", "/no/such/font.ttf")
    assert visualize.font_paths()[0].endswith("DejaVuSans.ttf")
