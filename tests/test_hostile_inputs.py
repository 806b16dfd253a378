"""Hostile and odd inputs through the CLI, Python and HTTP: image bombs, files that are not
regular files, names that do not fit, --save_path mistakes, URLs that trickle. Each one gets a
clear message naming it, never a traceback, and the other inputs still run."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from loopback_http import LoopbackServer
from mlcls import create_pipeline
from mlcls.errors import InputError
from mlcls.inputs import decode_bytes, header_size
from mlcls.serving.runner import BackgroundServer
from mlcls.serving.settings import ServeSettings
from mlcls.visualize import MAX_SIDE, draw_result

PATH = "/multilabel-image-classification"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A small PNG whose header declares width x height (its rows compress to almost
    nothing), the kind that made the decoder allocate gigabytes."""
    rows = zlib.compressobj(9)
    body = b""
    row = b"\x00" + b"\x00" * (width * 3)
    for _ in range(min(height, 64)):  # enough rows to be a plausible stream start
        body += rows.compress(row)
    body += rows.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body)
            + png_chunk(b"IEND", b""))


def png_with_text(size: int) -> bytes:
    """A valid 16x16 PNG carrying a tEXt chunk of ``size`` bytes (Pillow refuses to open
    text chunks over 1 MB; OpenCV, PaddleX's decoder, reads it)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + png_chunk(b"tEXt", b"Comment\x00" + b"x" * size) + data[iend:]


def jpeg_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def run_cli(*args: str, env: dict | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlcls.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, errors="backslashreplace")


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    with create_pipeline(model_dir=tiny_model, device="cpu", threshold=0.0) as p:
        yield p


@pytest.fixture(scope="module")
def server(pipeline):
    settings = ServeSettings(port=0, log_level="warning", max_pixels=1_000_000)
    with BackgroundServer(pipeline, settings) as srv:
        yield srv


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


# -- image bombs --------------------------------------------------------------------------------

def test_the_bomb_really_declares_its_size():
    assert header_size(png_bomb()) == (20000, 20000)
    assert header_size(jpeg_declaring(60000, 50000)) == (60000, 50000)


@pytest.mark.parametrize("make", [png_bomb, lambda: jpeg_declaring(60000, 50000)],
                         ids=["png", "jpeg"])
def test_bombs_are_refused_from_the_header_in_python(pipeline, make):
    good = np.zeros((8, 8, 3), np.uint8)
    bomb, ok = pipeline.predict([make(), good])
    assert ok.ok and not bomb.ok
    assert "over the limit of 100000000" in bomb["error"]
    assert "MLCLS_MAX_PIXELS" in bomb["error"]


def _peak_run(tiny_model, inputs, out) -> tuple[subprocess.CompletedProcess, int]:
    code = ("import resource, sys; from mlcls.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr);"
            " sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "--pipeline",
                           "multi_label_image_classification", "--model_dir", str(tiny_model),
                           "--device", "cpu", "--input", *map(str, inputs), "--save_path",
                           str(out), "-q"], capture_output=True, text=True, timeout=120)
    no_traceback(proc)
    return proc, int(proc.stderr.rsplit("PEAK", 1)[1].split()[0])


def test_a_bomb_costs_no_memory_on_the_cli(tiny_model, tmp_path):
    """The CLI refuses the small PNG that declares 20000x20000 with one line, and its peak
    memory is that of a run without it, far below the 1.2 GB the pixels would take."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    ok = tmp_path / "ok.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(ok)
    proc, peak = _peak_run(tiny_model, [bomb, ok], tmp_path / "out")
    assert proc.returncode == 1
    assert f"{bomb}: 20000x20000 is 400000000 pixels, over the limit" in proc.stderr
    assert "1 of 2 image(s) classified" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok_res.json", "ok_res.png"]
    _, baseline = _peak_run(tiny_model, [ok], tmp_path / "out2")
    assert peak - baseline < 200_000, f"peak {peak} KiB against {baseline} KiB without it"


def test_the_limit_is_configurable(tiny_model, tmp_path):
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "x.png")
    proc = run_cli("--pipeline", "multi_label_image_classification", "--model_dir",
                   str(tiny_model), "--device", "cpu", "--input", str(tmp_path / "x.png"),
                   env={"MLCLS_MAX_PIXELS": "5000"})
    no_traceback(proc)
    assert proc.returncode == 1
    assert "100x100 is 10000 pixels, over the limit of 5000" in proc.stderr


def test_the_server_refuses_bombs_with_the_same_message(server):
    for data in (png_bomb(), jpeg_declaring(60000, 50000)):
        resp = requests.post(server.url + PATH, json={"image": b64(data)}, timeout=30)
        assert resp.status_code == 413, resp.text
        assert "over the limit of 1000000 (--max_pixels)" in resp.json()["errorMsg"]


def test_offline_and_server_accept_the_same_png_with_a_large_text_chunk(pipeline, server):
    data = png_with_text(2_000_000)
    offline = next(pipeline.predict(data))
    assert offline.ok, offline
    resp = requests.post(server.url + PATH, json={"image": b64(data), "visualize": False},
                         timeout=30)
    assert resp.status_code == 200, resp.text
    assert [c["score"] for c in resp.json()["result"]["categories"]] == \
        pytest.approx(offline["scores"], abs=1e-6)


def test_a_header_that_lies_is_caught_after_decoding(monkeypatch):
    from mlcls import inputs

    monkeypatch.setattr(inputs, "header_size", lambda data: (4, 4))
    buf = io.BytesIO()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(buf, "PNG")
    with pytest.raises(InputError, match="100x100 is 10000 pixels"):
        decode_bytes(buf.getvalue(), "liar.png", limit=5000)


@pytest.mark.parametrize("shape", [(1, 10000, 3), (10000, 1, 3), (3, 9000, 3), (6000, 200, 3)])
def test_drawing_is_bounded_whatever_the_aspect_ratio(shape):
    picture = draw_result(np.zeros(shape, np.uint8), [0, 1], [0.9, 0.8],
                          ["x" * 500, "a label"])
    assert picture.width <= MAX_SIDE + 1500 and picture.height <= MAX_SIDE + 100, picture.size


# -- files that are not regular files -----------------------------------------------------------

def test_a_fifo_and_a_link_to_dev_zero_are_skipped_with_a_reason(pipeline, tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "x.jpg")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    results = list(pipeline.predict(str(tmp_path)))  # would hang / fill memory before
    by_name = {Path(r["input_path"]).name: r for r in results}
    assert by_name["a.png"].ok
    assert "skipped, not a regular file: a FIFO" in by_name["x.jpg"]["error"]
    assert "skipped, not a regular file: a character device" in by_name["zero.png"]["error"]
    # given directly, too
    fifo, = pipeline.predict(str(tmp_path / "x.jpg"))
    assert "not a regular file: a FIFO" in fifo["error"]


def test_every_file_read_has_a_size_cap(pipeline, tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(big)
    monkeypatch.setenv("MLCLS_MAX_FILE_BYTES", "100")
    res, = pipeline.predict(str(big))
    assert not res.ok and "over the limit of 100 (MLCLS_MAX_FILE_BYTES)" in res["error"]


# -- names --------------------------------------------------------------------------------------

def test_a_non_utf8_name_is_saved_under_a_safe_name(pipeline, tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9-\xff.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(raw.decode("utf-8", "surrogateescape"))
    res, = pipeline.predict(os.fsdecode(raw))
    out = tmp_path / "out"
    written = res.save_all(out)
    assert sorted(p.name for p in written) == ["caf%E9-%FF_res.json", "caf%E9-%FF_res.png"]
    text = (out / "caf%E9-%FF_res.json").read_text(encoding="utf-8")
    assert "\\udce9" in text  # the original bytes, as JSON escapes
    str(res)  # printable as well
    res.print()


def test_a_name_too_long_for_its_result_file_is_shortened(pipeline, tmp_path):
    stem = "n" * 250
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{stem}.png")
    other = "n" * 249 + "m"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{other}.png")
    names = set()
    for res in pipeline.predict(str(tmp_path)):
        for path in res.save_all(tmp_path / "out"):
            assert len(path.name.encode()) <= 255
            names.add(path.name)
    assert len(names) == 4, names  # two inputs, two files each, none overwritten


def test_control_characters_in_names_cannot_forge_output_lines(tiny_model, tmp_path):
    name = "x\nmlcls: 99 of 99 image(s) classified\x1b[2K.png"
    (tmp_path / name).write_bytes(b"not an image")
    proc = run_cli("--pipeline", "multi_label_image_classification", "--model_dir",
                   str(tiny_model), "--device", "cpu", "--input", str(tmp_path / name))
    no_traceback(proc)
    assert proc.returncode == 1
    assert "x\\nmlcls: 99 of 99 image(s) classified\\x1b[2K.png" in proc.stderr
    assert not any(line.startswith("mlcls: 99 of 99") for line in proc.stderr.splitlines())
    assert "\x1b" not in proc.stderr


# -- --save_path --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "devnull", "image-suffix", "json-suffix", "proc",
                                  "read-only"])
def test_bad_save_paths_are_usage_errors_before_any_work(kind, tiny_model, image_dir,
                                                         tmp_path):
    target = {"file": tmp_path / "exists.txt", "devnull": Path("/dev/null"),
              "image-suffix": tmp_path / "out.jpg", "json-suffix": tmp_path / "r.json",
              "proc": Path("/proc/self/new-folder"), "read-only": tmp_path / "ro" / "sub"}[kind]
    if kind == "file":
        target.write_text("keep me")
    if kind == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders; /proc covers the case")
        target.parent.mkdir()
        target.parent.chmod(0o555)
    proc = run_cli("--pipeline", "multi_label_image_classification", "--model_dir",
                   str(tmp_path / "no-such-model"), "--input", str(image_dir),
                   "--save_path", str(target))
    no_traceback(proc)
    # 2 and a --save_path message: the (missing) model was never looked at
    assert proc.returncode == 2, proc.stderr
    assert f"--save_path {target}" in proc.stderr
    assert not (tmp_path / "out.jpg").exists() and not (tmp_path / "r.json").exists()
    if kind == "file":
        assert target.read_text() == "keep me"


def test_a_new_save_folder_below_a_writable_one_is_fine(tiny_model, image_dir, tmp_path):
    proc = run_cli("--pipeline", "multi_label_image_classification", "--model_dir",
                   str(tiny_model), "--device", "cpu", "--input", str(image_dir / "a.jpg"),
                   "--save_path", str(tmp_path / "new" / "deeper"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "new" / "deeper" / "a_res.json").is_file()


# -- device strings -----------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu:\u00b2", "cpu:\u0663", "cpu:\uff11"])
def test_device_ids_are_ascii_digits_only(device, tiny_model, image_dir):
    proc = run_cli("--pipeline", "multi_label_image_classification", "--model_dir",
                   str(tiny_model), "--device", device, "--input", str(image_dir / "a.jpg"))
    no_traceback(proc)
    assert proc.returncode == 2
    assert "bad device id" in proc.stderr


# -- URLs ---------------------------------------------------------------------------------------

@pytest.fixture
def trickler():
    """An origin that sends its status line and headers one byte at a time, for ever."""
    server = LoopbackServer()

    def trickle(handler) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Pad: " + b"a" * 10000
        try:
            for byte in head:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass
        handler.close_connection = True

    server.routes["/slow.png"] = trickle
    yield server
    server.close()


def test_a_trickling_origin_is_cut_off_at_the_deadline(tiny_model, trickler):
    url = trickler.url("/slow.png")
    start = time.monotonic()
    proc = run_cli("--pipeline", "multi_label_image_classification", "--model_dir",
                   str(tiny_model), "--device", "cpu", "--input", url,
                   env={"MLCLS_URL_TIMEOUT": "2"})
    elapsed = time.monotonic() - start
    no_traceback(proc)
    assert proc.returncode == 1
    assert "no complete answer within 2 s (MLCLS_URL_TIMEOUT)" in proc.stderr
    assert elapsed < 60  # it used to hang for minutes: a hang check, not a speed claim


def test_a_trickling_origin_does_not_hold_the_server(pipeline, trickler):
    settings = ServeSettings(port=0, log_level="warning", allow_private_urls=True,
                             url_timeout=1.5, decode_workers=2)
    with BackgroundServer(pipeline, settings) as srv:
        resp = requests.post(srv.url + PATH, json={"image": trickler.url("/slow.png")},
                             timeout=60)
        assert resp.status_code == 400
        assert "no complete answer within 1.5 s" in resp.json()["errorMsg"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:70000/x.png", "http://127.0.0.1:-1/x.png",
                                 "http://127.0.0.1:0/x.png"])
def test_a_port_out_of_range_is_an_invalid_url(pipeline, url):
    res, = pipeline.predict(url)
    assert not res.ok and "not a valid URL" in res["error"], res


def test_a_lazily_opened_pil_bomb_is_refused_before_it_loads(pipeline):
    # under the size at which Pillow itself refuses to open (it only warns), over mlcls's
    with pytest.warns(Image.DecompressionBombWarning):
        img = Image.open(io.BytesIO(png_bomb(12000, 10000)))  # the header only, so far
    res, = pipeline.predict(img)
    assert not res.ok and "12000x10000 is 120000000 pixels, over the limit" in res["error"]


@pytest.mark.parametrize("device", ["cpu:\u00b2", "cpu:\u0663"])
def test_device_ids_are_ascii_digits_only_in_python(device, tiny_model):
    from mlcls.errors import DeviceSpecError

    with pytest.raises(DeviceSpecError, match="bad device id"):
        create_pipeline(model_dir=tiny_model, device=device)


def test_trickling_origins_do_not_starve_requests_that_carry_their_image(pipeline, trickler):
    """With one decoder, two requests whose URLs trickle are still being fetched when a
    request with a base64 image arrives; it is answered first, not after their deadline."""
    from concurrent.futures import ThreadPoolExecutor

    settings = ServeSettings(port=0, log_level="warning", allow_private_urls=True,
                             url_timeout=8, decode_workers=1)
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 60, np.uint8)).save(buf, "PNG")
    finished: list[str] = []

    def post(name: str, image: str) -> int:
        resp = requests.post(srv.url + PATH, json={"image": image, "visualize": False},
                             timeout=60)
        finished.append(name)
        return resp.status_code

    with BackgroundServer(pipeline, settings) as srv, ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(post, f"slow{i}", trickler.url("/slow.png")) for i in range(2)]
        time.sleep(1.0)  # both are inside their fetch now
        fast = pool.submit(post, "fast", b64(buf.getvalue()))
        assert fast.result() == 200
        assert [f.result() for f in slow] == [400, 400]
    assert finished[0] == "fast", finished
