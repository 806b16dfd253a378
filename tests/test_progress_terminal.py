"""A directory run on a terminal, end to end: libpng's own warnings (written by C code to file
descriptor 2 while OpenCV decodes a PNG) end up on lines of their own above the progress bar,
never written over by it or into it."""

from __future__ import annotations

import os
import re
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MLCLS = str(Path(sys.executable).parent / "mlcls")


def icc_profile_libpng_warns_about() -> bytes:
    """An ICC profile libpng refuses (a bare 132-byte header with an out-of-range rendering
    intent; the libpng in OpenCV's wheel here says "iCCP: too short"): it prints a warning
    ("libpng warning: iCCP: ...") and decodes the image anyway, as with the profiles of some
    reference photos ("known incorrect sRGB profile")."""
    header = bytearray(132)
    struct.pack_into(">I", header, 0, len(header))  # profile size
    header[12:16] = b"mntr"
    header[16:20] = b"RGB "
    header[20:24] = b"XYZ "
    header[36:40] = b"acsp"
    struct.pack_into(">I", header, 64, 0x01000000)  # rendering intent: out of range
    return bytes(header)  # tag count (128..131) 0


def render(stream: str) -> list[str]:
    """The lines a terminal shows after ``stream``: \\r goes to column 0, ESC[K erases to the
    end of the line, text overwrites what is under it."""
    lines, line, col = [], [], 0
    for token in re.findall(r"\x1b\[K|\r|\n|[^\x1b\r\n]", stream):
        if token == "\r":
            col = 0
        elif token == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif token == "\x1b[K":
            del line[col:]
        else:
            if col < len(line):
                line[col] = token
            else:
                line.append(token)
            col += 1
    if line:
        lines.append("".join(line).rstrip())
    return lines


def run_on_a_terminal(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` with stderr on a pseudo-terminal (stdout to a pipe); return its status and
    everything it wrote to the terminal."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=secondary, close_fds=True)
    os.close(secondary)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    data = os.read(primary, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    return status, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_libpng_warnings_do_not_write_over_the_progress_bar(tiny_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        if i in (1, 4):  # two of them carry the profile libpng complains about
            pixels.save(folder / f"{i}.png", icc_profile=icc_profile_libpng_warns_about())
        else:
            pixels.save(folder / f"{i}.png")
    status, stream = run_on_a_terminal(
        [MLCLS, "--pipeline", "multi_label_image_classification", "--input", str(folder),
         "--model_dir", str(tiny_model), "--device", "cpu", "--batch_size", "1"])
    assert status == 0, stream
    warnings = re.findall(r"libpng warning: [^\r\n\x1b]+", stream)
    assert len(warnings) == 2, stream  # libpng did warn, once per such file
    shown = render(stream)
    # each warning whole, on a line of its own (no bar before or after it on that line)
    assert [line for line in shown if "libpng" in line] == warnings, shown
    # the bar is drawn below them and ends complete, followed by the summary
    bar = [line for line in shown if re.match(r"\[[#.]+\] \d+/6 ", line)]
    assert bar and bar[-1].startswith("[" + "#" * 24 + "] 6/6 "), shown
    assert shown[-1].startswith("mlcls: 6 of 6 image(s) classified"), shown
