"""``mlcls devices`` and the child-process framework probe: real Paddle answers, a vendor
runtime that segfaults or hangs on import, and a machine with an NVIDIA GPU but a CPU build."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import paddle
import pytest

from backend_fakes import GPU_PROBE, install_fake_smi
from mlcls.backends import framework_probe

MLCLS = [sys.executable, "-m", "mlcls.cli"]


def _run(args, env=None, timeout=120):
    return subprocess.run(MLCLS + args, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def _broken_paddle(tmp_path, body: str) -> dict[str, str]:
    """An environment in which ``import paddle`` runs ``body`` first, as a broken vendor
    runtime loaded at import would."""
    pkg = tmp_path / "broken" / "paddle"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(pkg.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_child_probe_reports_what_the_real_build_says():
    facts = framework_probe.run_child()
    assert facts.error is None
    assert facts.paddle_version == paddle.__version__
    assert facts.cuda["compiled"] == paddle.device.is_compiled_with_cuda()
    assert facts.xpu["compiled"] == paddle.device.is_compiled_with_xpu()
    assert facts.custom["types"] == sorted(paddle.device.get_all_custom_device_type())


def test_version_file_answers_like_the_child_for_a_cpu_build():
    static = framework_probe.static_facts()
    if paddle.device.is_compiled_with_cuda() or paddle.device.is_compiled_with_xpu():
        assert static is None  # such a build must be asked
        return
    child = framework_probe.run_child()
    assert static.source == "version-file" and child.source == "paddle"
    assert static.paddle_version == child.paddle_version == paddle.__version__
    for part in ("cuda", "xpu"):
        assert getattr(static, part)["compiled"] == getattr(child, part)["compiled"]
        assert getattr(static, part)["count"] == getattr(child, part)["count"]
    assert static.custom["types"] == child.custom["types"]


def test_a_custom_device_plugin_means_paddle_must_be_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTOM_DEVICE_ROOT", raising=False)
    (tmp_path / "paddle_custom_device").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert framework_probe.static_facts() is None
    monkeypatch.undo()
    monkeypatch.setenv("CUSTOM_DEVICE_ROOT", str(tmp_path))
    assert framework_probe.static_facts() is None


def test_child_probe_survives_a_segfault_on_import(tmp_path):
    env = _broken_paddle(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    facts = framework_probe.run_child(env=env)
    assert facts.error and "SIGSEGV" in facts.error


def test_child_probe_gives_up_on_a_hang(tmp_path):
    env = _broken_paddle(tmp_path, "import time\ntime.sleep(60)\n")
    facts = framework_probe.run_child(timeout=2, env=env)
    assert facts.error and "did not finish within 2 s" in facts.error


def _simple_smi(tmp_path, env: dict[str, str]) -> dict[str, str]:
    """An ``nvidia-smi`` on PATH that lists one GPU: the hardware is there, so the paddle
    engine is asked about it."""
    bin_dir = tmp_path / "smi-bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'index, name, uuid, memory.total [MiB], driver_version'\n"
                   "echo '0, Test GPU, GPU-0001, 1024 MiB, 550.1'\n")
    smi.chmod(0o755)
    return dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")


def test_devices_command_survives_a_crashing_vendor_runtime(tmp_path):
    env = _broken_paddle(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    env = _simple_smi(tmp_path, env)
    done = _run(["devices", "--json"], env=env)
    assert done.returncode == 0, done.stderr
    rows = {r["type"]: r for r in json.loads(done.stdout)["types"]}
    assert rows["cpu"]["available"]
    assert rows["gpu"]["available"]  # the hardware; Paddle's crash is the engine's answer
    paddle_on_gpu = rows["gpu"]["engines"][0]
    assert paddle_on_gpu["engine"] == "paddle" and not paddle_on_gpu["available"]
    assert "SIGSEGV" in paddle_on_gpu["reason"]
    text = _run(["devices"], env=env)
    assert text.returncode == 0 and "SIGSEGV" in text.stdout


@pytest.mark.skipif(not GPU_PROBE.is_dir(), reason="no gpu-probe captures")
def test_devices_on_a_gpu_machine_with_a_cpu_build(tmp_path, monkeypatch):
    install_fake_smi(tmp_path, monkeypatch)
    nvml = json.loads((GPU_PROBE / "nvml.json").read_text())
    name = nvml["devices"][0]["name"]
    done = _run(["devices", "--json"], env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    rows = {r["type"]: r for r in data["types"]}
    gpu = rows["gpu"]
    assert gpu["plugin"] == "gpu" and gpu["available"] is True  # the hardware is there
    assert gpu["details"][0]["name"] == name
    assert gpu["details"][0]["memory_mib"] * 2**20 == nvml["devices"][0]["memory_total"]
    assert gpu["versions"]["driver"] == nvml["driver"]
    paddle_on_gpu = next(e for e in gpu["engines"] if e["engine"] == "paddle")
    assert paddle_on_gpu["available"] is False  # but this Paddle build cannot use it
    assert "CPU build" in paddle_on_gpu["reason"] and name in paddle_on_gpu["reason"]
    assert f"paddlepaddle-gpu=={paddle.__version__}" in paddle_on_gpu["fix"]
    assert data["priority"][-1] == "cpu" and "cuda" in gpu["aliases"]
    assert gpu["fallback"] == ["cpu"]
    text = _run(["devices"], env=dict(os.environ))
    assert f"found: GPU 0 {name}" in text.stdout
    assert "engine paddle: no, paddlepaddle" in text.stdout
    assert "(fix: replace it with the CUDA build" in text.stdout


def test_devices_lists_every_registered_type_with_its_plugin():
    done = _run(["devices", "--json"])
    assert done.returncode == 0, done.stderr
    rows = {r["type"]: r for r in json.loads(done.stdout)["types"]}
    assert {"cpu", "gpu", "xpu", "npu", "mlu"} <= set(rows)
    for kind, row in rows.items():
        assert row["plugin"], kind
        assert isinstance(row["count"], int) and isinstance(row["versions"], dict)
        if not row["available"]:
            assert row["reason"], kind
    assert rows["cpu"]["available"] and rows["cpu"]["count"] >= 1
