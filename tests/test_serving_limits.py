"""Safety limits of the service on a real loopback server: private URL targets, API key,
CORS, a full queue, the request timeout, and a server-side fault."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from test_serving import PATH, assert_error, b64, make_images

from loopback_http import LoopbackServer, send
from mlcls import create_pipeline
from mlcls.errors import InputError
from mlcls.inputs import fetch_url
from mlcls.interfaces import Predictor
from mlcls.serving.runner import BackgroundServer
from mlcls.serving.settings import ServeSettings
from mlcls.serving.urlguard import refusal

KEY = "s3cret-key-for-tests"
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def image() -> bytes:
    return make_images(1, seed=3)[0]


@pytest.fixture(scope="module")
def loopback_image_url(image):
    files = LoopbackServer()
    files.routes["/a.png"] = lambda handler: send(handler, image)
    yield files.url("/a.png")
    files.close()


@pytest.fixture(scope="module")
def strict(tiny_model):
    """Default URL policy, an API key, and one CORS origin."""
    pipeline = create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=tiny_model)
    settings = ServeSettings(port=0, api_key=KEY, cors_origins=[ORIGIN], log_level="warning")
    with BackgroundServer(pipeline, settings) as srv:
        yield srv
    pipeline.close()


def ask(server, body, key: str | None = KEY, **headers) -> requests.Response:
    if key is not None:
        headers["X-API-Key"] = key
    return requests.post(server.url + PATH, json=body, headers=headers, timeout=30)


# -- URL targets -------------------------------------------------------------------------------

@pytest.mark.parametrize("address,kind", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.7", "private"),
    ("172.16.5.4", "private"), ("169.254.169.254", "link-local"), ("::1", "loopback"),
    ("fe80::1", "link-local"), ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"),
    ("fd00::5", "private"), ("224.0.0.1", "multicast"),
    ("100.100.100.200", "not a public"), ("100.64.0.1", "not a public"),
    ("192.0.2.7", "private"), ("198.18.0.1", "private"), ("2002:7f00:1::", "loopback"),
    ("::ffff:100.100.100.200", "not a public"),
])
def test_refused_addresses(address, kind):
    assert kind in refusal(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert refusal(address) is None


def test_guard_refuses_at_connect_time(loopback_image_url):
    with pytest.raises(InputError, match="loopback"):
        fetch_url(loopback_image_url, timeout=5, guard=refusal)
    assert fetch_url(loopback_image_url, timeout=5, guard=None)
    with pytest.raises(InputError, match="not an http"):
        fetch_url("file:///etc/hostname", timeout=5, guard=None)


def test_every_redirect_hop_is_checked():
    """A URL whose first host is allowed but that redirects to a refused one is refused.
    127.0.0.2 stands in for an internal address: only it is refused here."""
    hops = LoopbackServer()
    port = hops.base.rsplit(":", 1)[1]

    def hop(handler, target: str) -> None:
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    hops.routes["/direct"] = lambda handler: send(handler, b"ok")
    hops.routes["/hop"] = lambda h: hop(h, f"http://127.0.0.2:{port}/x")
    hops.routes["/metadata"] = lambda h: hop(h, "http://100.100.100.200/latest/meta-data/")
    hops.routes["/file"] = lambda h: hop(h, "file:///etc/passwd")
    hops.routes["/ftp"] = lambda h: hop(h, "ftp://files.example/x.jpg")

    def guard(address: str):
        return "an internal address" if address == "127.0.0.2" else (
            None if address == "127.0.0.1" else refusal(address))

    base = hops.base
    try:
        assert fetch_url(base + "/direct", timeout=5, guard=guard) == b"ok"
        with pytest.raises(InputError, match="127.0.0.2 is an internal address"):
            fetch_url(base + "/hop", timeout=5, guard=guard)
        # 100.64.0.0/10 (shared address space) is where some clouds answer metadata
        with pytest.raises(InputError, match="100.100.100.200 is not a public address"):
            fetch_url(base + "/metadata", timeout=5, guard=guard)
        # the offline path (no guard) follows http(s) redirects only
        with pytest.raises(InputError, match="only http\\(s\\) redirects"):
            fetch_url(base + "/ftp", timeout=5)
        with pytest.raises(InputError, match="not allowed"):
            fetch_url(base + "/file", timeout=5)
    finally:
        hops.close()


def test_a_hostname_is_checked_on_the_address_it_resolves_to(monkeypatch):
    """The refusal applies to what a name resolves to (the resolver is the seam here: tests
    do not reach a real DNS server)."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "metadata.example":
            return real("100.100.100.200", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(InputError, match="metadata.example resolves to 100.100.100.200, not a "
                                         "public address"):
        fetch_url("http://metadata.example/latest", timeout=5, guard=refusal)


@pytest.mark.parametrize("url,word", [
    (None, "loopback"),
    ("http://10.20.30.40/a.jpg", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://100.100.100.200/latest/meta-data/", "not a public address"),
    ("http://[::1]:9/a.jpg", "loopback"),
    ("http://localhost:9/a.jpg", "loopback"),
])
def test_private_url_targets_refused_by_default(strict, loopback_image_url, url, word):
    body = assert_error(ask(strict, {"image": url or loopback_image_url}), 400, word,
                        "--allow_private_urls")
    assert "cannot reach" in body["errorMsg"]


# -- API key and CORS --------------------------------------------------------------------------

def test_api_key(strict, image):
    good = {"image": b64(image), "visualize": False}
    assert_error(ask(strict, good, key=None), 401, "API key is required")
    assert_error(ask(strict, good, key="wrong"), 401, "not valid")
    assert_error(ask(strict, good, key=KEY + "x"), 401, "not valid")
    assert_error(ask(strict, good, key=None, Authorization="Basic " + KEY), 401)
    assert ask(strict, good).status_code == 200
    assert ask(strict, good, key=None, Authorization=f"Bearer {KEY}").status_code == 200
    assert requests.get(strict.url + "/health", timeout=10).status_code == 200
    assert requests.get(strict.url + "/ready", timeout=10).status_code == 200


def test_cors_only_when_configured(strict, tiny_model, image):
    preflight = requests.options(strict.url + PATH, timeout=10, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    reply = ask(strict, {"image": b64(image), "visualize": False}, Origin="https://evil.example")
    assert "access-control-allow-origin" not in reply.headers

    pipeline = create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=tiny_model)
    try:
        with BackgroundServer(pipeline, ServeSettings(port=0, log_level="warning")) as plain:
            reply = requests.post(plain.url + PATH, json={"image": b64(image)}, timeout=30,
                                  headers={"Origin": ORIGIN})
            assert reply.status_code == 200
            assert "access-control-allow-origin" not in reply.headers
    finally:
        pipeline.close()


# -- overload and faults -----------------------------------------------------------------------

class GatedPredictor(Predictor):
    """The real predictor behind a gate the test opens, and a switch that makes the next
    batch fail as a broken device would."""

    def __init__(self, inner: Predictor):
        self.inner = inner
        self.open = threading.Event()
        self.entered = threading.Event()
        self.fail_next = False

    def run(self, batch):
        self.entered.set()
        self.open.wait(60)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the device stopped answering")
        return self.inner.run(batch)

    def placement(self):
        return self.inner.placement()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def gated(tiny_model):
    pipeline = create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir=tiny_model)
    gate = GatedPredictor(pipeline.predictors[0])
    pipeline.predictors[0] = gate
    settings = ServeSettings(port=0, max_queue=1, max_batch_size=1, max_wait_ms=0,
                             request_timeout=2.0, log_level="warning")
    server = BackgroundServer(pipeline, settings).start()
    try:
        yield server, gate
    finally:
        gate.open.set()
        server.stop()
        pipeline.close()


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_full_queue_gets_503_and_slow_requests_504(gated, image):
    server, gate = gated
    body = {"image": b64(image), "visualize": False}
    replies: dict[str, requests.Response] = {}

    def send(name: str) -> None:
        replies[name] = requests.post(server.url + PATH, json=body, timeout=30)

    first = threading.Thread(target=send, args=("running",))
    first.start()
    assert gate.entered.wait(20)  # the first request's batch is in the predictor
    second = threading.Thread(target=send, args=("queued",))
    second.start()
    batcher = server.app.state.batcher
    _wait_for(lambda: batcher.depth == 1)
    assert_error(requests.get(server.url + "/ready", timeout=10), 503, "queue is full")
    busy = assert_error(requests.post(server.url + PATH, json=body, timeout=30), 503, "busy")
    assert busy["errorMsg"]
    first.join(30)
    second.join(30)
    assert_error(replies["running"], 504, "--request_timeout")
    assert_error(replies["queued"], 504, "--request_timeout")
    gate.open.set()
    _wait_for(lambda: batcher.depth == 0)
    after = requests.post(server.url + PATH, json=body, timeout=30)
    assert after.status_code == 200, after.text
    assert batcher.stats.cancelled >= 1  # the timed-out queued request never ran
    assert requests.get(server.url + "/ready", timeout=10).status_code == 200


def test_device_failure_is_500_and_the_server_recovers(gated, image):
    server, gate = gated
    gate.open.set()
    gate.fail_next = True
    body = {"image": b64(image), "visualize": False}
    failed = assert_error(requests.post(server.url + PATH, json=body, timeout=30), 500,
                          "inference failed", "stopped answering")
    assert failed["logId"]
    ok = requests.post(server.url + PATH, json=body, timeout=30)
    assert ok.status_code == 200, ok.text
