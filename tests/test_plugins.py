from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest

from mlcls import plugins
from mlcls.cli import main
from mlcls.devices import parse_device, resolve_device
from mlcls.errors import DeviceError


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
