"""Serving settings: the limits and batching knobs, their defaults, their CLI flags and the
pipeline YAML's ``Serving:`` section, all generated from one list of fields.

Precedence: a flag given on the command line > the YAML's ``Serving:`` section > the default.
Kept free of FastAPI/uvicorn imports so the CLI can build its parser without them.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..limits import DEFAULT_MAX_PIXELS

ENV_API_KEY = "MLCLS_API_KEY"


def _opt(default: Any, help: str, *, flag: bool = True, **argparse_kw: Any) -> Any:
    """A setting: its default, its --help text, and whether it is a command-line flag."""
    kind = {"default_factory": default} if callable(default) else {"default": default}
    return field(**kind, metadata={"help": help, "flag": flag, "argparse": argparse_kw})


@dataclass
class ServeSettings:
    """Everything the HTTP service needs besides the pipeline."""

    host: str = _opt("127.0.0.1", "address to listen on; 0.0.0.0 (or ::) accepts other hosts")
    port: int = _opt(8080, "port to listen on (0: any free port)")
    # Dynamic batching: a batch is cut when it holds max_batch_size images per predictor, or
    # max_wait_ms after its first image arrived, whichever comes first.
    max_batch_size: int = _opt(8, "most images batched per predictor (1 turns dynamic "
                                  "batching off)")
    max_wait_ms: float = _opt(5.0, "how long a batch waits for more requests after its first")
    max_queue: int = _opt(128, "images that may wait for a predictor; more get HTTP 503")
    request_timeout: float = _opt(30.0, "seconds a request may take before it gets HTTP 504")
    max_body_bytes: int = _opt(32 * 1024 * 1024, "largest request body accepted (HTTP 413 "
                                                 "beyond)")
    max_pixels: int = _opt(DEFAULT_MAX_PIXELS, "largest image (or page) accepted, in pixels "
                                               "(HTTP 413 beyond); offline: MLCLS_MAX_PIXELS")
    max_aspect_ratio: float = _opt(50.0, "most elongated image accepted (long side / short "
                                         "side)")
    max_pages: int = _opt(10, "most pages of a PDF or TIFF classified per request (PaddleX's "
                              "Serving.extra.max_num_input_imgs); later pages are left out")
    url_timeout: float = _opt(10.0, "seconds to fetch an image URL, all of it")
    url_max_bytes: int = _opt(20 * 1024 * 1024, "largest image a URL may deliver")
    allow_private_urls: bool = _opt(False, "let image URLs point at addresses that are not "
                                           "public (loopback, private, link-local, shared...)")
    visualize: bool = _opt(True, "return the drawn result in result.image unless the request "
                                 "says (PaddleX's Serving.visualize)", flag=False)
    api_key: str | None = _opt(None, "require this key in X-API-Key or 'Authorization: "
                                     f"Bearer' (or set {ENV_API_KEY}, which keeps it out of "
                                     "the process list)")
    cors_origins: list[str] = _opt(list, "origins allowed by CORS (default: none, CORS off)",
                                   nargs="+", metavar="ORIGIN")
    jpeg_quality: int = _opt(90, "JPEG quality of the drawn result")
    decode_workers: int = _opt(0, "images decoded at once (0: one per CPU core, at least 2)")
    log_level: str = _opt("info", "uvicorn's log level",
                          choices=["critical", "error", "warning", "info", "debug"])

    def __post_init__(self) -> None:
        checks = {"max_batch_size": self.max_batch_size >= 1, "max_wait_ms": self.max_wait_ms >= 0,
                  "max_queue": self.max_queue >= 1, "request_timeout": self.request_timeout > 0,
                  "max_body_bytes": self.max_body_bytes >= 1, "max_pixels": self.max_pixels >= 1,
                  "max_aspect_ratio": self.max_aspect_ratio >= 1, "max_pages": self.max_pages >= 1,
                  "url_timeout": self.url_timeout > 0, "url_max_bytes": self.url_max_bytes >= 1,
                  "jpeg_quality": 1 <= self.jpeg_quality <= 100,
                  "decode_workers": self.decode_workers >= 0,
                  "port": 0 <= self.port <= 65535}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            from ..errors import UsageError

            raise UsageError("serving settings out of range: " + ", ".join(
                f"{name}={getattr(self, name)!r}" for name in bad))

    @property
    def workers_for_decoding(self) -> int:
        return self.decode_workers or max(2, os.cpu_count() or 1)


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def _flag_fields() -> list[Any]:
    return [f for f in fields(ServeSettings) if f.metadata.get("flag")]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The serving flags, one per ``ServeSettings`` field. Their argparse default is None so
    that a flag not given leaves the YAML's ``Serving:`` value (or the default) in place; the
    help shows the real default."""
    g = parser.add_argument_group("serving (with --serve)")
    for f in _flag_fields():
        default = _default(f)
        kw: dict[str, Any] = dict(f.metadata["argparse"])
        shown = "none" if default in (None, []) else default
        help_text = f"{f.metadata['help']} (default: {shown})"
        if isinstance(default, bool):
            g.add_argument(f"--{f.name}", action="store_true", default=None, help=help_text)
            continue
        if not isinstance(default, list) and default is not None:
            kw["type"] = type(default)
        g.add_argument(f"--{f.name}", default=None, help=help_text, **kw)


def settings_from_yaml(section: Any) -> dict[str, Any]:
    """The ``Serving:`` section of a pipeline YAML as ServeSettings keywords. PaddleX's keys
    are read (``visualize``, ``extra.max_num_input_imgs``); so is any ServeSettings field by
    its own name. Unknown keys are an error, so a typo does not pass unnoticed."""
    from ..errors import UsageError

    if section is None:
        return {}
    if not isinstance(section, dict):
        raise UsageError(f"pipeline config Serving: expected a mapping, got "
                         f"{type(section).__name__}")
    known = {f.name: f for f in fields(ServeSettings)}
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key == "extra":
            if not isinstance(value, dict):
                raise UsageError("pipeline config Serving.extra: expected a mapping")
            if "max_num_input_imgs" in value and value["max_num_input_imgs"] is not None:
                out["max_pages"] = value["max_num_input_imgs"]
            continue
        if key == "return_urls":  # PaddleX's option for OCR apps; nothing to return here
            continue
        if key not in known or key == "api_key":
            raise UsageError(f"pipeline config Serving.{key}: unknown setting (known: "
                             f"visualize, extra.max_num_input_imgs, "
                             f"{', '.join(sorted(k for k in known if k != 'api_key'))})")
        out[key] = value
    for key, value in out.items():
        want = type(_default(known[key]))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
        elif want is not type(None) and not isinstance(value, want) or (
                want is int and isinstance(value, bool)):
            raise UsageError(f"pipeline config Serving.{key}: expected {want.__name__}, got "
                             f"{value!r}")
    return out


def settings_from_args(args: argparse.Namespace, yaml_section: Any = None) -> ServeSettings:
    values = settings_from_yaml(yaml_section)
    for f in fields(ServeSettings):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    if not values.get("api_key"):
        values["api_key"] = os.environ.get(ENV_API_KEY) or None
    values["cors_origins"] = list(values.get("cors_origins") or [])
    return ServeSettings(**values)
