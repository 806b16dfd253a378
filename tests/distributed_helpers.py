"""Pieces the Ray tests ship to Ray's workers (pickled by value, since the workers cannot
import the tests folder): an inference worker that dies once, and the seed's client."""

from __future__ import annotations

import os
import socket

from mlcls.distributed.batch import Tagger

KILL_MARK = "kill-once"
ARMED_SUFFIX = ".armed"


class DiesOnce(Tagger):
    """Exits its process, as a crash would, on the first batch holding an input whose name has
    ``KILL_MARK`` while the file ``<that input>.armed`` exists (deleted first, so only once:
    the batch's retry on the restarted worker goes through)."""

    def __call__(self, batch):
        for path in batch.column("input_path").to_pylist():
            if KILL_MARK in os.path.basename(path):
                path = path.removeprefix("file://")
                try:
                    os.remove(path + ARMED_SUFFIX)
                except FileNotFoundError:
                    continue
                os._exit(1)
        return super().__call__(batch)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_python_client(seed_text: str, base_url: str) -> str:
    """The seed document's Python client example, pointed at ``base_url``: only its URL's
    host and port change."""
    start = seed_text.index("```python\nimport base64\nimport requests")
    code = seed_text[start + len("```python\n"):seed_text.index("```", start + 10)]
    original = '"http://localhost:8080/multilabel-image-classification"'
    assert original in code and '"./demo.jpg"' in code and '"./out.jpg"' in code
    return code.replace('"http://localhost:8080', f'"{base_url}')
