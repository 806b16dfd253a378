"""A one-line progress bar on stderr, drawn only when stderr is a terminal, and a relay that
keeps other messages from being written over it."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None,
                 min_interval: float = 0.1):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = (self.stream.isatty() and total > 1) if enabled is None else enabled
        self.done = 0
        self.failed = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._min_interval = min_interval
        self._shown = False
        self.lock = threading.RLock()

    def update(self, ok: bool = True) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        now = time.monotonic()
        if self.enabled and (now - self._last >= self._min_interval or self.done == self.total):
            self._last = now
            self.redraw(now)

    def redraw(self, now: float | None = None) -> None:
        with self.lock:
            self.stream.write("\r" + self.line(now) + "\033[K")
            self.stream.flush()
            self._shown = True

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{rate:.1f} img/s, ETA {eta:.0f}s{failed}")

    def clear(self) -> None:
        """Wipe the bar so that a line printed next does not mix with it."""
        if self.enabled:
            with self.lock:
                self.stream.write("\r\033[K")
                self.stream.flush()

    def above(self, text: str) -> None:
        """Print ``text`` (whole lines) above the bar, then draw the bar again."""
        with self.lock:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            if self._shown:
                self.redraw()

    def close(self) -> None:
        if self.enabled:
            with self.lock:
                self.stream.write("\n")
                self.stream.flush()


class StderrRelay:
    """While a bar is drawn, route everything written to file descriptor 2 -- Python's own
    messages and those C libraries print directly, such as libpng's "libpng warning: iCCP:
    known incorrect sRGB profile" from inside OpenCV -- through a pipe, and print it line by
    line above the bar. Without this, such a message lands in the middle of the bar's line
    and the next redraw overwrites it. Does nothing when the bar is not drawn."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StderrRelay:
        if not self.progress.enabled:
            return self
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        terminal = os.fdopen(os.dup(self._saved), "w", encoding="utf-8", errors="replace")
        self.progress.stream = terminal
        self._thread = threading.Thread(target=self._relay, args=(read_end,), daemon=True,
                                        name="mlcls-stderr-relay")
        self._thread.start()
        return self

    def _relay(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for raw in pipe:  # ends when fd 2, the pipe's last writer, is restored
                self.progress.above(raw.decode("utf-8", "replace"))

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's write end: the relay reads to the end
        os.close(self._saved)
        if self._thread is not None:
            self._thread.join(5)
        self.progress.stream.flush()
