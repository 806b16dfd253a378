"""Serving settings: the limits and batching knobs, their defaults, and their CLI flags.

Kept free of FastAPI/uvicorn imports so the CLI can build its parser without them.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

ENV_API_KEY = "MLCLS_API_KEY"


@dataclass
class ServeSettings:
    """Everything the HTTP service needs besides the pipeline."""

    host: str = "127.0.0.1"
    port: int = 8080
    # Dynamic batching: a batch is cut when it holds max_batch_size images per predictor, or
    # max_wait_ms after its first image arrived, whichever comes first.
    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 128  # images waiting for a predictor; beyond this requests get 503
    request_timeout: float = 30.0  # seconds from arrival to answer, else 504
    max_body_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_aspect_ratio: float = 50.0  # longer side / shorter side; bounds what resizing makes
    url_timeout: float = 10.0
    url_max_bytes: int = 20 * 1024 * 1024
    allow_private_urls: bool = False  # loopback, private and link-local URL targets
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    jpeg_quality: int = 90
    decode_workers: int = 0  # 0: one per CPU core (at least 2)
    log_level: str = "info"

    def __post_init__(self) -> None:
        checks = {"max_batch_size": self.max_batch_size >= 1, "max_wait_ms": self.max_wait_ms >= 0,
                  "max_queue": self.max_queue >= 1, "request_timeout": self.request_timeout > 0,
                  "max_body_bytes": self.max_body_bytes >= 1, "max_pixels": self.max_pixels >= 1,
                  "max_aspect_ratio": self.max_aspect_ratio >= 1,
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


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The serving flags beyond --serve/--host/--port (which the CLI declares itself)."""
    d = ServeSettings()
    g = parser.add_argument_group("serving (with --serve)")
    g.add_argument("--max_batch_size", type=int, default=d.max_batch_size,
                   help="most images batched per predictor (1 turns dynamic batching off)")
    g.add_argument("--max_wait_ms", type=float, default=d.max_wait_ms,
                   help="how long a batch waits for more requests after its first")
    g.add_argument("--max_queue", type=int, default=d.max_queue,
                   help="images that may wait for a predictor; more get HTTP 503")
    g.add_argument("--request_timeout", type=float, default=d.request_timeout,
                   help="seconds a request may take before it gets HTTP 504")
    g.add_argument("--max_body_bytes", type=int, default=d.max_body_bytes,
                   help="largest request body accepted (HTTP 413 beyond)")
    g.add_argument("--max_pixels", type=int, default=d.max_pixels,
                   help="largest image accepted, in pixels (HTTP 413 beyond)")
    g.add_argument("--max_aspect_ratio", type=float, default=d.max_aspect_ratio,
                   help="most elongated image accepted (long side / short side)")
    g.add_argument("--url_timeout", type=float, default=d.url_timeout,
                   help="seconds to fetch an image URL")
    g.add_argument("--url_max_bytes", type=int, default=d.url_max_bytes,
                   help="largest image a URL may deliver")
    g.add_argument("--allow_private_urls", action="store_true",
                   help="let image URLs point at loopback, private and link-local addresses")
    g.add_argument("--api_key", default=None,
                   help=f"require this key in X-API-Key or 'Authorization: Bearer' (or set "
                        f"{ENV_API_KEY}, which keeps it out of the process list)")
    g.add_argument("--cors_origins", nargs="+", default=[], metavar="ORIGIN",
                   help="origins allowed by CORS (default: none, CORS off)")


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    d = ServeSettings()

    def pick(name: str):
        return getattr(args, name, getattr(d, name))

    return ServeSettings(
        host=pick("host"), port=pick("port"), max_batch_size=pick("max_batch_size"),
        max_wait_ms=pick("max_wait_ms"), max_queue=pick("max_queue"),
        request_timeout=pick("request_timeout"), max_body_bytes=pick("max_body_bytes"),
        max_pixels=pick("max_pixels"), max_aspect_ratio=pick("max_aspect_ratio"),
        url_timeout=pick("url_timeout"), url_max_bytes=pick("url_max_bytes"),
        allow_private_urls=bool(pick("allow_private_urls")),
        api_key=pick("api_key") or os.environ.get(ENV_API_KEY) or None,
        cors_origins=list(pick("cors_origins") or []))
