"""Official model names: cache lookup, download from a loopback server, archive checks, atomic
publication; and the packaged demo model's name."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from loopback_http import LoopbackServer, closed_port_url, send, send_cut
from mlcls import create_pipeline, model_hub
from mlcls.errors import ModelError

NAME = "PP-LCNet_x1_0_ML"
ROUTE = f"/models/{NAME}_infer.tar"


def make_tar(files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return buf.getvalue()


def model_files(model_dir: Path, prefix: str = f"{NAME}_infer/") -> dict[str, bytes]:
    return {prefix + p.name: p.read_bytes() for p in sorted(model_dir.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def good_tar(tiny_model) -> bytes:
    return make_tar(model_files(tiny_model))


@pytest.fixture
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


@pytest.fixture
def hub_env(tmp_path, monkeypatch, server):
    """An empty cache and the base URL pointing at the loopback server."""
    monkeypatch.setenv("MLCLS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLCLS_MODEL_BASE_URL", server.url("/models/"))
    return tmp_path / "home" / "models"


def cache_listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_publishes_a_complete_model_and_then_uses_the_cache(
        server, hub_env, tiny_model, good_tar):
    server.routes[ROUTE] = lambda h: send(h, good_tar)
    path = model_hub.ensure_model(NAME)
    assert path == hub_env / NAME
    assert cache_listing(hub_env) == [NAME]  # no scratch left beside it
    for src in tiny_model.iterdir():
        assert (path / src.name).read_bytes() == src.read_bytes()
    assert model_hub.ensure_model(NAME) == path
    assert server.requests == [ROUTE]  # the second call did not download


def test_archive_with_files_at_the_top_level_works(server, hub_env, tiny_model):
    server.routes[ROUTE] = lambda h: send(h, make_tar(model_files(tiny_model, prefix="")))
    path = model_hub.ensure_model(NAME)
    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in tiny_model.iterdir())


def test_create_pipeline_by_name_downloads_once_then_runs_offline(
        server, hub_env, tiny_model, good_tar, monkeypatch, tmp_path):
    server.routes[ROUTE] = lambda h: send(h, good_tar)
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 50, 3), np.uint8)).save(image)
    with create_pipeline(model=NAME, device="cpu") as pipe:
        first = next(pipe.predict(str(image)))
    assert server.requests == [ROUTE]
    monkeypatch.setenv("MLCLS_MODEL_BASE_URL", closed_port_url("/models"))
    with create_pipeline(model=NAME, device="cpu") as pipe:
        again = next(pipe.predict(str(image)))
    with create_pipeline(model_dir=tiny_model, device="cpu") as pipe:
        direct = next(pipe.predict(str(image)))
    assert server.requests == [ROUTE]
    assert again["scores"] == first["scores"] == direct["scores"]
    assert again["class_ids"] == direct["class_ids"]


def _expect_failure(match: str, hub_env: Path) -> ModelError:
    with pytest.raises(ModelError, match=match) as info:
        model_hub.ensure_model(NAME)
    assert cache_listing(hub_env) == []  # nothing published, no scratch left
    return info.value


def test_truncated_body_is_rejected_and_leaves_nothing(server, hub_env, good_tar):
    server.routes[ROUTE] = lambda h: send_cut(h, good_tar, len(good_tar) // 2)
    err = _expect_failure("incomplete", hub_env)
    assert f"{len(good_tar) // 2} of {len(good_tar)} bytes" in str(err)


def test_corrupt_tar_is_rejected(server, hub_env, good_tar):
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8))
    server.routes[ROUTE] = lambda h: send(h, garbage)
    _expect_failure("not a complete tar archive", hub_env)


def test_tar_cut_inside_a_member_is_rejected(server, hub_env, good_tar):
    # The HTTP body is whole (Content-Length matches) but the archive itself is cut short.
    with tarfile.open(fileobj=io.BytesIO(good_tar)) as tar:
        params = tar.getmember(f"{NAME}_infer/inference.pdiparams")
    cut = good_tar[: params.offset_data + params.size // 2]
    server.routes[ROUTE] = lambda h: send(h, cut)
    _expect_failure(r"not a complete tar archive|truncated|does not hold a model", hub_env)


@pytest.mark.parametrize("drop", ["inference.pdiparams", "inference.yml", "inference.json"])
def test_archive_missing_a_model_file_is_rejected(server, hub_env, tiny_model, drop):
    files = {k: v for k, v in model_files(tiny_model).items() if not k.endswith("/" + drop)}
    server.routes[ROUTE] = lambda h: send(h, make_tar(files))
    err = _expect_failure("does not hold a model", hub_env)
    assert "found" in str(err)


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize("extra_name, extra_link", [
    ("../escaped.txt", None),
    (f"{NAME}_infer/../../escaped.txt", None),
    ("/tmp/mlcls-escaped.txt", None),
    (f"{NAME}_infer/evil", ("../../escaped.txt", tarfile.SYMTYPE)),
    (f"{NAME}_infer/hard", ("/etc/passwd", tarfile.LNKTYPE)),
])
def test_unsafe_members_are_refused(server, hub_env, tiny_model, tmp_path, extra_name,
                                    extra_link):
    files = model_files(tiny_model)
    extra = []
    if extra_link:
        extra.append(_link(extra_name, *extra_link))
    else:
        files[extra_name] = b"should never be written"
    server.routes[ROUTE] = lambda h: send(h, make_tar(files, extra))
    _expect_failure("refusing it", hub_env)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (hub_env.parent / "escaped.txt").exists()
    assert not Path("/tmp/mlcls-escaped.txt").exists()


def test_http_404_says_how_to_pass_a_model_directory(server, hub_env):
    err = _expect_failure("HTTP 404", hub_env)
    assert "--model_dir" in str(err) and ROUTE in str(err)


def test_unreachable_host_says_how_to_pass_a_model_directory(hub_env, monkeypatch):
    monkeypatch.setenv("MLCLS_MODEL_BASE_URL", closed_port_url("/models"))
    err = _expect_failure("cannot reach the server", hub_env)
    assert "--model_dir" in str(err) and "create_pipeline" in str(err)


def test_model_that_does_not_load_is_not_cached(server, hub_env, tiny_model):
    files = model_files(tiny_model)
    files[f"{NAME}_infer/inference.yml"] = b"PreProcess: [unclosed"
    server.routes[ROUTE] = lambda h: send(h, make_tar(files))
    _expect_failure("cannot be loaded", hub_env)


def test_incomplete_cache_entry_is_reported_not_used(hub_env):
    (hub_env / NAME).mkdir(parents=True)
    (hub_env / NAME / "inference.yml").write_text("x: 1\n")
    with pytest.raises(ModelError, match="incomplete.*inference.pdiparams"):
        model_hub.ensure_model(NAME)


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("MLCLS_HOME", str(blocker))
    with pytest.raises(ModelError, match="cannot write the model cache.*MLCLS_HOME"):
        model_hub.ensure_model(NAME)


def test_scratch_of_killed_downloads_is_swept_after_a_day(server, hub_env, good_tar):
    server.routes[ROUTE] = lambda h: send(h, good_tar)
    old, fresh = hub_env / f".{NAME}.old.partial", hub_env / f".{NAME}.fresh.partial"
    for scratch in (old, fresh):
        scratch.mkdir(parents=True)
        (scratch / "part.tar").write_bytes(b"x")
    day_ago = time.time() - 2 * 24 * 3600
    for p in (old, old / "part.tar"):
        os.utime(p, (day_ago, day_ago))
    model_hub.ensure_model(NAME)
    assert cache_listing(hub_env) == sorted([fresh.name, NAME])


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'NoSuchNet'") as info:
        model_hub.ensure_model("NoSuchNet")
    for name in (model_hub.DEMO_MODEL, *model_hub.OFFICIAL_MODELS):
        assert name in str(info.value)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_not_blamed_on_the_network():
    with open("/dev/full", "wb", buffering=0) as out, \
            pytest.raises(ModelError, match="cannot save the download.*No space left"):
        model_hub._sink(out, NAME)(b"x" * 4096)


def test_a_near_miss_gets_a_suggestion():
    with pytest.raises(ModelError, match="did you mean 'PP-HGNetV2-B4_ML'"):
        model_hub.ensure_model("PP-HGNetV2_B4_ML")
    with pytest.raises(ModelError, match="did you mean 'ResNet50_ML'"):
        model_hub.ensure_model("resnet50_ml")


def test_default_base_url_and_override(monkeypatch):
    monkeypatch.delenv("MLCLS_MODEL_BASE_URL", raising=False)
    url = model_hub.model_url("PP-HGNetV2-B4_ML")
    assert url.startswith("https://") and url.endswith("/PP-HGNetV2-B4_ML_infer.tar")
    monkeypatch.setenv("MLCLS_MODEL_BASE_URL", "http://mirror.example/m/")
    assert model_hub.model_url("ResNet50_ML") == "http://mirror.example/m/ResNet50_ML_infer.tar"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(server, hub_env, good_tar, monkeypatch, capsys):
    server.routes[ROUTE] = lambda h: send(h, good_tar)
    model_hub.ensure_model(NAME)
    assert capsys.readouterr().err == ""
    shutil.rmtree(hub_env / NAME)
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    model_hub.ensure_model(NAME)
    assert f"downloading {NAME}" in tty.getvalue() and "(100%)" in tty.getvalue()


# -- several processes, interruptions ---------------------------------------------------------

_CHILD = ("import sys; from mlcls.model_hub import ensure_model; "
          "print(ensure_model(sys.argv[1]), flush=True)")


def _stalling_route(body: bytes, started: threading.Semaphore, release: threading.Event):
    """Send half the archive, then wait for the test before sending the rest."""
    def route(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[: len(body) // 2])
        h.wfile.flush()
        started.release()
        if release.wait(30):
            h.wfile.write(body[len(body) // 2:])
            h.wfile.flush()
    return route


def _child_env(home: Path, base: str) -> dict[str, str]:
    return {**os.environ, "MLCLS_HOME": str(home), "MLCLS_MODEL_BASE_URL": base}


def test_two_processes_downloading_at_once_never_show_half_a_model(
        server, hub_env, tiny_model, tmp_path):
    body = make_tar(model_files(tiny_model))
    started, release = threading.Semaphore(0), threading.Event()
    server.routes[ROUTE] = _stalling_route(body, started, release)
    env = _child_env(tmp_path / "home", server.url("/models"))
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, NAME], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for _ in procs:
            assert started.acquire(timeout=60), "a download did not start"
        # Both are mid-download: the cache shows only hidden scratch folders, never the model.
        assert not (hub_env / NAME).exists()
        assert all(name.startswith(".") for name in cache_listing(hub_env))
    finally:
        release.set()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {out.strip() for out, _ in outs} == {str(hub_env / NAME)}
    assert cache_listing(hub_env) == [NAME]
    assert model_hub._missing_files(hub_env / NAME) == []


def test_interrupted_download_leaves_nothing_behind(server, hub_env, tiny_model, tmp_path):
    body = make_tar(model_files(tiny_model))
    started, release = threading.Semaphore(0), threading.Event()
    server.routes[ROUTE] = _stalling_route(body, started, release)
    # Ctrl-C as at a terminal: a child of a background job (CI started with `&`) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    interruptible = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)"
                     "; " + _CHILD)
    proc = subprocess.Popen([sys.executable, "-c", interruptible, NAME],
                            env=_child_env(tmp_path / "home", server.url("/models")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert started.acquire(timeout=60)
        time.sleep(0.2)  # let the child write what it has received
        assert any(name.startswith(".") for name in cache_listing(hub_env))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        release.set()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    assert cache_listing(hub_env) == []


# -- the packaged demo model ------------------------------------------------------------------

def test_demo_model_location_is_inside_the_package():
    import mlcls

    assert model_hub.demo_model_dir() == Path(mlcls.__file__).parent / "assets" / "demo_model"


def _fake_package_root(monkeypatch, root: Path) -> list[str]:
    """Point importlib.resources.files, as model_hub sees it, at ``root``."""
    asked: list[str] = []

    def files(package: str) -> Path:
        asked.append(package)
        return root

    monkeypatch.setattr(model_hub, "resources", SimpleNamespace(files=files))
    return asked


def test_demo_name_resolves_to_the_packaged_directory(monkeypatch, tmp_path, tiny_model):
    asked = _fake_package_root(monkeypatch, tmp_path / "pkg")
    shutil.copytree(tiny_model, tmp_path / "pkg" / "assets" / "demo_model")
    assert model_hub.ensure_model("mlcls-demo") == tmp_path / "pkg" / "assets" / "demo_model"
    assert asked == ["mlcls"]
    with create_pipeline(model="mlcls-demo", device="cpu") as pipe:
        assert pipe.model.model_dir == tmp_path / "pkg" / "assets" / "demo_model"


def test_demo_name_without_the_packaged_model_is_a_clear_error(monkeypatch, tmp_path):
    _fake_package_root(monkeypatch, tmp_path / "pkg")
    with pytest.raises(ModelError, match="demo model 'mlcls-demo' is not part of this "
                                         "installation.*--model_dir"):
        model_hub.ensure_model("mlcls-demo")
    (tmp_path / "pkg" / "assets" / "demo_model").mkdir(parents=True)
    (tmp_path / "pkg" / "assets" / "demo_model" / "inference.yml").write_text("{}")
    with pytest.raises(ModelError, match="incomplete.*inference.pdiparams"):
        model_hub.ensure_model("mlcls-demo")


def test_cli_reports_an_unreachable_download_with_the_hint(tmp_path, tiny_model):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    env = _child_env(tmp_path / "home", closed_port_url("/models"))
    proc = subprocess.run([sys.executable, "-m", "mlcls.cli", "--pipeline",
                           "multi_label_image_classification", "--input", str(image),
                           "--model", NAME, "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--model_dir" in proc.stderr and NAME in proc.stderr, proc.stderr


def test_a_download_over_the_size_cap_is_refused(server, hub_env, good_tar, monkeypatch):
    monkeypatch.setenv("MLCLS_DOWNLOAD_MAX_BYTES", "1000")
    server.routes[ROUTE] = lambda h: send(h, good_tar)
    _expect_failure("announces .* over the limit of 1000 .*MLCLS_DOWNLOAD_MAX_BYTES", hub_env)
    # without a Content-Length, the body itself is cut off at the cap
    server.routes[ROUTE] = lambda h: send_unsized(h, good_tar)
    _expect_failure("more than 1000 bytes, over the limit", hub_env)


def test_a_trickling_download_meets_one_overall_deadline(server, hub_env, good_tar,
                                                         monkeypatch):
    """Each chunk comes within the stall timeout, but the whole never finishes in time."""
    monkeypatch.setenv("MLCLS_DOWNLOAD_DEADLINE", "2")
    monkeypatch.setenv("MLCLS_DOWNLOAD_TIMEOUT", "5")

    def trickle(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(good_tar)))
        handler.end_headers()
        try:
            for i in range(0, len(good_tar), 64):
                handler.wfile.write(good_tar[i:i + 64])
                handler.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass

    server.routes[ROUTE] = trickle
    start = time.monotonic()
    _expect_failure("no complete answer within 2 s \\(MLCLS_DOWNLOAD_DEADLINE\\)", hub_env)
    assert time.monotonic() - start < 30  # a hang check, not a speed claim


def send_unsized(handler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()
    handler.close_connection = True
