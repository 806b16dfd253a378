"""Inputs: every accepted kind, every image format decoded as PaddleX decodes it (OpenCV
``imdecode(IMREAD_COLOR)`` then BGR -> RGB, checked against that call directly), and bad
inputs reported one by one while the rest still run."""

from __future__ import annotations

import ctypes
import io
import json
import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from loopback_http import LoopbackServer, closed_port_url, send, send_cut
from mlcls import create_pipeline
from mlcls.errors import InputError
from mlcls.inputs import Sample, decode_bytes, expand_inputs, fetch_url, read_file

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (36, 52, 3), dtype=np.uint8)
RGB[:, :26] //= 3  # some structure, so that rotations and crops show


def paddlex_decode(data: bytes) -> np.ndarray:
    """What PaddleX 3.7.2 does with an encoded image: a TIFF's frames go through Pillow
    (its TIFFReader: ``convert("RGB")``, no EXIF orientation), everything else through OpenCV.
    One departure is expected: 16-bit grey TIFF keeps its high byte (Pillow would clip)."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        with Image.open(io.BytesIO(data)) as img:
            if img.mode.startswith("I;16"):
                grey = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(img.convert("RGB"))
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "OpenCV cannot decode this test image"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def cv_bytes(arr: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, arr)
    assert ok
    return buf.tobytes()


def exif(orientation: int) -> Image.Exif:
    data = Image.Exif()
    data[0x0112] = orientation
    return data


def rgba() -> Image.Image:
    alpha = np.linspace(0, 255, RGB.shape[1], dtype=np.uint8)[None, :].repeat(RGB.shape[0], 0)
    return Image.fromarray(np.dstack([RGB, alpha]), "RGBA")


U16 = RNG.integers(0, 65536, (30, 40), dtype=np.uint16)
U16C = RNG.integers(0, 65536, (30, 40, 3), dtype=np.uint16)

FORMATS = {
    "jpeg": lambda: pil_bytes(Image.fromarray(RGB), "JPEG", quality=90),
    "jpeg-progressive": lambda: pil_bytes(Image.fromarray(RGB), "JPEG", progressive=True),
    "png": lambda: pil_bytes(Image.fromarray(RGB), "PNG"),
    "bmp": lambda: pil_bytes(Image.fromarray(RGB), "BMP"),
    "webp": lambda: pil_bytes(Image.fromarray(RGB), "WEBP", quality=80),
    "webp-lossless": lambda: pil_bytes(Image.fromarray(RGB), "WEBP", lossless=True),
    "tiff": lambda: pil_bytes(Image.fromarray(RGB), "TIFF"),
    "grey-png": lambda: pil_bytes(Image.fromarray(RGB[:, :, 0]), "PNG"),
    "grey-jpeg": lambda: pil_bytes(Image.fromarray(RGB[:, :, 1]), "JPEG"),
    "grey-bmp": lambda: pil_bytes(Image.fromarray(RGB[:, :, 2]), "BMP"),
    "rgba-png": lambda: pil_bytes(rgba(), "PNG"),
    "rgba-webp": lambda: pil_bytes(rgba(), "WEBP", lossless=True),
    "rgba-tiff": lambda: pil_bytes(rgba(), "TIFF"),
    "palette-png": lambda: pil_bytes(Image.fromarray(RGB).quantize(16), "PNG",
                                     transparency=3),
    "cmyk-jpeg": lambda: pil_bytes(Image.fromarray(RGB).convert("CMYK"), "JPEG"),
    "cmyk-tiff": lambda: pil_bytes(Image.fromarray(RGB).convert("CMYK"), "TIFF"),
    "16bit-grey-png": lambda: cv_bytes(U16, ".png"),
    "16bit-colour-png": lambda: cv_bytes(U16C, ".png"),
    "16bit-grey-tiff": lambda: cv_bytes(U16, ".tiff"),
    "exif6-jpeg": lambda: pil_bytes(Image.fromarray(RGB), "JPEG", exif=exif(6)),
    "exif3-jpeg": lambda: pil_bytes(Image.fromarray(RGB), "JPEG", exif=exif(3)),
    "exif8-png": lambda: pil_bytes(Image.fromarray(RGB), "PNG", exif=exif(8)),
    "exif6-tiff": lambda: pil_bytes(Image.fromarray(RGB), "TIFF", exif=exif(6)),
    "exif6-webp": lambda: pil_bytes(Image.fromarray(RGB), "WEBP", exif=exif(6)),
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_files_decode_exactly_as_paddlex(kind, tmp_path):
    data = FORMATS[kind]()
    path = tmp_path / f"image.{kind}"
    path.write_bytes(data)
    expected = paddlex_decode(data)
    got = read_file(str(path))
    assert got.dtype == np.uint8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(decode_bytes(data, "bytes"), expected)


def test_the_reference_itself_rotates_scales_and_converts():
    """Guards for the test above: the cases really differ from naive decoding."""
    h, w = RGB.shape[:2]
    assert paddlex_decode(FORMATS["exif6-jpeg"]()).shape[:2] == (w, h)
    assert paddlex_decode(FORMATS["exif8-png"]()).shape[:2] == (w, h)
    # OpenCV 4.10 ignores EXIF in WebP, and so does PaddleX.
    assert paddlex_decode(FORMATS["exif6-webp"]()).shape[:2] == (h, w)
    np.testing.assert_array_equal(paddlex_decode(FORMATS["16bit-grey-png"]())[:, :, 0],
                                  (U16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(paddlex_decode(FORMATS["16bit-colour-png"]()),
                                  (U16C[:, :, ::-1] >> 8).astype(np.uint8))
    np.testing.assert_array_equal(paddlex_decode(FORMATS["rgba-png"]()), RGB)
    # Pillow converts CMYK a little differently; mlcls must follow OpenCV, not Pillow.
    cmyk = FORMATS["cmyk-jpeg"]()
    with Image.open(io.BytesIO(cmyk)) as img:
        pillow = np.asarray(img.convert("RGB"))
    assert not np.array_equal(pillow, paddlex_decode(cmyk))


def _palette_frame(indices: np.ndarray, palette: np.ndarray) -> Image.Image:
    img = Image.fromarray(indices.astype(np.uint8), "P")
    img.putpalette(palette.astype(np.uint8).ravel().tolist())
    return img


def test_gif_first_frame_through_pillow(tmp_path):
    """OpenCV 4.10 cannot decode GIF (PaddleX fails on one); mlcls decodes the first frame
    with Pillow and expands the palette."""
    palette = RNG.integers(0, 256, (16, 3))
    first = RNG.integers(0, 16, (24, 30))
    second = (first + 5) % 16
    path = tmp_path / "anim.gif"
    _palette_frame(first, palette).save(path, save_all=True, duration=100, loop=0,
                                        append_images=[_palette_frame(second, palette)])
    data = path.read_bytes()
    got = read_file(str(path))
    np.testing.assert_array_equal(got, palette[first].astype(np.uint8))
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None:
        np.testing.assert_array_equal(got, paddlex_decode(data))  # a newer OpenCV


# -- the kinds of input -----------------------------------------------------------------------

def load_all(x) -> list[np.ndarray | InputError]:
    out = []
    for item in expand_inputs(x):
        if isinstance(item, InputError):
            out.append(item)
            continue
        try:
            out.append(item.load())
        except InputError as exc:
            out.append(exc)
    return out


def test_numpy_arrays_are_bgr_like_paddlex():
    bgr = RGB[:, :, ::-1].copy()
    (got,) = load_all(bgr)
    np.testing.assert_array_equal(got, bgr[:, :, ::-1])  # PaddleX: img[:, :, ::-1]
    (grey,) = load_all(RGB[:, :, 0])
    np.testing.assert_array_equal(grey, np.repeat(RGB[:, :, :1], 3, axis=2))
    (bgra,) = load_all(np.dstack([bgr, np.full(RGB.shape[:2], 9, np.uint8)]))
    np.testing.assert_array_equal(bgra, RGB)
    (wide,) = load_all((bgr.astype(np.uint16) << 8) | 0xAB)
    np.testing.assert_array_equal(wide, RGB)
    bad = load_all([np.zeros((4, 4, 2), np.uint8), np.zeros((0, 3), np.uint8),
                    np.full((4, 4, 3), 7.5)])
    assert [type(b) for b in bad] == [InputError] * 3
    assert [b.source for b in bad] == ["input[0]", "input[1]", "input[2]"]
    assert "shape (4, 4, 2)" in bad[0].reason and "dtype float64" in bad[2].reason
    # float arrays in 0..1 (float64 as numpy makes them by default, and float32) are scaled
    for dtype in (np.float64, np.float32):
        (scaled,) = load_all((bgr / 255.0).astype(dtype))
        np.testing.assert_array_equal(scaled, RGB)


def test_pil_images_match_the_file_decoding(tmp_path):
    for kind in ("png", "rgba-png", "exif8-png", "16bit-grey-png", "palette-png", "grey-png"):
        data = FORMATS[kind]()
        with Image.open(io.BytesIO(data)) as img:
            (got,) = load_all(img)
        np.testing.assert_array_equal(got, paddlex_decode(data), err_msg=kind)


def test_bytes_dicts_lists_and_paths(tmp_path):
    data = FORMATS["png"]()
    path = tmp_path / "x.png"
    path.write_bytes(data)
    got = load_all([data, bytearray(data), memoryview(data), {"img": str(path)},
                    {"img": RGB[:, :, ::-1].copy()}, path, (str(path),), {"image": 1}, 3.5])
    for arr in got[:7]:
        np.testing.assert_array_equal(arr, RGB)
    assert isinstance(got[7], InputError) and "needs the key 'img'" in got[7].reason
    assert isinstance(got[8], InputError) and "unsupported input type float" in got[8].reason
    samples = [s for s in expand_inputs([data, str(path)]) if isinstance(s, Sample)]
    assert [(s.input_path, s.source, s.index) for s in samples] == [
        (None, "input[0]", 0), (str(path), None, 1)]


def test_directories_are_walked_recursively_in_sorted_order(tmp_path):
    root = tmp_path / "photos"
    names = ["b.png", "A.JPG", "a/z.bmp", "a/b/c.webp", "a-b/x.tiff", "a/b/notes.txt",
             "zz/readme.md", "a.b/y.png"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith((".txt", ".md")):
            (root / name).write_text("not an image")
        else:
            Image.fromarray(RGB).save(root / name)
    expected = sorted(str(root / n) for n in names if not n.endswith((".txt", ".md")))
    items = list(expand_inputs(str(root)))
    assert [s.input_path for s in items] == expected


def test_directory_without_images_names_what_it_skipped(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    (err,) = list(expand_inputs(str(tmp_path / "docs")))
    assert isinstance(err, InputError) and err.source == str(tmp_path / "docs")
    assert "no image files (1 other file(s) skipped" in err.reason


# -- URLs ----------------------------------------------------------------------------------------

@pytest.fixture
def server():
    srv = LoopbackServer()
    srv.stop = threading.Event()  # ends stalling routes at teardown
    yield srv
    srv.stop.set()
    srv.close()


@pytest.fixture
def url_limits(monkeypatch):
    monkeypatch.setenv("MLCLS_URL_TIMEOUT", "1")
    monkeypatch.setenv("MLCLS_URL_MAX_BYTES", "200000")


def _trickle(server, total: int):
    def route(h):
        h.send_response(200)
        h.send_header("Content-Length", str(total))
        h.end_headers()
        for _ in range(total):
            if server.stop.wait(0.1):
                return
            h.wfile.write(b"x")
            h.wfile.flush()
    return route


def _silent(server):
    def route(h):
        server.stop.wait(10)
    return route


def _chunked(body: bytes):
    def route(h):
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i in range(0, len(body), 8192):
            part = body[i:i + 8192]
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")
    return route


def test_url_type_comes_from_the_content(server, url_limits):
    png = FORMATS["png"]()
    server.routes["/download"] = lambda h: send(h, png, content_type="text/html")
    server.routes["/photo.jpg"] = lambda h: send(h, FORMATS["webp-lossless"]())
    server.routes["/chunked"] = _chunked(FORMATS["tiff"]())
    got = load_all([server.url("/download"), server.url("/photo.jpg"),
                    server.url("/chunked")])
    for arr in got:
        np.testing.assert_array_equal(arr, RGB)


@pytest.mark.parametrize("route, reason", [
    ("/missing", "HTTP 404"),
    ("/big", "announces 400000 bytes, over the limit of 200000"),
    ("/big-chunked", "more than 200000 bytes"),
    ("/slow", "no complete answer within 1 s"),
    ("/silent", "no complete answer within 1 s"),
    ("/cut", "closed after 100 of 5000 bytes"),
    ("/text", "not a readable image: no known image format"),
])
def test_bad_urls_are_reported(server, url_limits, route, reason):
    big = bytes(400000)
    server.routes["/big"] = lambda h: send(h, big)
    server.routes["/big-chunked"] = _chunked(big)
    server.routes["/slow"] = _trickle(server, 1000)
    server.routes["/silent"] = _silent(server)
    server.routes["/cut"] = lambda h: send_cut(h, bytes(5000), 100)
    server.routes["/text"] = lambda h: send(h, b"<html>hello</html>", content_type="image/png")
    url = server.url(route)
    start = time.monotonic()
    with pytest.raises(InputError, match=reason) as info:
        decode_bytes(fetch_url(url), url)
    assert info.value.source == url
    assert time.monotonic() - start < 30  # the deadline really bounds a slow server


def test_unreachable_url(url_limits):
    url = closed_port_url("/x.png")
    with pytest.raises(InputError, match="cannot reach it"):
        fetch_url(url)


# -- one bad input among good ones, through the pipeline -------------------------------------

def test_bad_inputs_fail_alone_and_in_place(tmp_path, tiny_model, server, url_limits):
    good_png = FORMATS["png"]()
    jpeg = FORMATS["jpeg"]()
    files = {
        "good.png": good_png,
        "empty.jpg": b"",
        "cut.jpg": jpeg[: len(jpeg) * 2 // 3],
        "cut.png": good_png[: len(good_png) // 2],
        "text.jpg": b"this is not an image at all",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "empty_dir").mkdir()
    server.routes["/ok"] = lambda h: send(h, FORMATS["bmp"]())
    server.routes["/slow"] = _trickle(server, 1000)
    server.routes["/big"] = lambda h: send(h, bytes(400000))
    p = lambda name: str(tmp_path / name)  # noqa: E731
    inputs = [
        (p("good.png"), None),
        (p("empty.jpg"), "empty file"),
        (p("cut.jpg"), "truncated or corrupt JPEG"),
        (p("cut.png"), "truncated or corrupt PNG"),
        (p("text.jpg"), "no known image format"),
        (p("empty_dir"), "no image files"),
        (p("missing.png"), "no such file"),
        (server.url("/ok"), None),
        (closed_port_url("/a.png"), "cannot reach it"),
        (server.url("/nothing.png"), "HTTP 404"),
        (server.url("/big"), "over the limit"),
        (server.url("/slow"), "no complete answer"),
        (RGB[:, :, ::-1].copy(), None),
        (np.zeros((3, 3, 5), np.uint8), "not an image"),
        (good_png, None),
    ]
    with create_pipeline(model_dir=tiny_model, device="cpu") as pipe:
        results = list(pipe.predict([x for x, _ in inputs], batch_size=3))
        alone = {i: next(pipe.predict(x)) for i, (x, why) in enumerate(inputs) if why is None}
    assert len(results) == len(inputs)
    for i, (res, (x, why)) in enumerate(zip(results, inputs)):
        if why is None:
            assert res.ok, (i, dict(res))
            assert res["scores"] == alone[i]["scores"]
            assert res["input_path"] == (x if isinstance(x, str) else None)
        else:
            assert not res.ok, (i, dict(res))
            assert why in res["error"], (i, res["error"])
            if isinstance(x, str):
                assert res["input_path"] == x
            else:
                assert res["input_path"] is None and res["error"].startswith(f"input[{i}]: ")


_UNREADABLE_RUN = """
import json, sys
from mlcls import create_pipeline
model, good, secret = sys.argv[1:4]
with create_pipeline(model_dir=model, device="cpu") as pipe:
    out = [[r.ok, r["input_path"], r.get("error")] for r in pipe.predict([good, secret, good])]
print(json.dumps(out))
"""


def _without_root_file_access() -> None:
    """In the child, before exec: drop the capabilities that let root ignore file modes
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the bounding set, so that the kernel checks
    permissions for the program that runs next, even as root."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_with_file_modes_enforced(args: list[str], timeout: float):
    """Run a Python child for which file modes hold (as root: without the bypass)."""
    extra = {"preexec_fn": _without_root_file_access} if os.geteuid() == 0 else {}
    try:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              timeout=timeout, **extra)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run a child without root's file access here ({exc})")


def test_unreadable_file_is_reported_and_the_rest_run(tiny_model, tmp_path):
    """Permissions mean nothing to root; as root the run happens without the capabilities
    that bypass them."""
    good, secret = tmp_path / "good.png", tmp_path / "secret.png"
    good.write_bytes(FORMATS["png"]())
    secret.write_bytes(FORMATS["png"]())
    secret.chmod(0)
    proc = run_with_file_modes_enforced(["-c", _UNREADABLE_RUN, str(tiny_model), str(good),
                                         str(secret)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [row[0] for row in out] == [True, False, True]
    assert out[1][1] == str(secret) and "Permission denied" in out[1][2]


_WALK_RUN = """
import json, sys
from mlcls.inputs import expand_inputs
items = list(expand_inputs(sys.argv[1]))
print(json.dumps([[type(i).__name__, getattr(i, "input_path", None) or i.source,
                   getattr(i, "reason", None)] for i in items]))
"""


def test_unlistable_subdirectory_is_reported_in_place(tmp_path):
    root = tmp_path / "photos"
    (root / "b_locked").mkdir(parents=True)
    Image.fromarray(RGB).save(root / "a.png")
    Image.fromarray(RGB).save(root / "b_locked" / "hidden.png")
    Image.fromarray(RGB).save(root / "c.png")
    (root / "b_locked").chmod(0)
    try:
        proc = run_with_file_modes_enforced(["-c", _WALK_RUN, str(root)], timeout=120)
    finally:
        (root / "b_locked").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [row[:2] for row in out] == [["Sample", str(root / "a.png")],
                                        ["InputError", str(root / "b_locked")],
                                        ["Sample", str(root / "c.png")]]
    assert "cannot list this directory (Permission denied)" in out[1][2]


@pytest.mark.parametrize("url, reason", [
    ("http://[::1", "not a valid URL"),
    ("http://host:notaport/x.jpg", "not a valid URL"),
    ("https://" + "a" * 300 + ".example/x.jpg", "not a valid URL"),
])
def test_malformed_urls_fail_alone_with_a_clear_reason(tiny_model, url, reason):
    from mlcls import create_pipeline

    good = np.zeros((8, 8, 3), np.uint8)
    with create_pipeline(model_dir=tiny_model, device="cpu") as pipeline:
        first, second = pipeline.predict([url, good])
    assert not first.ok and first["input_path"] == url
    assert reason in first["error"]
    assert second.ok
