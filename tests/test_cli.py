from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcls.progress import Progress

MLCLS = str(Path(sys.executable).parent / "mlcls")


def run(*args, cwd=None):
    return subprocess.run([MLCLS, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_predict_prints_and_saves(tiny_model, image_dir, tmp_path):
    out = run("--pipeline", "multi_label_image_classification", "--input", image_dir / "a.jpg",
              "--model_dir", tiny_model, "--device", "cpu", "--save_path", tmp_path,
              "--threshold", "0")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)["res"]
    assert res["input_path"].endswith("a.jpg") and len(res["class_ids"]) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_res.jpg", "a_res.json"]


def test_one_bad_input_is_reported_and_the_rest_run(tiny_model, image_dir, tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(image_dir, inputs)
    (inputs / "broken.png").write_bytes(b"not an image at all")
    out = run("--pipeline", "multi_label_image_classification", "--input", inputs,
              tmp_path / "missing.jpg", "--model_dir", tiny_model, "--save_path",
              tmp_path / "out", "-q")
    assert out.returncode == 1
    assert "broken.png" in out.stderr and "not a readable image" in out.stderr
    assert "missing.jpg" in out.stderr and "no such file" in out.stderr
    assert "4 of 6 image(s) classified on cpu, 2 failed" in out.stderr
    saved = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert saved == sorted(f"{s}_res{e}" for s, e in [("a", ".jpg"), ("b", ".png"),
                                                        ("c", ".bmp"), ("d", ".webp")]
                           for e in (e, ".json"))


@pytest.mark.parametrize("args, message", [
    (["--threshold", "2"], "outside [0, 1]"),
    (["--batch_size", "0"], "must be at least 1"),
    (["--device", "gpu:x"], "bad device id 'x' in 'gpu:x'"),
    (["--device", "tpu"], "unknown device type 'tpu'"),
    (["--pipeline", "ocr"], "unknown pipeline 'ocr'"),
])
def test_usage_errors_exit_2(tiny_model, image_dir, args, message):
    base = {"--pipeline": "multi_label_image_classification",
            "--input": str(image_dir / "a.jpg"), "--model_dir": str(tiny_model)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    out = run(*[x for kv in base.items() for x in kv])
    assert out.returncode == 2, out.stderr
    assert message in out.stderr


def test_missing_input_flag_exits_2():
    out = run("--pipeline", "multi_label_image_classification")
    assert out.returncode == 2 and "--input is required" in out.stderr


def test_missing_model_dir_exits_1_naming_it(image_dir, tmp_path):
    out = run("--pipeline", "multi_label_image_classification", "--input", image_dir,
              "--model_dir", tmp_path / "nowhere")
    assert out.returncode == 1
    assert f"{tmp_path / 'nowhere'}: model directory does not exist" in out.stderr


def test_progress_bar_draws_counts_rate_and_failures():
    stream = io.StringIO()
    bar = Progress(3, stream=stream, enabled=True, min_interval=0)
    bar.update()
    bar.update(ok=False)
    bar.update()
    bar.close()
    text = stream.getvalue()
    assert "1/3" in text and "3/3" in text and "1 failed" in text and "img/s" in text
    assert Progress(3, stream=io.StringIO()).enabled is False  # not a terminal: silent


@pytest.mark.parametrize("argv, status, prefix", [
    (["eval", "--model_dir", "{tmp}/no-model", "--dataset", "{tmp}"], 2, "mlcls eval: error:"),
    (["export", "--checkpoint", "{tmp}/none", "--output", "{tmp}/x"], 2, "mlcls export: error:"),
    (["dataset", "check", "{tmp}/nowhere"], 2, "mlcls dataset: error:"),
])
def test_subcommands_report_errors_one_way(argv, status, prefix, tmp_path, capsys):
    from mlcls.cli import main

    assert main([a.format(tmp=tmp_path) for a in argv]) == status
    err = capsys.readouterr().err
    assert err.startswith(prefix) and "Traceback" not in err


def test_messages_from_c_libraries_go_above_the_progress_bar(capfd):
    """libpng prints its warnings to file descriptor 2 itself; with the bar drawn, such a line
    is printed on a line of its own above the bar, which is drawn again below it."""
    import os

    from mlcls.progress import Progress, StderrRelay

    progress = Progress(3, enabled=True, min_interval=0)
    with StderrRelay(progress):
        progress.update()
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
        progress.update()
    progress.close()
    err = capfd.readouterr().err
    assert "\r\033[Klibpng warning: iCCP: known incorrect sRGB profile\n" in err
    after = err.split("sRGB profile\n", 1)[1]
    assert after.startswith("\r[") and "/3 " in after  # the bar, drawn again below it
