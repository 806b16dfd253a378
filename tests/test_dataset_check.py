"""``mlcls dataset check|split|convert`` on generated datasets."""

from __future__ import annotations

import json
import shutil

import pytest
from mldataset import NAMES, make_dataset
from PIL import Image

from mlcls.cli import main


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds", n_train=9, n_val=6)


def test_good_dataset(dataset, tmp_path, capsys):
    assert main(["dataset", "check", str(dataset), "--output", str(tmp_path / "chk")]) == 0
    out = capsys.readouterr().out
    assert "3 classes; 9 train images, 6 val images" in out
    assert "OK: 0 error(s)" in out
    with Image.open(tmp_path / "chk" / "histogram.png") as png:
        assert png.format == "PNG" and png.width > 100
    train = [line.split("\t")[1] for line in (dataset / "train.txt").read_text().splitlines()]
    squares = sum(v.split(",")[0] == "1" for v in train)
    row = next(line for line in out.splitlines() if " square " in line)
    assert row.split()[2] == str(squares)


def test_every_problem_is_listed_by_file_and_line(dataset, capsys):
    lines = (dataset / "train.txt").read_text().splitlines()
    lines[1] = lines[1].rsplit("\t", 1)[0] + "\t1,0"  # wrong length
    lines[2] = "images/missing.png\t1,0,0"
    (dataset / "images" / "broken.png").write_bytes(b"not an image")
    lines[3] = "images/broken.png\t0,1,0"
    lines[4] = lines[0]  # duplicate
    lines[5] = lines[5].rsplit("\t", 1)[0] + "\t1,2,0"
    (dataset / "train.txt").write_text("\n".join(lines) + "\n")
    (dataset / "label.txt").write_text("0 square\n1 disc\n3 bar\n")
    assert main(["dataset", "check", str(dataset), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    problems = {(p["file"], p["line"]): p["message"] for p in report["problems"]
                if p["severity"] == "error"}
    assert "missing 2" in problems[("label.txt", None)]
    # label.txt now declares ids up to 3, so every train vector of length 3 is too short;
    # restore it and look at the line-level problems
    (dataset / "label.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(NAMES)))
    assert main(["dataset", "check", str(dataset), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    problems = {(p["file"], p["line"]): p["message"] for p in report["problems"]
                if p["severity"] == "error"}
    assert "2 values but label.txt has 3" in problems[("train.txt", 2)]
    assert "not found: images/missing.png" in problems[("train.txt", 3)]
    assert "cannot be decoded" in problems[("train.txt", 4)]
    assert "listed again (first on line 1)" in problems[("train.txt", 5)]
    assert "'2'" in problems[("train.txt", 6)]
    assert len(problems) == 5
    assert report["images"]["train"] == 4


def test_missing_files_and_empty_classes(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", n_train=3, n_val=3)
    (root / "val.txt").unlink()
    lines = (root / "train.txt").read_text().splitlines()
    (root / "train.txt").write_text("\n".join(line.rsplit("\t", 1)[0] + "\t1,0,0"
                                              for line in lines) + "\n")
    assert main(["dataset", "check", str(root), "--no_decode"]) == 1
    out = capsys.readouterr().out
    assert "val.txt: error: missing" in out
    assert "class 1 ('disc') has no training image" in out
    assert main(["dataset", "check", str(tmp_path / "nowhere")]) == 2


def test_split_deals_every_line_once_and_keeps_a_backup(dataset, capsys):
    before = set((dataset / "train.txt").read_text().splitlines()) | set(
        (dataset / "val.txt").read_text().splitlines())
    assert main(["dataset", "split", str(dataset), "--train_percent", "80",
                 "--val_percent", "20"]) == 0
    train = (dataset / "train.txt").read_text().splitlines()
    val = (dataset / "val.txt").read_text().splitlines()
    assert (len(train), len(val)) == (12, 3)
    assert set(train) | set(val) == before and not set(train) & set(val)
    assert (dataset / "train.txt.bak").is_file()
    assert main(["dataset", "split", str(dataset), "--train_percent", "80",
                 "--val_percent", "30"]) == 2
    assert "add up to 100" in capsys.readouterr().err


def _coco(images, anns, cats):
    return {"images": [{"id": i, "file_name": f} for i, f in images],
            "annotations": [{"id": k, "image_id": i, "category_id": c}
                            for k, (i, c) in enumerate(anns)],
            "categories": [{"id": c, "name": n} for c, n in cats]}


def test_convert_from_coco(tmp_path, capsys):
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8), "white").save(root / "images" / name)
    cats = [(7, "kite"), (1, "person"), (3, "car")]  # unsorted, with gaps
    train = _coco([(10, "a.png"), (11, "b.png")], [(10, 7), (10, 1), (10, 1), (11, 3)], cats)
    val = _coco([(20, "c.png")], [], cats)
    (root / "annotations" / "instance_train.json").write_text(json.dumps(train))
    (root / "annotations" / "instance_val.json").write_text(json.dumps(val))
    assert main(["dataset", "convert", str(root)]) == 0
    assert (root / "label.txt").read_text().splitlines() == ["0 person", "1 car", "2 kite"]
    assert (root / "train.txt").read_text().splitlines() == ["images/a.png\t1,0,1",
                                                             "images/b.png\t0,1,0"]
    assert (root / "val.txt").read_text().splitlines() == ["images/c.png\t0,0,0"]
    capsys.readouterr()
    assert main(["dataset", "check", str(root)]) == 0  # converted output checks clean
    train["annotations"].append({"id": 99, "image_id": 10, "category_id": 5})
    (root / "annotations" / "instance_train.json").write_text(json.dumps(train))
    assert main(["dataset", "convert", str(root)]) == 2
    assert "category 5" in capsys.readouterr().err
    shutil.rmtree(root / "annotations")
    assert main(["dataset", "convert", str(root)]) == 2


def test_relative_dataset_path_with_a_broken_image(tmp_path, monkeypatch, capsys):
    root = make_dataset(tmp_path / "ds", n_train=3, n_val=3)
    (root / "images" / "train_001.png").write_bytes(b"garbage")
    monkeypatch.chdir(tmp_path)
    assert main(["dataset", "check", "ds"]) == 1
    out = capsys.readouterr().out
    assert "train.txt:2: error: images/train_001.png cannot be decoded" in out
    assert "2 train images" in out
