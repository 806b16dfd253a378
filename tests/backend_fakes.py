"""Fakes for the only seams that cannot exist on this machine: the framework's probe functions
(a stand-in ``paddle`` module handed to ``framework_probe.collect``) and ``paddle.inference.Config``
(a subclass of the real one that records the device calls instead of making them, so that the
real predictor is still created, and runs, on the CPU)."""

from __future__ import annotations

import importlib
import os
import re
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paddle.inference

from mlcls.backends import framework_probe
from shared_paths import GPU_PROBE

REAL_CONFIG = paddle.inference.Config  # kept before any test replaces it


class Calls(list):
    def names(self) -> list[str]:
        return [c[0] for c in self]


def fake_paddle(*, version: str = "3.3.1", cuda: bool = False, cuda_count: int = 0,
                cuda_version: str = "12.6",
                xpu: bool = False, xpu_count: int = 0, custom_types: tuple[str, ...] = (),
                custom_devices: tuple[str, ...] = (), calls: Calls | None = None) -> Any:
    """A module-like object answering the questions ``collect`` asks, recording each one."""
    calls = Calls() if calls is None else calls

    def answer(name: str, value: Any):
        def fn(*args):
            calls.append((name, args))
            return value
        return fn

    return SimpleNamespace(
        __version__=version,
        device=SimpleNamespace(
            is_compiled_with_cuda=answer("is_compiled_with_cuda", cuda),
            is_compiled_with_xpu=answer("is_compiled_with_xpu", xpu),
            cuda=SimpleNamespace(device_count=answer("cuda.device_count", cuda_count)),
            xpu=SimpleNamespace(device_count=answer("xpu.device_count", xpu_count)),
            get_all_custom_device_type=answer("get_all_custom_device_type", list(custom_types)),
            get_available_custom_device=answer("get_available_custom_device",
                                               list(custom_devices)),
        ),
        version=SimpleNamespace(
            cuda=answer("version.cuda", cuda_version if cuda else "False"),
            cudnn=answer("version.cudnn", "9.5.1" if cuda else "False"),
            tensorrt=answer("version.tensorrt", "None"),
            xpu=answer("version.xpu", "5.0.21" if xpu else "False"),
        ),
        calls=calls,
    )


def install_metadata(tmp_path: Path, monkeypatch, dist: str, version: str) -> None:
    """A real installed-distribution record (a vendor wheel whose code cannot run here, but
    whose metadata is what the probes read)."""
    info = tmp_path / "site" / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(info.parent))
    importlib.invalidate_caches()


def use_framework(monkeypatch, fake) -> None:
    """Make every backend probe see ``fake`` as the installed Paddle."""
    monkeypatch.setattr(framework_probe, "framework_facts", lambda: framework_probe.collect(fake))


def install_fake_smi(tmp_path: Path, monkeypatch) -> Path:
    """Put an ``nvidia-smi`` on PATH that prints the real captures from an H100 machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\ncase \"$1\" in\n"
                      f"  --query-gpu=*) cat '{GPU_PROBE / 'nvidia-smi-query.csv'}' ;;\n"
                      f"  *) cat '{GPU_PROBE / 'nvidia-smi.txt'}' ;;\nesac\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return bin_dir


def _parameters(method) -> list[str]:
    """Parameter names of a pybind method, from the signature line of its docstring."""
    first = (method.__doc__ or "").strip().splitlines()[0]
    inner = first[first.index("(") + 1:first.rindex(")")]
    return [m.group(1) for m in re.finditer(r"(?:^|, )(\w+):", inner)][1:]  # drop self


def check_against_real(real: type, name: str, args: tuple, kwargs: dict) -> None:
    """Fail when a call would not fit the real ``Config`` method (a wrong keyword, too many
    arguments), since the recording fake would otherwise accept anything."""
    params = _parameters(getattr(real, name))
    assert len(args) + len(kwargs) <= len(params), (name, args, kwargs, params)
    assert set(kwargs) <= set(params[len(args):]), (name, kwargs, params)


def recording_config(calls: Calls, *, custom_readback: bool = False):
    """A ``paddle.inference.Config`` whose device calls are recorded and answered as a build
    with that device would answer them; everything else is the real Config."""
    base = REAL_CONFIG

    class RecordingConfig(base):
        _gpu: tuple | None = None
        _xpu_id: int | None = None
        _custom: tuple | None = None
        _trt: dict | None = None

        def enable_use_gpu(self, *args):
            check_against_real(base, "enable_use_gpu", args, {})
            calls.append(("enable_use_gpu", args))
            self._gpu = args

        def use_gpu(self):
            return self._gpu is not None

        def gpu_device_id(self):
            return self._gpu[1]

        def memory_pool_init_size_mb(self):
            return self._gpu[0]

        def enable_tensorrt_engine(self, **kwargs):
            check_against_real(base, "enable_tensorrt_engine", (), kwargs)
            calls.append(("enable_tensorrt_engine", kwargs))
            self._trt = kwargs

        def tensorrt_engine_enabled(self):
            return self._trt is not None

        def tensorrt_precision_mode(self):
            return self._trt["precision_mode"]

        def set_optim_cache_dir(self, path):
            calls.append(("set_optim_cache_dir", (path,)))

        def set_trt_dynamic_shape_info(self, *args):
            check_against_real(base, "set_trt_dynamic_shape_info", args, {})
            calls.append(("set_trt_dynamic_shape_info", args))

        def enable_xpu(self, *args):
            check_against_real(base, "enable_xpu", args, {})
            calls.append(("enable_xpu", args))
            self._xpu_id = 0

        def set_xpu_device_id(self, device_id):
            calls.append(("set_xpu_device_id", (device_id,)))
            self._xpu_id = device_id

        def use_xpu(self):
            return self._xpu_id is not None

        def xpu_device_id(self):
            return self._xpu_id

        def enable_custom_device(self, *args):
            check_against_real(base, "enable_custom_device", args, {})
            calls.append(("enable_custom_device", args))
            self._custom = args

    if custom_readback:
        class ReadBackConfig(RecordingConfig):
            def use_custom_device(self):
                return self._custom is not None

            def custom_device_type(self):
                return self._custom[0]

            def custom_device_id(self):
                return self._custom[1]

        return ReadBackConfig
    return RecordingConfig


def fake_gpus(monkeypatch, count: int = 2, driver: str = "580.159.04") -> None:
    """Make the gpu backend's hardware listing (nvidia-smi) report ``count`` GPUs."""
    from mlcls.backends import nvidia

    gpus = [nvidia.Gpu(i, "NVIDIA H100 80GB HBM3", f"GPU-{i:08d}", 81559, driver)
            for i in range(count)]
    monkeypatch.setattr(nvidia, "list_gpus", lambda: list(gpus))


def fake_nodes(monkeypatch, pattern_part: str, count: int = 2) -> None:
    """Make the driver's device nodes whose pattern contains ``pattern_part`` (``davinci``,
    ``xpu``, ``cambricon``) number ``count``; other patterns see the real /dev."""
    from mlcls.backends import hardware

    real = hardware.node_indices
    monkeypatch.setattr(hardware, "node_indices", lambda pattern: list(range(count))
                        if pattern_part in pattern else real(pattern))


def paddle_predictor(device, device_id, model, options):
    """The paddle engine's predictor, as the pipeline asks for it."""
    from mlcls.backends.paddle_engine import PaddleEngine

    return PaddleEngine().create_predictor(model, device, device_id, options)
