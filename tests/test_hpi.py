"""PaddleX's use_hpip / hpi_config mapped onto mlcls's engine and options; mlcls tune's record
taken by --engine auto."""

from __future__ import annotations

import json

import pytest
import yaml

from mlcls import create_pipeline
from mlcls.cli import main
from mlcls.errors import UsageError
from mlcls.hpi import EngineChoice, apply, engine_choice
from mlcls.model import load_model_dir
from mlcls.tuning import TunedChoice, record_choice, recorded_choice


@pytest.mark.parametrize("use, config, engine, options", [
    (False, None, None, None),
    (True, None, None, {}),
    (True, {"backend": "onnxruntime"}, "onnxruntime", {}),
    (True, {"backend": "openvino", "backend_config": {"cpu_num_threads": 2}}, "openvino",
     {"threads": 2}),
    (True, {"backend": "paddle", "backend_config": {"run_mode": "paddle", "cpu_threads": 1}},
     "paddle", {"mkldnn": False, "threads": 1}),
    (True, {"backend": "tensorrt", "backend_config": {"precision": "fp16"}}, "onnxruntime",
     {"tensorrt": True, "precision": "fp16"}),
    (True, {"auto_config": True, "auto_paddle2onnx": True}, None, {}),
])
def test_paddlex_switches_map_onto_engines(use, config, engine, options):
    choice = engine_choice(use, config)
    if options is None:
        assert choice is None
    else:
        assert choice == EngineChoice(engine, options)


@pytest.mark.parametrize("config, message", [
    ({"backend": "tflite"}, "backend 'tflite' is not one of"),
    ({"backend": "om"}, "om .* is not supported"),
    ({"backend": "onnxruntime", "backend_config": {"threads": 2}},
     "unknown key\\(s\\) 'threads' for the onnxruntime backend"),
    ({"backend": "paddle", "backend_config": {"run_mode": "mkldnn_bf16"}},
     "run_mode 'mkldnn_bf16' is not supported"),
    ({"backend": "tensorrt", "backend_config": {"dynamic_shapes": {"x": [[1, 3, 8, 8]] * 3}}},
     "dynamic_shapes is not supported"),
    ({"backnd": "paddle"}, "unknown key\\(s\\) 'backnd'"),
    ({"model_name": "PP-LCNet_x1_0_ML"}, "filled in by PaddleX itself"),
    ({"auto_config": False}, "backend must be given"),
    ({"auto_paddle2onnx": False}, "auto_paddle2onnx: false is not supported"),
    ({"backend_config": {"cpu_num_threads": 2}}, "backend_config needs backend"),
    ({"backend": "openvino", "backend_config": {"cpu_num_threads": 0}}, "threads >= 1"),
    ("onnxruntime", "must be a mapping"),
])
def test_what_mlcls_cannot_honour_is_an_error(config, message):
    with pytest.raises(UsageError, match=message):
        engine_choice(True, config)


def test_hpi_config_without_use_hpip_is_refused_not_ignored():
    with pytest.raises(UsageError, match="use_hpip is off"):
        engine_choice(False, {"backend": "openvino"})
    with pytest.raises(UsageError, match="use_hpip must be true or false"):
        engine_choice("yes", None)


def test_explicit_engine_and_options_meet_the_translation():
    choice = EngineChoice("openvino", {"threads": 2})
    assert apply(choice, None, {"threads": 1}) == ("openvino", {"threads": 1})
    assert apply(choice, "auto", None) == ("openvino", {"threads": 2})
    with pytest.raises(UsageError, match="disagree"):
        apply(choice, "paddle", None)
    assert apply(EngineChoice(), "paddle", None) == ("paddle", None)


def test_use_hpip_in_a_pipeline_yaml_chooses_the_engine(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    config = {"pipeline_name": "multi_label_image_classification",
              "SubModules": {"ImageMultiLabelClassification": {
                  "module_name": "image_multilabel_classification",
                  "model_name": "TinyNet_ML", "model_dir": str(tiny_model), "batch_size": 1,
                  "use_hpip": True,
                  "hpi_config": {"backend": "openvino",
                                 "backend_config": {"cpu_num_threads": 1}}}}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    with create_pipeline(str(path), device="cpu") as pipe:
        assert pipe.placements[0].engine == "openvino"
        assert "inference_num_threads=1" in pipe.placements[0].detail
    config["SubModules"]["ImageMultiLabelClassification"]["hpi_config"]["backend_config"] = {
        "cpu_threads": 1}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(UsageError, match="unknown key\\(s\\) 'cpu_threads'"):
        create_pipeline(str(path), device="cpu")


def test_a_tuned_engine_is_what_auto_takes(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    model = load_model_dir(tiny_model)
    assert recorded_choice(model, "cpu", 4) is None
    record_choice(model, "cpu", 4, TunedChoice("openvino", {"openvino": 1.0, "paddle": 2.0},
                                               "2026-01-01T00:00:00"))
    with create_pipeline("multi_label_image_classification", device="cpu",
                         model_dir=tiny_model, batch_size=4) as pipe:
        assert pipe.placements[0].engine == "openvino"
        assert "mlcls tune" in pipe.engine_reason
    # another batch size has no record: the usual order decides
    with create_pipeline("multi_label_image_classification", device="cpu",
                         model_dir=tiny_model, batch_size=2) as pipe:
        assert "mlcls tune" not in pipe.engine_reason
    # an explicit engine is never overridden by a record
    with create_pipeline("multi_label_image_classification", device="cpu",
                         model_dir=tiny_model, batch_size=4, engine="paddle") as pipe:
        assert pipe.placements[0].engine == "paddle"


def test_mlcls_tune_times_the_engines_and_records_the_fastest(tmp_path, tiny_model,
                                                              monkeypatch, capsys):
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    assert main(["tune", "--model_dir", str(tiny_model), "--batch_size", "2",
                 "--seconds", "0.3", "--engines", "paddle,onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "paddle" in out and "onnxruntime" in out and "fastest:" in out
    record = json.loads((tmp_path / "home" / "tuning.json").read_text())
    (entry,) = record.values()
    assert entry["batch_size"] == 2 and entry["device_type"] == "cpu"
    assert set(entry["ms_per_image"]) == {"paddle", "onnxruntime"}
    fastest = min(entry["ms_per_image"], key=entry["ms_per_image"].get)
    assert entry["engine"] == fastest
    chosen = recorded_choice(load_model_dir(tiny_model), "cpu", 2)
    assert chosen is not None and chosen.engine == fastest
    # mlcls devices lists what auto will take
    assert main(["devices"]) == 0
    listing = capsys.readouterr().out
    assert "engines chosen by `mlcls tune`" in listing
    assert f"{tiny_model} on cpu at batch 2: {fastest}" in listing


def test_mlcls_tune_names_an_unknown_engine(tiny_model, capsys):
    assert main(["tune", "--model_dir", str(tiny_model), "--engines", "tensorflow"]) == 2
    assert "unknown engine 'tensorflow'" in capsys.readouterr().err


def test_use_hpip_on_the_command_line(tiny_model, image_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    assert main(["--pipeline", "multi_label_image_classification", "--input",
                 str(image_dir / "a.jpg"), "--model_dir", str(tiny_model), "--device", "cpu",
                 "--use_hpip", "--save_path", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "a_res.json").read_text())
    # use_hpip alone is auto: devices.yaml's first engine for the cpu that can run here
    from mlcls.devices import engine_preference

    assert saved.get("res", saved)["engine"] == engine_preference("cpu")[0]
