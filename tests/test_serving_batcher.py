"""The dynamic batcher on the real tiny model, the base64 reader, serving across several
device ids (the example sim plugin), and keeping FastAPI out of ``import mlcls``."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from test_serving import PATH, assert_same_categories, b64, categories_of, make_images

from mlcls import create_pipeline
from mlcls.serving.batcher import DynamicBatcher, QueueFullError, ShuttingDownError
from mlcls.serving.errors import ServingError
from mlcls.serving.images import decode_base64

REPO = Path(__file__).resolve().parents[1]
SIM_SRC = REPO / "plugins" / "mlcls-simdevice" / "src"


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    # one stream: these tests count the batches of one lane
    pipe = create_pipeline("multi_label_image_classification", device="cpu",
                           model_dir=tiny_model, device_options={"streams": 1})
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return make_images(7, seed=11)


def test_queued_images_run_as_one_batch_in_order(pipeline, images):
    batcher = DynamicBatcher(pipeline, max_batch_size=16, max_wait=0.05, max_queue=16)
    futures = [batcher.submit(rgb(data)) for data in images]  # queued before the worker runs
    batcher.start()
    try:
        got = [f.result(30) for f in futures]
    finally:
        batcher.stop()
    assert batcher.stats.batches == 1 and batcher.stats.largest == len(images)
    for result, data in zip(got, images):
        assert_same_categories(categories_of(result), categories_of(next(pipeline.predict(data))))


def test_batches_are_cut_at_max_batch_size(pipeline, images):
    batcher = DynamicBatcher(pipeline, max_batch_size=3, max_wait=0.05, max_queue=16)
    futures = [batcher.submit(rgb(data)) for data in images]
    batcher.start()
    try:
        for f in futures:
            f.result(30)
    finally:
        batcher.stop()
    assert batcher.stats.largest == 3
    assert batcher.stats.batches == 3  # 3 + 3 + 1


def test_thresholds_are_kept_apart(pipeline, images):
    batcher = DynamicBatcher(pipeline, max_batch_size=16, max_wait=0.05, max_queue=16)
    thresholds = [None, 0.0, None, 0.0, {"default": 0.3, "1": 0.9}, None, 0.0]
    futures = [batcher.submit(rgb(d), t) for d, t in zip(images, thresholds)]
    batcher.start()
    try:
        got = [f.result(30) for f in futures]
    finally:
        batcher.stop()
    assert batcher.stats.batches == 3  # one pipeline call per distinct threshold
    for result, data, thr in zip(got, images, thresholds):
        want = next(pipeline.predict(data, threshold=thr))
        assert_same_categories(categories_of(result), categories_of(want))


def test_cancelled_requests_are_skipped(pipeline, images):
    batcher = DynamicBatcher(pipeline, max_batch_size=8, max_wait=0.0, max_queue=8)
    futures = [batcher.submit(rgb(d)) for d in images[:3]]
    assert futures[1].cancel()
    batcher.start()
    try:
        assert futures[0].result(30).ok and futures[2].result(30).ok
    finally:
        batcher.stop()
    assert batcher.stats.cancelled == 1 and batcher.stats.images == 2


def test_queue_bound_and_shutdown(pipeline, images):
    batcher = DynamicBatcher(pipeline, max_batch_size=2, max_wait=0.0, max_queue=2)
    waiting = [batcher.submit(rgb(d)) for d in images[:2]]
    with pytest.raises(QueueFullError, match="2 images"):
        batcher.submit(rgb(images[2]))
    batcher.stop()
    for future in waiting:
        with pytest.raises(ShuttingDownError):
            future.result(5)
    with pytest.raises(ShuttingDownError):
        batcher.submit(rgb(images[0]))


# -- base64 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["plain", "unpadded", "urlsafe", "wrapped", "data-uri"])
def test_base64_forms(form):
    data = bytes(range(256)) * 3 + b"\xfb\xff"
    text = {
        "plain": base64.b64encode(data).decode(),
        "unpadded": base64.b64encode(data).decode().rstrip("="),
        "urlsafe": base64.urlsafe_b64encode(data).decode(),
        "wrapped": base64.encodebytes(data).decode(),
        "data-uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode(),
    }[form]
    assert decode_base64(text) == data


@pytest.mark.parametrize("text", ["", "   ", "a", "ab$c", "data:image/png,xyz", "data:abc"])
def test_base64_rejects(text):
    with pytest.raises(ServingError) as info:
        decode_base64(text)
    assert info.value.status == 400 and info.value.message.startswith("image:")


# -- several device ids ------------------------------------------------------------------------

@pytest.fixture
def sim_plugin(monkeypatch, tmp_path):
    """The example device plugin, registered in this process (its ids run on the CPU)."""
    if not SIM_SRC.is_dir():
        pytest.skip("the example sim device plugin is not in this checkout")
    from mlcls import plugins

    trace = tmp_path / "trace.txt"
    monkeypatch.setenv("MLCLS_SIM_TRACE", str(trace))
    monkeypatch.setenv("MLCLS_SIM_COUNT", "2")
    monkeypatch.syspath_prepend(str(SIM_SRC))
    plugins.reset()
    record = plugins.register_module("mlcls_simdevice.backend", name="sim")
    assert not getattr(record, "error", None), record
    yield trace
    plugins.reset()


def test_every_device_id_serves(sim_plugin, tiny_model, images):
    from mlcls.serving.runner import BackgroundServer
    from mlcls.serving.settings import ServeSettings

    pipe = create_pipeline("multi_label_image_classification", device="sim:0,1",
                           model_dir=tiny_model)
    offline = create_pipeline("multi_label_image_classification", device="cpu",
                              model_dir=tiny_model)
    try:
        assert len(pipe.predictors) == 2
        # A long wait lets the first batch fill (2 per id), so both ids get a part of it.
        settings = ServeSettings(port=0, max_batch_size=2, max_wait_ms=300, log_level="warning")
        with BackgroundServer(pipe, settings) as server:
            def ask(i: int) -> dict:
                resp = requests.post(server.url + PATH, timeout=30, json={
                    "image": b64(images[i % len(images)]), "visualize": False})
                assert resp.status_code == 200, resp.text
                return resp.json()["result"]

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(ask, range(16)))
    finally:
        pipe.close()
    for i, result in enumerate(results):
        want = categories_of(next(offline.predict(images[i % len(images)])))
        assert_same_categories(result["categories"], want)
    offline.close()
    devices = {r["device"] for r in results}
    runs = sim_plugin.read_text().split()
    assert devices == {"sim:0", "sim:1"}, devices
    assert {"sim:0", "sim:1"} <= set(runs[0::2])


def test_import_mlcls_does_not_load_fastapi():
    code = ("import sys, mlcls, mlcls.cli, mlcls.serving; mlcls.cli.build_parser(); "
            "bad = [m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("n, lanes, parts", [
    (7, 1, [(0, 4, 4), (4, 2, 2), (6, 1, 1)]),
    (8, 1, [(0, 8, 8)]),
    (5, 1, [(0, 4, 4), (4, 1, 1)]),
    (1, 1, [(0, 1, 1)]),
    (7, 2, [(0, 7, 4)]),
])
def test_batches_run_in_few_shapes(n, lanes, parts):
    """One predictor sees batch sizes 1, 2, 4 and 8 only (bounded engine caches); several
    predictors share one call, split evenly."""

    class Pipe:
        predictors = [object()] * lanes

    assert DynamicBatcher(Pipe())._parts(n) == parts
