"""What the installed Paddle build can do, asked in a child process.

Importing Paddle loads every CustomDevice plugin it finds (paddle-custom-npu, ...) and the
vendor runtimes behind them; a broken one can abort or segfault the importing process. The
probes of the gpu, xpu, npu and mlu backends therefore ask a child interpreter
(``python -m mlcls.backends.framework_probe``), which prints the facts as JSON, under a timeout.
A crash or a hang there becomes an ordinary "unavailable" reason. When Paddle is already imported
in this process the facts are read here instead: whatever could crash has already run. And
when the build's version file (read as text, not imported) says it has neither CUDA nor XPU and
no CustomDevice plugin is on the path, there is nothing a child could add, so none is started:
``--device auto`` on a CPU machine costs no extra process.

``collect(paddle)`` is the one function that touches the framework; tests hand it a fake module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

ENV_TIMEOUT = "MLCLS_PROBE_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
# Everything in the environment that changes the answer; the cache is keyed on it.
_ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "XPU_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES",
             "MLU_VISIBLE_DEVICES", "CUSTOM_DEVICE_ROOT", "PYTHONPATH", "LD_LIBRARY_PATH")


@dataclass
class FrameworkFacts:
    """The installed Paddle build's answers; ``error`` says why there are none."""

    paddle_version: str | None = None
    error: str | None = None  # Paddle missing, or the probe crashed / hung
    cuda: dict[str, Any] = field(default_factory=dict)  # compiled, version, cudnn, ..., count
    xpu: dict[str, Any] = field(default_factory=dict)  # compiled, version, count
    custom: dict[str, Any] = field(default_factory=dict)  # types: [...], devices: ["npu:0"...]
    problems: dict[str, str] = field(default_factory=dict)  # one failed question -> why
    source: str = "paddle"  # paddle (asked) | version-file (read without importing)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameworkFacts:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def custom_count(self, device_type: str) -> int:
        return sum(1 for d in self.custom.get("devices", ())
                   if str(d).partition(":")[0] == device_type)


def _ask(problems: dict[str, str], key: str, call, default=None):
    """One question to the framework; a failure is recorded, not raised."""
    try:
        return call()
    except Exception as exc:  # a half-working build answers some questions, not others
        problems[key] = f"{type(exc).__name__}: {exc}".strip()
        return default


def _version_text(value: Any) -> str | None:
    # paddle.version.* answer the string 'False' (or None) when the build lacks the part
    text = str(value).strip() if value is not None else ""
    return None if text in ("", "False", "None", "0") else text


def collect(paddle: Any) -> FrameworkFacts:
    """Ask an imported ``paddle`` module what it was built with and which devices it sees."""
    facts = FrameworkFacts(paddle_version=str(getattr(paddle, "__version__", "") or "") or None)
    p = facts.problems
    dev = paddle.device
    compiled = bool(_ask(p, "cuda.compiled", dev.is_compiled_with_cuda, False))
    facts.cuda = {"compiled": compiled,
                  "version": _ask(p, "cuda.version", lambda: _version_text(paddle.version.cuda())),
                  "cudnn": _ask(p, "cuda.cudnn", lambda: _version_text(paddle.version.cudnn())),
                  "tensorrt": _ask(p, "cuda.tensorrt",
                                   lambda: _version_text(paddle.version.tensorrt())),
                  "count": int(_ask(p, "cuda.count", dev.cuda.device_count, 0) or 0)
                  if compiled else 0}
    xpu = bool(_ask(p, "xpu.compiled", dev.is_compiled_with_xpu, False))
    facts.xpu = {"compiled": xpu,
                 "version": _ask(p, "xpu.version", lambda: _version_text(paddle.version.xpu())),
                 "count": int(_ask(p, "xpu.count", dev.xpu.device_count, 0) or 0) if xpu else 0}
    facts.custom = {
        "types": sorted(str(t) for t in _ask(p, "custom.types", dev.get_all_custom_device_type,
                                             []) or []),
        "devices": [str(d) for d in _ask(p, "custom.devices", dev.get_available_custom_device,
                                         []) or []],
    }
    return facts


_ASSIGNMENT = re.compile(r"^(\w+)\s*=\s*'([^']*)'", re.MULTILINE)
_ABSENT = ("", "False", "None")


def _custom_plugins_present() -> bool:
    """Whether Paddle would find a CustomDevice plugin to load (its documented places)."""
    if os.environ.get("CUSTOM_DEVICE_ROOT"):
        return True
    return any(os.path.isdir(os.path.join(entry or ".", "paddle_custom_device"))
               for entry in sys.path)


def static_facts() -> FrameworkFacts | None:
    """The facts from ``paddle/version/__init__.py`` read as text, when they settle everything
    (no CUDA, no XPU, no CustomDevice plugin); ``None`` when Paddle must be asked."""
    try:
        spec = importlib.util.find_spec("paddle")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations or _custom_plugins_present():
        return None
    base = list(spec.submodule_search_locations)[0]
    try:
        with open(os.path.join(base, "version", "__init__.py"), encoding="utf-8") as fh:
            values = dict(_ASSIGNMENT.findall(fh.read()))
    except OSError:
        return None
    needed = ("full_version", "cuda_version", "xpu_xre_version")
    if any(k not in values for k in needed) or values["cuda_version"] not in _ABSENT \
            or values["xpu_xre_version"] not in _ABSENT:
        return None
    return FrameworkFacts(
        paddle_version=values["full_version"], source="version-file",
        cuda={"compiled": False, "version": None, "cudnn": None, "tensorrt": None, "count": 0},
        xpu={"compiled": False, "version": None, "count": 0},
        custom={"types": [], "devices": []})


def _child_main() -> int:
    try:
        import paddle
    except Exception as exc:
        facts = FrameworkFacts(error=f"importing paddle failed: {type(exc).__name__}: {exc}")
    else:
        facts = collect(paddle)
    sys.stdout.write("\n" + json.dumps(facts.__dict__) + "\n")
    return 0


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def run_child(timeout: float | None = None, env: dict[str, str] | None = None) -> FrameworkFacts:
    """Import Paddle in a child interpreter and return its facts; never raises."""
    if timeout is None:
        timeout = float(os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT_S)
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("GLOG_minloglevel", "2")
    cmd = [sys.executable, "-m", "mlcls.backends.framework_probe"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=child_env, check=False)
    except subprocess.TimeoutExpired:
        return FrameworkFacts(error=f"importing paddle did not finish within {timeout:g} s "
                                    f"(raise {ENV_TIMEOUT} if the machine is slow)")
    except OSError as exc:
        return FrameworkFacts(error=f"could not start the probe process: {exc}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode == 0 and lines:
        try:
            return FrameworkFacts.from_dict(json.loads(lines[-1]))
        except (ValueError, TypeError) as exc:
            return FrameworkFacts(error=f"the probe process printed bad JSON ({exc})")
    tail = " | ".join(ln.strip() for ln in done.stderr.strip().splitlines()[-3:] if ln.strip())
    return FrameworkFacts(error=f"importing paddle {_describe_exit(done.returncode)}"
                                + (f" ({tail})" if tail else "")
                                + "; a vendor plugin or runtime loaded by paddle is the usual "
                                  "cause")


_cache: dict[tuple, FrameworkFacts] = {}
_lock = threading.Lock()


def framework_facts() -> FrameworkFacts:
    """The facts for the current environment (asked once per environment, then cached)."""
    key = tuple(os.environ.get(k) for k in _ENV_KEYS)
    with _lock:
        if key not in _cache:
            loaded = sys.modules.get("paddle")
            _cache[key] = (collect(loaded) if loaded is not None
                           else static_facts() or run_child())
        return _cache[key]


def clear_cache() -> None:
    with _lock:
        _cache.clear()


if __name__ == "__main__":
    sys.exit(_child_main())
