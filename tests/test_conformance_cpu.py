"""The CPU backend passes the conformance kit that vendors run against their backends."""

from __future__ import annotations

from mlcls.testing import BackendConformance


class TestCpuBackendConformance(BackendConformance):
    device_type = "cpu"
    has_ids = False  # the CPU is one device: requests are plain "cpu"
