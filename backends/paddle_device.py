"""The Paddle engine's facts about the installed framework: builds installed together, version
pairing with CustomDevice plugins, precision names, and the visible-device mask's message."""

from __future__ import annotations

import logging
import os
from importlib import metadata
from typing import Any

from mlcls.plugin import ProbeReport, UsageError

from .framework_probe import FrameworkFacts

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")


def precision_type(name: Any, device_type: str) -> Any:
    """``fp32``/``fp16`` -> ``paddle.inference.PrecisionType``; a clear error for an unknown
    name. (Whether devices.yaml allows it for the model is checked by the core beforehand.)"""
    from mlcls.paddle_engine import import_paddle_inference

    text = str(name or "fp32").lower()
    if text not in PRECISIONS:
        raise UsageError(f"{device_type} option precision={name!r} is not one of "
                         f"{', '.join(PRECISIONS)}")
    types = import_paddle_inference().PrecisionType
    return types.Half if text == "fp16" else types.Float32


def distribution_version(*names: str) -> str | None:
    """The installed version of the first distribution found among ``names``."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


FRAMEWORK_BUILDS = ("paddlepaddle", "paddlepaddle-gpu", "paddlepaddle-xpu")


def clashing_builds() -> str | None:
    """A sentence when several builds of the framework are installed: they all unpack into the
    same ``paddle`` folder, so the one installed last decides what runs."""
    found = [f"{name} {distribution_version(name)}" for name in FRAMEWORK_BUILDS
             if distribution_version(name)]
    if len(found) < 2:
        return None
    return (f"{' and '.join(found)} are installed together; they share one `paddle` folder, "
            f"so the last one installed is what runs (uninstall them all, then install only "
            f"the one you need)")


def major_minor(version: str | None) -> tuple[int, ...] | None:
    parts = []
    for piece in (version or "").split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            return None
        parts.append(int(digits))
    return tuple(parts) if len(parts) == 2 else None


def skew(plugin: str, plugin_version: str | None, paddle_version: str | None) -> str | None:
    """A sentence when a plugin built for one Paddle release meets another, else ``None``."""
    a, b = major_minor(plugin_version), major_minor(paddle_version)
    if a is None or b is None or a == b:
        return None
    return (f"{plugin} {plugin_version} is built for paddlepaddle {a[0]}.{a[1]}.x but "
            f"paddlepaddle {paddle_version} is installed")


def mask_reason(device_type: str) -> tuple[str, str] | None:
    """(reason, fix) when the type's visible-device variable hides everything."""
    from mlcls.plugins import backend

    owner, _ = backend(device_type)
    var = getattr(owner, "visible_env", None)
    if var and var in os.environ:
        value = os.environ[var]
        return (f"{var}={value!r} leaves no {device_type} device visible",
                f"unset {var} or set it to the device numbers to use (e.g. {var}=0,1)")
    return None


def broken_framework(device_type: str, facts: FrameworkFacts) -> ProbeReport:
    """The report when Paddle itself could not be asked."""
    return ProbeReport(device_type, False, reason=str(facts.error),
                       fix="run `python -c \"import paddle; paddle.utils.run_check()\"` to see "
                           "the failure, then reinstall paddlepaddle or remove the plugin "
                           "that breaks it (see docs/devices.md, troubleshooting)")
