"""The HTTP service against a real uvicorn server on loopback, with the tiny real model."""

from __future__ import annotations

import ast
import base64
import io
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from loopback_http import LoopbackServer, send
from mlcls import create_pipeline
from mlcls.serving.runner import BackgroundServer
from mlcls.serving.settings import ServeSettings
from shared_paths import SEED

PATH = "/multilabel-image-classification"
MAX_PIXELS = 1_000_000
MAX_BODY = 1_000_000


def encode(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_images(count: int, seed: int = 7) -> list[bytes]:
    """Images that differ in colour and texture, so the model scores them differently."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        h, w = int(rng.integers(24, 90)), int(rng.integers(24, 90))
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        arr[..., i % 3] = (i * 37) % 256
        out.append(encode(arr))
    return out


def categories_of(result) -> list[dict]:
    return [{"id": i, "name": n, "score": s} for i, n, s in
            zip(result["class_ids"], result["label_names"], result["scores"])]


def assert_same_categories(got: list[dict], want: list[dict]) -> None:
    assert [c["id"] for c in got] == [c["id"] for c in want]
    assert [c["name"] for c in got] == [c["name"] for c in want]
    np.testing.assert_allclose([c["score"] for c in got], [c["score"] for c in want],
                               atol=2e-5)


def assert_error(resp: requests.Response, status: int, *words: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"logId", "errorCode", "errorMsg"}, body
    assert body["errorCode"] == status
    assert body["logId"]
    for word in words:
        assert word.lower() in body["errorMsg"].lower(), body["errorMsg"]
    return body


# -- a loopback server for image URLs ---------------------------------------------------------

@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return make_images(12)


@pytest.fixture(scope="module")
def file_server(images):
    files = LoopbackServer()
    for i, data in enumerate(images):
        files.routes[f"/img/{i}.png"] = lambda handler, data=data: send(handler, data)
    files.routes["/text"] = lambda handler: send(handler, b"this is not an image")
    files.routes["/big"] = lambda handler: send(handler, b"\0" * 300_000)

    def slow(handler) -> None:
        time.sleep(3)
        send(handler, images[0])

    files.routes["/slow"] = slow

    def redirect(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "/img/0.png")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    files.routes["/redirect"] = redirect
    yield files.base
    files.close()


@pytest.fixture(scope="module")
def offline(tiny_model):
    pipeline = create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=tiny_model)
    yield pipeline
    pipeline.close()


@pytest.fixture(scope="module")
def server(tiny_model):
    """The service with test-sized limits; loopback URLs allowed (the file server is there)."""
    pipeline = create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=tiny_model)
    settings = ServeSettings(port=0, allow_private_urls=True, max_pixels=MAX_PIXELS,
                             max_body_bytes=MAX_BODY, url_timeout=1.0, url_max_bytes=200_000,
                             max_wait_ms=20, log_level="warning")
    with BackgroundServer(pipeline, settings) as srv:
        yield srv
    pipeline.close()


def post(server, body, **kwargs) -> requests.Response:
    return requests.post(server.url + PATH, json=body, timeout=30, **kwargs)


# -- the contract -----------------------------------------------------------------------------

def test_success_response_is_paddlex_schema(server, offline, images):
    resp = post(server, {"image": b64(images[0]), "threshold": 0.2})
    assert resp.status_code == 200
    body = resp.json()
    assert body["errorCode"] == 0 and body["errorMsg"] == "Success" and body["logId"]
    result = body["result"]
    assert set(result) == {"categories", "image", "device"}
    assert result["device"] == "cpu"
    want = categories_of(next(offline.predict(images[0], threshold=0.2)))
    assert want, "the test image should keep at least one label at threshold 0.2"
    assert_same_categories(result["categories"], want)
    scores = [c["score"] for c in result["categories"]]
    assert scores == sorted(scores, reverse=True)
    picture = Image.open(io.BytesIO(base64.b64decode(result["image"])))
    assert picture.format == "JPEG"
    source = Image.open(io.BytesIO(images[0]))
    assert picture.width > source.width  # the legend panel sits beside the image


def test_top_k_visualize_and_inner_threshold(server, offline, images):
    full = post(server, {"image": b64(images[1]), "inferenceParams": {"threshold": 0.0}})
    top = post(server, {"image": b64(images[1]), "visualize": False,
                        "inferenceParams": {"topK": 2, "threshold": 0.0}})
    assert full.status_code == top.status_code == 200
    everything = full.json()["result"]["categories"]
    assert len(everything) == 5  # threshold 0 keeps every class of the tiny model
    assert top.json()["result"]["categories"] == everything[:2]
    assert top.json()["result"]["image"] is None
    default = post(server, {"image": b64(images[1]), "visualize": False})
    want = categories_of(next(offline.predict(images[1])))  # the model's own threshold
    assert_same_categories(default.json()["result"]["categories"], want)


def test_data_uri_and_url_safe_base64_give_the_same_answer(server, images):
    plain = post(server, {"image": b64(images[2]), "visualize": False}).json()["result"]
    uri = post(server, {"image": "data:image/png;base64," + b64(images[2]),
                        "visualize": False}).json()["result"]
    raw = base64.urlsafe_b64encode(images[2]).decode().rstrip("=")
    wrapped = "\n".join(raw[i:i + 76] for i in range(0, len(raw), 76))
    urlsafe = post(server, {"image": wrapped, "visualize": False}).json()["result"]
    assert plain == uri == urlsafe


def test_image_url(server, file_server, images):
    by_url = post(server, {"image": f"{file_server}/img/3.png", "visualize": False})
    by_data = post(server, {"image": b64(images[3]), "visualize": False})
    assert by_url.status_code == 200, by_url.text
    assert by_url.json()["result"] == by_data.json()["result"]
    redirected = post(server, {"image": f"{file_server}/redirect", "visualize": False})
    assert redirected.status_code == 200, redirected.text


def test_concurrent_clients_each_get_their_own_answer(server, offline, images):
    """Requests that are batched together (some with a threshold of their own) still each
    get exactly the categories of their own image."""
    thresholds = [None if i % 2 else 0.0 for i in range(len(images))]
    want = []
    for data, thr in zip(images, thresholds):
        want.append(categories_of(next(offline.predict(data, threshold=thr))))
    # Mixed-up answers would be caught: the images' full score lists all differ.
    full = [tuple(c["score"] for c in sorted(w, key=lambda c: c["id"]))
            for w, t in zip(want, thresholds) if t == 0.0]
    assert len(set(full)) == len(full)
    before = server.app.state.batcher.stats.batches

    def ask(i: int) -> list[dict]:
        body = {"image": b64(images[i]), "visualize": i % 4 == 0}
        if thresholds[i] is not None:
            body["threshold"] = thresholds[i]
        resp = post(server, body)
        assert resp.status_code == 200, resp.text
        return resp.json()["result"]["categories"]

    for _ in range(2):
        with ThreadPoolExecutor(len(images)) as pool:
            got = list(pool.map(ask, range(len(images))))
        for g, w in zip(got, want):
            assert_same_categories(g, w)
    assert server.app.state.batcher.stats.batches > before


def test_seed_python_client_example(seed_client, tiny_model, images, tmp_path, offline):
    """The seed's Python example, run unchanged but for its three constants, against
    ``mlcls --serve`` started from the command line."""
    (tmp_path / "demo.jpg").write_bytes(encode(np.asarray(Image.open(io.BytesIO(images[4]))),
                                               "JPEG"))
    out = seed_client(tmp_path)
    assert "Output image saved at" in out.stdout
    printed = out.stdout.strip().splitlines()[-1]
    got = ast.literal_eval(printed)
    want = categories_of(next(offline.predict(str(tmp_path / "demo.jpg"))))
    assert_same_categories(got, want)
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"


# -- errors: every bad input gets its 4xx, and the server answers after --------------------

def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims a huge size: refused before any pixel is decoded."""
    data = bytearray(encode(np.zeros((4, 4, 3), dtype=np.uint8)))
    ihdr = 8 + 8  # signature, then IHDR's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_BODIES = {
    "not base64": ({"image": "this is @@ not base64!"}, 400, "base64"),
    "impossible base64 length": ({"image": "abcde"}, 400, "base64"),
    "base64 of text": ({"image": b64(b"hello, I am text")}, 400, "not a readable image"),
    "empty image": ({"image": ""}, 400, "empty"),
    "data uri without base64": ({"image": "data:image/png,abc"}, 400, "base64"),
    "truncated png": ({"image": b64(encode(np.zeros((60, 60, 3), np.uint8))[:60])}, 400,
                      "image"),
    "too many pixels": ({"image": b64(encode(np.zeros((1001, 1000, 3), np.uint8)))}, 413,
                        "pixels"),
    "pixel bomb header": ({"image": b64(_png_claiming(60000, 60000))}, 413, "pixels"),
    "too elongated": ({"image": b64(encode(np.zeros((2, 400, 3), np.uint8)))}, 413,
                      "aspect ratio"),
    "ftp url": ({"image": "ftp://example.invalid/a.jpg"}, 400, "http"),
    "missing image": ({"visualize": False}, 422, "image"),
    "image not a string": ({"image": 12}, 422, "image"),
    "topK zero": ({"image": "x", "inferenceParams": {"topK": 0}}, 422, "topK"),
    "topK not a number": ({"image": "x", "inferenceParams": {"topK": "many"}}, 422, "topK"),
    "threshold out of range": ({"image": b64(b"x"), "threshold": 1.5}, 400, "threshold"),
    "threshold list of wrong length": ({"image": b64(b"x"), "threshold": [0.5, 0.5]}, 400,
                                       "threshold"),
    "threshold bad class": ({"image": b64(b"x"), "threshold": {"9": 0.5}}, 400, "class"),
    "two different thresholds": ({"image": b64(b"x"), "threshold": 0.3,
                                  "inferenceParams": {"threshold": 0.4}}, 400, "threshold"),
    "threshold not a number": ({"image": b64(b"x"), "threshold": "high"}, 422, "threshold"),
    "threshold true": ({"image": b64(b"x"), "threshold": True}, 422, "true/false"),
    "threshold list with false": ({"image": b64(b"x"), "inferenceParams": {
        "threshold": [0.5, False, 0.5, 0.5, 0.5]}}, 422, "true/false"),
    "topK true": ({"image": b64(b"x"), "inferenceParams": {"topK": True}}, 422, "topK"),
    "visualize not a bool": ({"image": b64(b"x"), "visualize": "sometimes"}, 422,
                             "visualize"),
    "body is a list": ([1, 2, 3], 422, "object"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_gets_its_4xx(server, name):
    body, status, word = BAD_BODIES[name]
    assert_error(post(server, body), status, word)


def test_bad_urls_get_400(server, file_server):
    closed = _free_port()
    cases = {
        f"{file_server}/missing.png": "404",
        f"{file_server}/text": "not a readable image",
        f"{file_server}/big": "bytes",
        f"{file_server}/slow": "1 s",
        f"http://127.0.0.1:{closed}/a.png": "cannot reach",
        "http://[::1/a.png": "not a valid url",
        "http://" + "a" * 70 + ".example/a.png": "not a valid url",
        "http://exa mple.com/a.png": "control characters",
    }
    for url, word in cases.items():
        body = assert_error(post(server, {"image": url}), 400, word)
        assert url[:60] in body["errorMsg"]


@pytest.mark.parametrize("payload,content_type,word", [
    (b"{not json", "application/json", "json"),
    (b"[" * 100_000, "application/json", ""),
    (b"\xff\xfe\x00garbage", "application/json", ""),
    (b"image=abc", "application/x-www-form-urlencoded", "content-type"),
    (b"{\"image\": \"abc\"}", "text/plain", "json"),
])
def test_unparseable_bodies_get_4xx(server, payload, content_type, word):
    resp = requests.post(server.url + PATH, data=payload, timeout=30,
                         headers={"Content-Type": content_type})
    assert 400 <= resp.status_code < 500
    assert_error(resp, resp.status_code, word)


def test_body_too_large(server):
    big = {"image": "A" * (MAX_BODY + 10)}
    assert_error(post(server, big), 413, "body", str(MAX_BODY))

    def chunks():  # no Content-Length: the limit applies while reading
        yield b'{"image": "'
        for _ in range(MAX_BODY // 10_000 + 2):
            yield b"A" * 10_000
        yield b'"}'

    resp = requests.post(server.url + PATH, data=chunks(), timeout=30,
                         headers={"Content-Type": "application/json"})
    assert_error(resp, 413, "body")


def test_framework_errors_use_the_error_schema(server):
    assert_error(requests.get(server.url + PATH, timeout=10), 405, "method")
    assert_error(requests.get(server.url + "/nothing-here", timeout=10), 404, "/nothing-here")
    assert_error(requests.post(server.url + "/health", json={}, timeout=10), 405)


def test_server_still_answers_after_bad_input(server, images):
    test_bad_body_gets_its_4xx(server, "pixel bomb header")
    resp = post(server, {"image": b64(images[5])})
    assert resp.status_code == 200
    health = requests.get(server.url + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["errorCode"] == 0
    ready = requests.get(server.url + "/ready", timeout=10).json()
    assert ready["errorCode"] == 0 and ready["result"]["device"] == "cpu"


def test_openapi_docs(server):
    assert requests.get(server.url + "/docs", timeout=10).status_code == 200
    schema = requests.get(server.url + "/openapi.json", timeout=10).json()
    operation = schema["paths"][PATH]["post"]
    assert {"200", "400", "413", "422", "503"} <= set(operation["responses"])


# -- the CLI server (shared by the seed example) ----------------------------------------------



def seed_python_example() -> str:
    if not SEED.is_file():
        pytest.skip(f"the seed document is not at {SEED}")
    text = SEED.read_text(encoding="utf-8")
    start = text.index("```python\nimport base64\nimport requests")
    return text[start + len("```python\n"):text.index("```", start + 10)]


@pytest.fixture(scope="module")
def cli_server(tiny_model, tmp_path_factory):
    """``mlcls --serve`` in a child process, on a port it picks itself."""
    import subprocess
    import sys

    log = tmp_path_factory.mktemp("cli-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlcls.cli", "--serve", "--pipeline",
             "multi_label_image_classification", "--model_dir", str(tiny_model),
             "--device", "cpu", "--port", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            for line in log.read_text(errors="replace").splitlines():
                if "serving on http://" in line:
                    url = line.split("serving on ")[1].split()[0]
            time.sleep(0.1)
        while True:
            try:
                if requests.get(url + "/ready", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def seed_client(cli_server):
    import subprocess
    import sys

    code = seed_python_example()
    for constant in ('"http://localhost:8080/multilabel-image-classification"',
                     '"./demo.jpg"', '"./out.jpg"'):
        assert constant in code
    code = code.replace('"http://localhost:8080', f'"{cli_server}')

    def run(cwd: Path):
        out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out

    return run


def _run_cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mlcls.cli", "--serve", *args],
                          capture_output=True, text=True, timeout=180)


def test_cli_serve_usage_errors(tiny_model):
    out = _run_cli("--model_dir", str(tiny_model))
    assert out.returncode == 2 and "--serve needs --pipeline" in out.stderr
    out = _run_cli("--pipeline", "multi_label_image_classification", "--model_dir",
                   str(tiny_model), "--max_batch_size", "0", "--max_wait_ms", "-1")
    assert out.returncode == 2
    assert "max_batch_size=0" in out.stderr and "max_wait_ms=-1" in out.stderr


def test_cli_serve_on_a_busy_port(tiny_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = _run_cli("--pipeline", "multi_label_image_classification", "--model_dir",
                       str(tiny_model), "--device", "cpu", "--port", str(port))
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
