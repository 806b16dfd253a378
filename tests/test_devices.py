"""The device grammar, resolution (auto, strict, fallback by flag/env/devices.yaml policy),
plugin-declared types, capability rules, and several CPU engines in one pipeline."""

from __future__ import annotations

import logging
import os
import types
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mlcls import create_pipeline, hookimpl, plugins
from mlcls.catalogue import load_catalogue
from mlcls.devices import AUTO, parse_device, resolve_device
from mlcls.errors import DeviceError, DeviceSpecError, UsageError
from mlcls.model import load_model_dir
from mlcls.plugin import Device, DeviceBackend, ProbeReport

SHIPPED = yaml.safe_load(Path(load_catalogue().source).read_text())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("MLCLS_FALLBACK", "MLCLS_DEVICES_YAML", "MLCLS_IGNORE_CAPABILITY"):
        monkeypatch.delenv(var, raising=False)


def write_catalogue(tmp_path, monkeypatch, **changes) -> Path:
    data = yaml.safe_load(Path(load_catalogue().source).read_text())
    data.update(changes)
    # a new name each time: the catalogue is cached per path
    path = tmp_path / f"devices-{len(list(tmp_path.glob('devices-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MLCLS_DEVICES_YAML", str(path))
    return path


@pytest.fixture
def fake_accelerator():
    """A plugin type devices.yaml does not list, with its own alias and fallback chain."""
    module = types.ModuleType("fakeacc_plugin")

    class FakeAcc(DeviceBackend):
        name = "FakeAcc"
        description = "test accelerator"
        aliases = ("FA",)
        fallback = ("cpu",)

        def probe(self):
            return ProbeReport("fakeacc", False, reason="the fake card is unplugged",
                               fix="plug it in")

    @hookimpl
    def register_device_backends(register):
        register(FakeAcc())

    module.register_device_backends = register_device_backends
    record = plugins.register_module(module, name="fakeacc")
    assert record.status == "loaded", record.error
    yield
    plugins.reset()


@pytest.mark.parametrize("text, want", [
    ("GPU:0", Device("gpu", (0,))),
    (" Cuda:1, 2 ", Device("gpu", (1, 2))),
    ("nvidia", Device("gpu")),
    ("Ascend:3", Device("npu", (3,))),
    ("kunlunxin:0", Device("xpu", (0,))),
    ("cambricon", Device("mlu")),
    ("cpu", Device("cpu")),
])
def test_grammar_and_aliases(text, want):
    assert parse_device(text) == want


@pytest.mark.parametrize("text", [None, "auto", "AUTO", " Auto "])
def test_auto(text):
    assert parse_device(text) == AUTO


@pytest.mark.parametrize("text, part", [
    ("tpu:0", "unknown device type 'tpu' in 'tpu:0'"),
    ("gpu:a", "bad device id 'a' in 'gpu:a'"),
    ("gpu:0,", "bad device id (empty) in 'gpu:0,'"),
    ("gpu:-1", "bad device id '-1'"),
    ("gpu:1,1", "device id 1 appears twice in 'gpu:1,1'"),
    ("  ", "empty device string"),
])
def test_bad_strings_name_the_bad_part(text, part):
    with pytest.raises(DeviceSpecError) as info:
        parse_device(text)
    message = str(info.value)
    assert part in message
    for name in SHIPPED["types"]:
        assert name in message  # every error lists the known types


def test_plugin_types_join_the_grammar_with_their_alias_and_chain(fake_accelerator):
    assert parse_device("fa:1") == Device("fakeacc", (1,))
    with pytest.raises(DeviceSpecError, match="fakeacc"):
        parse_device("nosuch")
    with pytest.raises(DeviceError, match=r"the fake card is unplugged \(fix: plug it in\).*"
                                          r"--fallback.*cpu"):
        resolve_device("FakeAcc:0")
    res = resolve_device("fa:0", fallback=True)
    assert res.device == Device("cpu") and "unplugged" in res.fallback_reason


def test_auto_takes_the_first_available_type_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        res = resolve_device(None)
    # none of the accelerators can run on this machine, so the list ends at the CPU
    assert res.device == Device("cpu") and res.fallback_reason is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_follows_the_catalogue_priority(tmp_path, monkeypatch):
    write_catalogue(tmp_path, monkeypatch, priority=["mlu"])
    with pytest.raises(DeviceError, match="no device type in devices.yaml's priority list.*"
                                          "no Cambricon MLU device found"):
        resolve_device("auto")


def test_fallback_precedence_flag_env_policy(tmp_path, monkeypatch, caplog):
    with pytest.raises(DeviceError, match="cannot use device 'npu:0'"):
        resolve_device("npu:0")
    write_catalogue(tmp_path, monkeypatch, fallback=True)
    with caplog.at_level(logging.WARNING):
        assert resolve_device("npu:0").device == Device("cpu")  # policy on
    assert sum("npu:0 -> cpu" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setenv("MLCLS_FALLBACK", "0")
    with pytest.raises(DeviceError):
        resolve_device("npu:0")  # env beats the policy
    monkeypatch.setenv("MLCLS_FALLBACK", "1")
    with pytest.raises(DeviceError):
        resolve_device("npu:0", fallback=False)  # the flag beats the env


def test_fallback_event_reaches_plugins():
    events = []

    class Listener:
        @hookimpl
        def on_fallback(self, requested, used, reason):
            events.append((requested, used, reason))

    pm = plugins.get_plugin_manager()
    listener = Listener()
    pm.register(listener)
    try:
        resolve_device("xpu:1", fallback=True)
    finally:
        pm.unregister(listener)
    assert len(events) == 1 and events[0][:2] == ("xpu:1", "cpu")
    assert "no Kunlunxin XPU device found" in events[0][2]


def test_capability_deny_allow_and_override(tiny_model, tmp_path, monkeypatch):
    model = load_model_dir(tiny_model)  # model_name TinyNet_ML
    write_catalogue(tmp_path, monkeypatch, models={"cpu": {"deny": ["TinyNet_*"]}})
    with pytest.raises(DeviceError, match=r"model 'TinyNet_ML' is denied on 'cpu'.*TinyNet_\*"):
        resolve_device("cpu", model=model)
    monkeypatch.setenv("MLCLS_IGNORE_CAPABILITY", "1")
    assert resolve_device("cpu", model=model).device == Device("cpu")
    monkeypatch.delenv("MLCLS_IGNORE_CAPABILITY")
    write_catalogue(tmp_path, monkeypatch, models={"cpu": {"allow": ["PP-*"]}})
    with pytest.raises(DeviceError, match="not in devices.yaml's models.cpu.allow"):
        resolve_device("cpu", model=model)


def test_several_cpu_engines_share_the_work_in_input_order(tiny_model, image_dir):
    inputs = sorted(str(p) for p in image_dir.iterdir()) * 2
    with create_pipeline("multi_label_image_classification", device="cpu:0,1",
                         model_dir=tiny_model, batch_size=1) as pipe:
        assert [p.device for p in pipe.placements] == ["cpu:0", "cpu:1"]
        results = list(pipe.predict(inputs))
        assert pipe.device == "cpu:0,1"
    assert [r["input_path"] for r in results] == inputs
    assert Counter(r["device"] for r in results) == {"cpu:0": 4, "cpu:1": 4}
    with create_pipeline("multi_label_image_classification", device="cpu",
                         model_dir=tiny_model) as single:
        ref = list(single.predict(inputs))
    for mine, want in zip(results, ref):
        assert mine["class_ids"] == want["class_ids"]
        assert mine["scores"] == pytest.approx(want["scores"], abs=1e-5)


ORDER_SCRIPT = """
import sys
from mlcls import create_pipeline, plugins

seen = []
backend, _ = plugins.backend("cpu")
engine, _ = plugins.engine("paddle")
# wrap the owners' environment calls to see when they are asked
backend.environment = lambda options, real=backend.environment: (
    seen.append(("cpu", "paddle" in sys.modules)) or real(options))
engine.environment = lambda kind, options, real=engine.environment: (
    seen.append(("paddle", "paddle" in sys.modules)) or real(kind, options))
create_pipeline("multi_label_image_classification", device=sys.argv[2], model_dir=sys.argv[1],
                engine="paddle")
print(seen)
"""


def test_environment_is_prepared_before_paddle_is_imported(tiny_model):
    # in a fresh process: vendor flags read at import only work if set before it
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", ORDER_SCRIPT, str(tiny_model), "auto"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[('cpu', False), ('paddle', False)]"


def test_a_broken_probe_is_reported_not_raised():
    module = types.ModuleType("badprobe")

    class Crashy(DeviceBackend):
        name = "crashy"

        def probe(self):
            raise OSError("driver ioctl failed")

    class Sloppy(DeviceBackend):
        name = "sloppy"

        def probe(self):
            return {"available": True}

    @hookimpl
    def register_device_backends(register):
        register(Crashy())
        register(Sloppy())

    module.register_device_backends = register_device_backends
    plugins.register_module(module, name="badprobe")
    try:
        from mlcls.cli.devices import collect

        rows = {r["type"]: r for r in collect()["types"]}
    finally:
        plugins.reset()
    assert not rows["crashy"]["available"]
    assert ("plugin 'badprobe': probe of device type 'crashy' raised OSError: driver ioctl "
            "failed") in rows["crashy"]["reason"]
    assert not rows["sloppy"]["available"] and "returned a dict" in rows["sloppy"]["reason"]
    assert "badprobe" in rows["sloppy"]["reason"]
    assert rows["cpu"]["available"]


def test_training_asks_the_backend_for_the_framework_device(monkeypatch):
    from mlcls.devices import framework_device

    monkeypatch.delenv("MLCLS_TEST_VENDOR_FLAG", raising=False)

    class Trainable(DeviceBackend):
        name = "trainable"

        def probe(self):
            return ProbeReport("trainable", True, count=2)

        def environment(self, options):
            return {"MLCLS_TEST_VENDOR_FLAG": "on"}

        def framework_device(self, device_id):
            return f"custom_trainable:{device_id or 0}"

    class Untrainable(Trainable):
        name = "untrainable"
        framework_device = DeviceBackend.framework_device

    module = types.ModuleType("trainables")

    @hookimpl
    def register_device_backends(register):
        register(Trainable())
        register(Untrainable())

    module.register_device_backends = register_device_backends
    plugins.register_module(module, name="trainables")
    try:
        assert framework_device("host") == "cpu"
        # no inference engine runs on it: training does not need one
        assert framework_device("trainable:1") == "custom_trainable:1"
        assert os.environ["MLCLS_TEST_VENDOR_FLAG"] == "on"  # set before Paddle would load
        with pytest.raises(DeviceError, match="device type 'untrainable' cannot be used for "
                                              "training"):
            framework_device("untrainable")
        with pytest.raises(UsageError, match="training runs on one device"):
            framework_device("trainable:0,1")
    finally:
        plugins.reset()
        os.environ.pop("MLCLS_TEST_VENDOR_FLAG", None)


def test_engine_from_the_pipeline_yaml_and_the_call(tiny_model, tmp_path):
    from mlcls.config import DEFAULT_CONFIG

    config = yaml.safe_load(yaml.safe_dump(DEFAULT_CONFIG))
    module = config["SubModules"]["ImageMultiLabelClassification"]
    module.update(model_dir=str(tiny_model), engine="NoSuchEngine")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(UsageError, match="unknown engine 'NoSuchEngine'; known engines: .*"
                                         "paddle.*auto"):
        create_pipeline(str(path), device="cpu")
    # the call's engine wins over the YAML's
    with create_pipeline(str(path), device="cpu", engine="Paddle") as pipe:
        assert pipe.engine_name == "paddle" and pipe.placements[0].engine == "paddle"
    module["engine"] = 3
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(UsageError, match="engine must be a name"):
        create_pipeline(str(path), device="cpu")
