"""``mlcls --serve`` as a user runs it, in its own process: the pipeline YAML's ``Serving:``
section, what it prints, ``/metrics``, 4xx answers in the log with their logId, and a SIGTERM
that drains and exits 0."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
from test_serving import PATH, make_images


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    config = tmp_path_factory.mktemp("serve") / "pipeline.yaml"
    config.write_text(
        "pipeline_name: multi_label_image_classification\n"
        "SubModules:\n  ImageMultiLabelClassification:\n"
        f"    model_dir: {tiny_model}\n    threshold: 0.0\n"
        "Serving:\n  visualize: false\n  extra:\n    max_num_input_imgs: 2\n"
        "  max_batch_size: 3\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlcls.cli", "--serve", "--pipeline", str(config), "--device",
         "cpu", "--port", "0", "--max_queue", "7", "--log_level", "warning"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"serving on (http://\S+)", line)
        if found:
            url = found.group(1)
    assert url, "".join(lines)
    lines.append(proc.stderr.readline())  # the line about other hosts
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield proc, url, lines
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_it_says_where_it_listens_and_how_to_accept_other_hosts(served):
    _, url, lines = served
    text = "".join(lines)
    assert f"mlcls: serving on {url} on cpu" in text
    assert "--host 0.0.0.0" in text


def test_the_yaml_serving_section_and_flags_both_apply(served):
    _, url, _ = served
    image = base64.b64encode(make_images(1, seed=5)[0]).decode()
    body = requests.post(url + PATH, json={"image": image}, timeout=30).json()
    assert body["errorCode"] == 0 and body["result"]["image"] is None  # visualize: false
    drawn = requests.post(url + PATH, json={"image": image, "visualize": True},
                          timeout=30).json()
    assert drawn["result"]["image"]  # the request still decides
    ready = requests.get(url + "/ready", timeout=5).json()["result"]
    assert ready["queueCapacity"] == 7  # the flag


def test_metrics_in_the_prometheus_format(served):
    _, url, _ = served
    image = base64.b64encode(make_images(1, seed=6)[0]).decode()
    requests.post(url + PATH, json={"image": image}, timeout=30)
    requests.post(url + PATH, json={"image": "bm90IGFuIGltYWdl"}, timeout=30)
    requests.get(url + "/no-such-thing-" + "x" * 20, timeout=5)
    resp = requests.get(url + "/metrics", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert re.search(r'mlcls_http_requests_total\{code="200",path="/multilabel-image-'
                     r'classification"\} [1-9]', text), text
    assert re.search(r'mlcls_http_errors_total\{code="400"\} [1-9]', text)
    assert 'path="other"' in text and "no-such-thing" not in text  # bounded label values
    assert re.search(r"mlcls_batch_size_count [1-9]", text)
    assert "mlcls_queue_depth 0.0" in text
    assert "mlcls_http_request_duration_seconds_bucket" in text


def test_sigterm_drains_and_exits_0(served):
    proc, url, _ = served
    requests.post(url + PATH, json={"image": "!!"}, timeout=30)  # a 4xx to be logged
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert re.search(r"POST /multilabel-image-classification -> 400: .* \[logId [0-9a-f-]{36}\]",
                     err), err
