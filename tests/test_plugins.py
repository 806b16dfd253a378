from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

from mlcls import create_pipeline, plugins
from mlcls.catalogue import load_catalogue
from mlcls.cli import main
from mlcls.devices import parse_device, resolve_device
from mlcls.errors import DeviceError, UsageError
from mlcls.plugin import DeviceBackend, Engine, Placement, Predictor, ProbeReport, hookimpl


@pytest.fixture
def extra_plugins(monkeypatch):
    """Add entry points for the sample plugins beside the installed ones (the seam is the
    entry-point listing; loading, registration and hooks are the real ones)."""
    real = metadata.entry_points

    def fake(**kwargs):
        found = list(real(**kwargs))
        if kwargs.get("group") == plugins.GROUP:
            found += [metadata.EntryPoint(name, f"sample_plugins.{name}", plugins.GROUP)
                      for name in ("broken", "dummy", "clash")]
        return found

    monkeypatch.setattr(plugins.metadata, "entry_points", fake)
    plugins.reset()
    yield
    plugins.reset()


def _record(name):
    return next(r for r in plugins.get_state().records if r.name == name)


def test_builtin_cpu_backend_loads_through_the_entry_point_group():
    plugins.reset()
    cpu = _record("cpu")
    assert cpu.status == "loaded" and cpu.distribution == "mlcls"
    assert cpu.module == "mlcls.backends.cpu"
    assert cpu.hooks == ["register_device_backends", "register_engines"]
    assert cpu.device_types == ["cpu"] and cpu.engines == ["paddle"]


def test_broken_plugins_are_recorded_and_the_rest_still_work(extra_plugins):
    broken, clash, dummy = _record("broken"), _record("clash"), _record("dummy")
    assert broken.status == "failed" and "libfoo.so not found" in broken.error
    # names the built-ins own are refused, the rest of the plugin is kept
    assert clash.status == "loaded" and clash.device_types == ["clash2"] and not clash.engines
    assert any("device type 'cpu' is already registered by plugin 'cpu'; refused" in f
               for f in clash.faults)
    assert any("engine 'paddle' is already registered by plugin 'cpu'" in f
               for f in clash.faults)
    assert dummy.status == "loaded" and dummy.device_types == ["dummy"]
    assert parse_device("DUMMY:1").type == "dummy"
    with pytest.raises(DeviceError, match="no dummy card in this machine.*plug in a dummy"):
        resolve_device("dummy")
    assert resolve_device("cpu").device.type == "cpu"


def test_allow_list_and_block_list(extra_plugins, monkeypatch):
    monkeypatch.setenv(plugins.ENV_ALLOW, "dummy")
    plugins.reset()
    assert _record("dummy").status == "loaded"
    assert _record("broken").status == "blocked"
    assert _record("cpu").status == "loaded"  # essential: cannot be left out
    monkeypatch.delenv(plugins.ENV_ALLOW)
    monkeypatch.setenv(plugins.ENV_BLOCK, "dummy,cpu")
    plugins.reset()
    assert _record("dummy").status == "blocked"
    assert _record("cpu").status == "loaded"
    with pytest.raises(DeviceError, match="unknown device type 'dummy'.*known types: .*cpu"):
        parse_device("dummy")


def test_plugins_command_json_and_table(extra_plugins, capsys):
    assert main(["plugins", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["broken"]["status"] == "failed"
    assert listed["cpu"]["version"]
    assert main(["plugins"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["name", "status"]
    assert "broken: failed to load: ImportError: vendor SDK libfoo.so not found" in table
    assert "clash: fault: device type 'cpu' is already registered" in table


def test_import_mlcls_survives_a_broken_plugin_and_stays_light():
    code = ("import sys, mlcls; print('paddle' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


class _Quiet(Predictor):
    classes = 5  # the tiny model's label_list

    def run(self, batch):
        return np.zeros((len(batch), self.classes), np.float32)

    def placement(self):
        return Placement("cpu")


def _engine_plugin(name, **methods):
    """A plugin object registering one engine that runs on the cpu, with ``methods``
    replacing the engine's."""
    engine_cls = type(f"{name}Engine", (Engine,), {
        "name": name,
        "probe": lambda self, kind: ProbeReport(kind, True, count=1),
        "create_predictor": lambda self, model, device, device_id, options: _Quiet(),
        **methods})

    class Plugin:
        @hookimpl
        def register_engines(self, register):
            register(engine_cls())

    return Plugin()


def test_engine_faults_name_the_plugin_and_stay_out_of_the_cpu(tiny_model):
    def explode(*args):
        raise ZeroDivisionError("division by zero in the vendor runtime")

    plugins.reset()
    try:
        assert plugins.register_module(_engine_plugin("crasher", create_predictor=explode),
                                       name="crasher").status == "loaded"
        assert plugins.register_module(_engine_plugin("liar", placement=explode),
                                       name="liar").status == "loaded"
        with pytest.raises(DeviceError, match=r"plugin 'crasher': create_predictor of engine "
                                              r"'crasher' raised ZeroDivisionError"):
            create_pipeline(model_dir=tiny_model, device="cpu", engine="crasher")
        with pytest.raises(DeviceError, match=r"plugin 'liar': placement of engine 'liar' "
                                              r"raised ZeroDivisionError"):
            create_pipeline(model_dir=tiny_model, device="cpu", engine="liar")
        with pytest.raises(UsageError, match="unknown engine 'nosuch'; known engines: .*"
                                             "paddle"):
            create_pipeline(model_dir=tiny_model, device="cpu", engine="nosuch")
        state = plugins.get_state()
        assert any("create_predictor" in f for f in state.record("crasher").faults)
        assert any("placement" in f for f in state.record("liar").faults)
        assert not state.record("cpu").faults
        with create_pipeline(model_dir=tiny_model, device="cpu") as pipe:
            # auto keeps devices.yaml's order: the faulty engines are never tried
            first = load_catalogue().entry("cpu").engines[0]
            assert pipe.engine_name == first and pipe.placements[0].engine == first
    finally:
        plugins.reset()


def test_plugins_and_devices_commands_import_neither_paddle_nor_opencv():
    code = ("import sys, io, contextlib\nfrom mlcls.cli import main\n"
            "for cmd in (['plugins'], ['devices'], ['plugins', '--json'], ['devices', '--json']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        assert main(cmd) == 0\n"
            "print(sorted(m for m in ('paddle', 'cv2') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_registrations_that_are_not_backends_or_have_bad_names_are_refused():
    class Named(DeviceBackend):
        def probe(self):
            return ProbeReport(self.name, True, count=1)

    def named(name):
        backend = Named()
        backend.name = name
        return backend

    class Sloppy:
        @hookimpl
        def register_device_backends(self, register):
            register(object())
            register(named("auto"))
            register(named("a:b"))
            register(named("Fine"))

    plugins.reset()
    try:
        record = plugins.register_module(Sloppy(), name="sloppy")
        assert record.status == "loaded" and record.device_types == ["fine"]
        assert any("registered a object, not a DeviceBackend" in f for f in record.faults)
        assert sum("bad name" in f for f in record.faults) == 2
        assert parse_device("FINE:0").type == "fine"
    finally:
        plugins.reset()


def test_a_predictor_that_fails_to_close_is_charged_and_the_rest_closes(tiny_model, caplog):
    class Sticky(_Quiet):
        def close(self):
            raise OSError("device busy")

    plugins.reset()
    try:
        plugins.register_module(_engine_plugin(
            "sticky", create_predictor=lambda self, *a: Sticky()), name="sticky")
        pipe = create_pipeline(model_dir=tiny_model, device="cpu", engine="sticky")
        with caplog.at_level(logging.WARNING):
            pipe.close()
        assert pipe._pool is None or pipe._pool._shutdown
        assert any("plugin 'sticky': close of engine 'sticky' raised OSError: device busy"
                   in r.getMessage() for r in caplog.records)
        assert any("close" in f for f in plugins.get_state().record("sticky").faults)
    finally:
        plugins.reset()
