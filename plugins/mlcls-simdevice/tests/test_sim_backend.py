"""The example plugin's own tests: it is listed, its environment switches work, and it passes
mlcls's conformance kit. Run from this folder after `pip install -e .`: `pytest`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlcls_simdevice import backend

from mlcls.plugin import DeviceError
from mlcls.testing import BackendConformance


class TestSimConformance(BackendConformance):
    device_type = "sim"
    engine = "sim"


def test_plugin_is_listed():
    done = subprocess.run([sys.executable, "-m", "mlcls.cli", "plugins", "--json"],
                          capture_output=True, text=True, check=True)
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["sim"]["status"] == "loaded"
    assert rows["sim"]["distribution"] == "mlcls-simdevice"
    assert rows["sim"]["device_types"] == ["sim"] and rows["sim"]["engines"] == ["sim"]
    assert not rows["sim"]["faults"]


def test_count_and_visible_mask(monkeypatch):
    monkeypatch.setenv(backend.ENV_COUNT, "3")
    monkeypatch.delenv(backend.ENV_FAIL, raising=False)
    assert backend.probe().count == 3
    monkeypatch.setenv(backend.ENV_VISIBLE, "2,0,9")
    assert backend.probe().count == 2
    monkeypatch.setenv(backend.ENV_COUNT, "0")
    monkeypatch.delenv(backend.ENV_VISIBLE)
    report = backend.probe()
    assert not report.available and backend.ENV_COUNT in report.fix


def test_failure_switches(monkeypatch):
    monkeypatch.setenv(backend.ENV_FAIL, "unavailable")
    assert "unavailable" in backend.probe().reason
    monkeypatch.setenv(backend.ENV_FAIL, "create:1, placement")
    assert backend.failures() == {"create": {1}, "placement": None}
    with pytest.raises(DeviceError, match="sim:1"):
        backend.create_predictor(None, 1, {})
    monkeypatch.setenv(backend.ENV_FAIL, "melt")
    report = backend.probe()
    assert not report.available and "unknown failure 'melt'" in report.reason
