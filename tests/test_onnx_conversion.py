"""Paddle files -> ONNX for the ONNX engines: once per content, cached, locked, atomic; a
failure names the model and what failed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mlcls.backends import onnx_model
from mlcls.errors import ModelError
from mlcls.model import load_model_dir

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")

# Run in a fresh interpreter: convert (or wait for the other process's conversion), run the
# model with ONNX Runtime, and report where the ONNX came from, the scores, and whether
# Paddle was imported into this process.
WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mlcls.backends.onnxruntime_engine import OnnxRuntimePredictor
    from mlcls.model import load_model_dir
    from mlcls.plugin import Device
    model = load_model_dir(sys.argv[1])
    pred = OnnxRuntimePredictor(model, Device("cpu"), None, {"threads": 1})
    batch = np.linspace(-2, 2, 2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    print(json.dumps({"origin": pred.source.origin, "path": str(pred.source.path),
                      "scores": pred.run(batch).tolist(),
                      "paddle_imported": "paddle" in sys.modules}))
""")


def paddle_scores(model_dir, batch):
    """The same batch through Paddle Inference itself, the model's own engine."""
    import paddle.inference as pi

    config = pi.Config(str(model_dir / "inference.json"), str(model_dir / "inference.pdiparams"))
    config.disable_gpu()
    predictor = pi.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(batch.shape))
    handle.copy_from_cpu(batch)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def test_two_processes_starting_together_convert_once(tiny_model, tmp_path):
    env = {**os.environ, "MLCLS_HOME": str(tmp_path / "home")}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tiny_model)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["origin"] for o in outs) == ["cache", "converted"]
    assert outs[0]["path"] == outs[1]["path"]
    assert not any(o["paddle_imported"] for o in outs)
    # one published file in the entry, no scratch left behind
    entry = (tmp_path / "home" / "onnx" / os.path.basename(os.path.dirname(outs[0]["path"])))
    assert sorted(p.name for p in entry.iterdir()) == ["inference.onnx", "source.json"]
    batch = np.linspace(-2, 2, 2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    expected = paddle_scores(tiny_model, batch)
    for out in outs:
        np.testing.assert_allclose(np.array(out["scores"]), expected, atol=1e-5)


def test_the_key_follows_the_content(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    first = onnx_model.content_key(load_model_dir(tiny_model))
    assert onnx_model.content_key(load_model_dir(copy)) == first  # same bytes, same key
    params = copy / "inference.pdiparams"
    data = bytearray(params.read_bytes())
    data[-1] ^= 0xFF
    params.write_bytes(bytes(data))
    assert onnx_model.content_key(load_model_dir(copy)) != first


def test_a_model_the_converter_cannot_read_names_the_model(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    (broken / "inference.json").write_text('{"program": "not a Paddle program"}')
    model = load_model_dir(broken)
    with pytest.raises(ModelError) as info:
        onnx_model.onnx_for(model)
    text = str(info.value)
    assert text.startswith(f"{broken}: paddle2onnx could not convert the model to ONNX (")
    assert "Traceback" not in text
    # remembered: the next try answers at once with the same reason
    again = onnx_model.conversion_problem(model)
    assert again and "remembered from an earlier try" in again
    assert again.startswith(f"{broken}: paddle2onnx could not convert the model to ONNX (")
    assert not list((tmp_path / "home" / "onnx").glob("*/inference.onnx"))


def test_a_broken_converter_is_reported(tiny_model, tmp_path, monkeypatch):
    """A converter install that fails on import (the one stand-in here: a package earlier on
    the child's path that raises, as a half-upgraded install would)."""
    fake = tmp_path / "site" / "paddle2onnx"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('half-installed build')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match=(
            f"{tiny_model}: paddle2onnx could not convert the model to ONNX \\(paddle2onnx "
            "cannot be imported \\(RuntimeError: half-installed build\\)\\)")):
        onnx_model.onnx_for(load_model_dir(tiny_model))


def test_an_unwritable_cache_is_a_clear_error(tiny_model, tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    monkeypatch.setenv("MLCLS_HOME", str(blocker))
    with pytest.raises(ModelError, match="cannot write the ONNX cache .*MLCLS_HOME"):
        onnx_model.onnx_for(load_model_dir(tiny_model))


def test_export_format_onnx_writes_a_directory_the_onnx_engines_run(tiny_model, tmp_path,
                                                                    monkeypatch, capsys):
    from mlcls.backends.onnxruntime_engine import OnnxRuntimePredictor
    from mlcls.cli import main
    from mlcls.plugin import Device

    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    target = tmp_path / "edge"
    assert main(["export", "--format", "onnx", "--model_dir", str(tiny_model),
                 "--output", str(target)]) == 0
    assert "inference.onnx" in capsys.readouterr().out
    assert sorted(p.name for p in target.iterdir()) == ["inference.onnx", "inference.yml"]
    assert (target / "inference.yml").read_text() == (tiny_model / "inference.yml").read_text()
    spec = load_model_dir(target)  # no Paddle files: an ONNX-only model directory
    assert spec.graph_file is None and spec.onnx_file == target / "inference.onnx"
    pred = OnnxRuntimePredictor(spec, Device("cpu"), None, {"threads": 1})
    batch = np.linspace(-1, 1, 3 * 3 * 32 * 32, dtype=np.float32).reshape(3, 3, 32, 32)
    np.testing.assert_allclose(pred.run(batch), paddle_scores(tiny_model, batch), atol=1e-5)
    pred.close()
    # exporting again replaces it whole; nothing is left beside it
    assert main(["export", "--format", "onnx", "--model_dir", str(tiny_model),
                 "--output", str(target)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_export_refuses_what_it_cannot_do(tiny_model, tmp_path, capsys):
    from mlcls.cli import main

    with pytest.raises(SystemExit) as info:  # argparse's usage error
        main(["export", "--model_dir", str(tiny_model), "--output", str(tmp_path / "x")])
    assert info.value.code == 2
    assert "--format onnx" in capsys.readouterr().err


def test_auto_moves_on_to_paddle_when_the_conversion_fails(tiny_model, tmp_path, monkeypatch,
                                                           caplog):
    """The converter breaks (as in the test above); --engine auto still runs the model, on
    the next engine, and says why in a WARNING."""
    import logging

    from mlcls import create_pipeline

    fake = tmp_path / "site" / "paddle2onnx"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('half-installed build')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    with caplog.at_level(logging.WARNING):
        with create_pipeline("multi_label_image_classification", device="cpu",
                             model_dir=tiny_model) as pipe:
            assert pipe.placements[0].engine == "paddle"
            assert next(iter(pipe.predict(np.zeros((32, 32, 3), np.uint8)))).ok
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("onnxruntime" in w and "half-installed build" in w and "paddle" in w
               for w in warnings), warnings
