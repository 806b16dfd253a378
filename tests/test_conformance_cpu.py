"""The CPU backend passes the conformance kit that vendors run against their plugins, once per
engine that can run on the CPU here (parametrised by device type x engine)."""

from __future__ import annotations

from mlcls.testing import BackendConformance


class TestCpuPaddleConformance(BackendConformance):
    device_type = "cpu"
    engine = "paddle"
    has_ids = False  # the CPU is one device: requests are plain "cpu"


class TestCpuAutoConformance(BackendConformance):
    """Whatever ``--engine auto`` picks on the CPU (devices.yaml's first that can run)."""

    device_type = "cpu"
    has_ids = False
