"""Batch tagging on Ray Data and the service on Ray Serve, on one local Ray (2 CPUs) that the
tests start once and stop at the end."""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray.data")
pytest.importorskip("ray.serve")
pq = pytest.importorskip("pyarrow.parquet")

import distributed_helpers  # noqa: E402
from distributed_helpers import ARMED_SUFFIX, KILL_MARK, DiesOnce  # noqa: E402

from mlcls.cli import main as cli_main  # noqa: E402
from mlcls.distributed.batch import (  # noqa: E402
    BatchSettings,
    list_inputs,
    plan_workers,
    run_batch,
)
from mlcls.errors import UsageError  # noqa: E402
from shared_paths import SEED  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for every test here; stopped (with Serve) when they are done."""
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(distributed_helpers)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(distributed_helpers)


def read_rows(dst: Path) -> list[dict]:
    files = sorted(glob.glob(str(dst / "*.parquet")))
    return pq.read_table(files).to_pylist() if files else []


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray-images")
    rng = np.random.default_rng(3)
    for i in range(12):
        arr = rng.integers(0, 256, (24 + i, 40 - i, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"img{i:02d}.png")
    return root


# -- on Ray -----------------------------------------------------------------------------------

def test_reference_images_and_unreadable_files_give_one_row_each(ray_local, reference_dir,
                                                                  tmp_path, capsys):
    """The 50 reference images, two unreadable files and a listed file that is not there,
    through `mlcls batch`: one row each, every score within 1e-4 of PaddleX's."""
    images = reference_dir / "images"
    order = (reference_dir / "expected" / "raw_scores_order.txt").read_text().split()
    raw = np.load(reference_dir / "expected" / "raw_scores.npy")
    (tmp_path / "garbage.jpg").write_bytes(b"this is not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    listing = tmp_path / "inputs.txt"
    listing.write_text("\n".join([str(images / n) for n in order]
                                 + ["garbage.jpg", "empty.png", "missing.jpg"]) + "\n")
    dst = tmp_path / "out"
    status = cli_main(["batch", "--input", str(listing), "--output", str(dst),
                       "--pipeline", "multi_label_image_classification",
                       "--model_dir", str(reference_dir / "model" / "PP-LCNet_x1_0_ML"),
                       "--device", "cpu", "--threshold", "0", "--batch_size", "8"])
    err = capsys.readouterr().err
    assert status == 1, err  # some inputs failed
    assert "53 row(s) from 53 input(s), 3 failed" in err
    rows = read_rows(dst)
    by_input = {r["input_path"]: r for r in rows}
    assert len(rows) == len(by_input) == 53
    got = np.zeros_like(raw)
    for i, name in enumerate(order):
        row = by_input[str(images / name)]
        assert row["error"] is None and row["device"] == "cpu" and row["page_index"] is None
        got[i, row["class_ids"]] = row["scores"]
    assert np.abs(got - raw).max() < 1e-4
    assert "no known image format" in by_input[str(tmp_path / "garbage.jpg")]["error"]
    assert "empty file" in by_input[str(tmp_path / "empty.png")]["error"]
    assert "no such file" in by_input[str(tmp_path / "missing.jpg")]["error"]
    for name in ("garbage.jpg", "empty.png", "missing.jpg"):
        assert by_input[str(tmp_path / name)]["class_ids"] is None


def test_a_worker_killed_mid_run_still_leaves_one_row_per_input(ray_local, tiny_model,
                                                                 tiny_images, tmp_path):
    """The inference worker exits (os._exit, as in a crash) on the batch holding a marked
    input; Ray restarts it and retries that batch: no row lost, none doubled. Input and
    output are file:// URIs, read and written through pyarrow's filesystems as s3:// is."""
    src = tmp_path / "src"
    src.mkdir()
    for path in sorted(tiny_images.iterdir()):
        (src / path.name).write_bytes(path.read_bytes())
    marked = src / f"img05-{KILL_MARK}.png"
    marked.write_bytes((tiny_images / "img05.png").read_bytes())
    armed = Path(str(marked) + ARMED_SUFFIX)
    armed.write_text("")
    # a 3-page TIFF: as many rows as the pipeline gives results for it, keyed by page_index
    frames = [Image.fromarray(np.full((20, 30, 3), 60 * k, dtype=np.uint8)) for k in range(3)]
    tiff = src / "pages.tif"
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    settings = BatchSettings(model_dir=str(tiny_model), device="cpu", batch_size=4)
    summary = run_batch(f"file://{src}", f"file://{tmp_path / 'out'}", settings,
                        worker=DiesOnce)
    assert not armed.exists()  # the worker did die on that batch
    rows = read_rows(tmp_path / "out")
    images = sorted(f"file://{p}" for p in src.glob("*.png"))
    tiff_uri = f"file://{tiff}"
    assert sorted(r["input_path"] for r in rows if r["input_path"] != tiff_uri) == images
    assert all(r["error"] is None and r["class_ids"] is not None for r in rows)
    from mlcls import create_pipeline

    with create_pipeline("multi_label_image_classification", device="cpu",
                         model_dir=tiny_model) as pipeline:
        expected = [(r.get("page_index"), r["class_ids"], r.get("engine"))
                    for r in pipeline.predict(str(tiff))]
    got = sorted(((r["page_index"], r["class_ids"], r["engine"]) for r in rows
                  if r["input_path"] == tiff_uri), key=lambda pair: pair[0] or 0)
    assert got == expected
    assert summary.rows == len(rows) == 13 + len(expected) and summary.failed == 0


def test_resume_skips_what_is_written_and_refuses_to_mix_runs(ray_local, tiny_model,
                                                              tiny_images, tmp_path, capsys):
    """Listings of paths and URLs (a loopback server: one image, one 404); a second run is
    refused, a resumed one tags only what is missing, and a third has nothing to do."""
    from loopback_http import LoopbackServer, send

    server = LoopbackServer()
    server.routes["/web.png"] = lambda h: send(h, (tiny_images / "img03.png").read_bytes())
    try:
        paths = sorted(str(p) for p in tiny_images.glob("*.png"))
        first, everything = tmp_path / "first.txt", tmp_path / "all.txt"
        first.write_text("\n".join(paths[:5] + [server.url("/web.png")]))
        inputs = paths + [server.url("/web.png"), server.url("/gone.png")]
        everything.write_text("\n".join(inputs))
        dst = tmp_path / "out"
        common = ["--pipeline", "multi_label_image_classification", "--model_dir",
                  str(tiny_model), "--device", "cpu", "--output", str(dst)]
        assert cli_main(["batch", "--input", str(first), *common]) == 0
        assert len(read_rows(dst)) == 6
        capsys.readouterr()
        # a second run into the same folder: refused without --resume
        assert cli_main(["batch", "--input", str(everything), *common]) == 2
        assert "--resume" in capsys.readouterr().err
        # other settings: resuming would mix two runs
        assert cli_main(["batch", "--input", str(everything), *common, "--resume",
                         "--threshold", "0.2"]) == 2
        assert "threshold" in capsys.readouterr().err
        assert cli_main(["batch", "--input", str(everything), *common, "--resume"]) == 1
        err = capsys.readouterr().err
        assert "8 row(s) from 8 input(s), 1 failed" in err
        assert "6 input(s) already done skipped" in err
        rows = read_rows(dst)
        assert sorted(r["input_path"] for r in rows) == sorted(inputs)  # each exactly once
        by_input = {r["input_path"]: r for r in rows}
        assert "404" in by_input[server.url("/gone.png")]["error"]
        web, same = by_input[server.url("/web.png")], by_input[paths[3]]
        assert web["error"] is None and web["scores"] == same["scores"]
        assert cli_main(["batch", "--input", str(everything), *common, "--resume"]) == 0
        assert "nothing to do" in capsys.readouterr().err
        assert len(read_rows(dst)) == len(inputs)
    finally:
        server.close()


def test_python_api_tags_a_ray_dataset_and_carries_its_columns(ray_local, tiny_model,
                                                                tiny_images, tmp_path):
    from mlcls.distributed import tag_dataset

    (tmp_path / "bad.jpg").write_bytes(b"no")
    paths = [str(p) for p in sorted(tiny_images.glob("*.png"))[:3]] + [str(tmp_path / "bad.jpg")]
    ds = ray_local.data.from_items([{"input_path": p, "photo_id": 100 + i}
                                    for i, p in enumerate(paths)])
    rows = tag_dataset(ds, model_dir=str(tiny_model), device="cpu").take_all()
    assert sorted((r["photo_id"], r["input_path"]) for r in rows) == \
        [(100 + i, p) for i, p in enumerate(paths)]
    by_id = {r["photo_id"]: r for r in rows}
    assert all(by_id[100 + i]["class_ids"] is not None for i in range(3))
    assert "no known image format" in by_id[103]["error"]
    clash = ray_local.data.from_items([{"input_path": paths[0], "scores": 1}])
    with pytest.raises(UsageError, match="scores would be overwritten"):
        tag_dataset(clash, model_dir=str(tiny_model), device="cpu")


def test_batch_joins_a_running_cluster_by_address(ray_local, tiny_model, tiny_images,
                                                 tmp_path):
    """`mlcls batch --address` from another process joins the running Ray (as a submitting
    machine joins a cluster), and leaves it running."""
    address = ray_local.get_runtime_context().gcs_address
    out = subprocess.run(
        [sys.executable, "-m", "mlcls.cli", "batch", "--address", address, "--input",
         str(tiny_images), "--output", str(tmp_path / "out"), "--pipeline",
         "multi_label_image_classification", "--model_dir", str(tiny_model), "--device", "cpu"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "12 row(s) from 12 input(s), 0 failed" in out.stderr
    assert sorted(r["input_path"] for r in read_rows(tmp_path / "out")) == \
        sorted(str(p) for p in tiny_images.glob("*.png"))
    assert ray_local.is_initialized() and ray_local.cluster_resources().get("CPU") == 2


def test_ray_serve_deployment_answers_the_seed_python_client(ray_local, tiny_model,
                                                             tiny_images, tmp_path):
    """`mlcls --serve`'s app on Ray Serve (2 replicas) answers the seed's client unchanged
    but for the URL, and keeps its schema and errors."""
    import requests
    from ray import serve

    from mlcls.distributed.serve import mlcls_app
    from mlcls.serving.settings import ServeSettings

    if not SEED.is_file():
        pytest.skip(f"the seed document is not at {SEED}")
    port = distributed_helpers.free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = mlcls_app(BatchSettings(model_dir=str(tiny_model), device="cpu"),
                    ServeSettings(max_pixels=100_000), num_replicas=2)
    serve.run(app, name="mlcls", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    try:
        (tmp_path / "demo.jpg").write_bytes((tiny_images / "img00.png").read_bytes())
        code = distributed_helpers.seed_python_client(SEED.read_text(encoding="utf-8"), base)
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "Categories:" in out.stdout
        assert Image.open(tmp_path / "out.jpg").size[0] > 0
        ready = requests.get(base + "/ready", timeout=30).json()
        assert ready["errorCode"] == 0 and ready["result"]["device"] == "cpu"
        # the same errors as mlcls --serve: a picture over the limit is a 413, not garbage
        import base64
        import io

        buf = io.BytesIO()
        Image.new("RGB", (400, 400)).save(buf, format="PNG")
        big = requests.post(base + "/multilabel-image-classification", timeout=30,
                            json={"image": base64.b64encode(buf.getvalue()).decode()})
        assert big.status_code == 413 and big.json()["errorCode"] == 413
        bad = requests.post(base + "/multilabel-image-classification", timeout=30,
                            json={"image": "bm90IGFuIGltYWdl"})
        assert bad.status_code == 400 and "image" in bad.json()["errorMsg"]
    finally:
        serve.delete("mlcls")


# -- without Ray running ----------------------------------------------------------------------

def test_devices_map_onto_ray_resources():
    gpu = plan_workers("gpu", {"CPU": 32, "GPU": 4}, None)
    assert (gpu.num_workers, gpu.device, gpu.num_gpus) == (4, "gpu:0", 1.0)
    assert plan_workers("cuda", {"GPU": 4}, 2).num_workers == 2
    npu = plan_workers("npu", {"NPU": 8}, None)
    assert (npu.num_workers, npu.device, npu.resources) == (8, "npu:0", {"NPU": 1.0})
    cpu = plan_workers("cpu", {"CPU": 64}, None, nodes=3)
    assert (cpu.num_workers, cpu.device, cpu.num_gpus) == (3, "cpu", 0.0)
    assert plan_workers(None, {}, None).device is None
    # Ray not running yet (`serve run` builds the app before it joins Ray): nothing to check
    unknown = plan_workers("gpu", None, None)
    assert (unknown.num_workers, unknown.device, unknown.num_gpus) == (1, "gpu:0", 1.0)
    with pytest.raises(UsageError, match="pass the type alone"):
        plan_workers("gpu:1", {"GPU": 4}, None)
    with pytest.raises(UsageError, match="no 'GPU' resource"):
        plan_workers("gpu", {"CPU": 2}, None)
    with pytest.raises(UsageError, match="only 4"):
        plan_workers("gpu", {"GPU": 4}, 5)
    with pytest.raises(UsageError, match=r"--resources '\{\"XPU\": N\}'"):
        plan_workers("xpu", {"CPU": 2}, None)


def test_inputs_are_listed_from_folders_globs_and_listings(tmp_path, tiny_images,
                                                          monkeypatch):
    assert list_inputs(tiny_images) == sorted(str(p) for p in tiny_images.glob("*.png"))
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "x.jpg").write_bytes(b"x")
    (sub / "notes.txt").write_text("not an image")
    assert list_inputs(tmp_path / "a") == [str(sub / "x.jpg")]
    monkeypatch.chdir(tmp_path)  # relative paths come out absolute: Ray's workers are elsewhere
    assert list_inputs("a") == [str(sub / "x.jpg")]
    assert list_inputs(str(tmp_path / "a" / "**" / "*.jpg")) == [str(sub / "x.jpg")]
    (tmp_path / "list.csv").write_text("id,path\n1,a/b/x.jpg\n2,https://host.invalid/y.png\n")
    assert list_inputs(tmp_path / "list.csv") == [str(sub / "x.jpg"),
                                                  "https://host.invalid/y.png"]
    import pyarrow as pa

    pq.write_table(pa.table({"url": ["a/b/x.jpg", "a/b/x.jpg"]}), tmp_path / "list.parquet")
    assert list_inputs(tmp_path / "list.parquet") == [str(sub / "x.jpg")]  # once
    assert list_inputs(f"file://{sub}") == [f"file://{sub / 'x.jpg'}"]
    (tmp_path / "folders.txt").write_text("a\n")  # a folder listed: the images below it
    assert list_inputs(tmp_path / "folders.txt") == [str(sub / "x.jpg")]
    with pytest.raises(UsageError, match="no such file"):
        list_inputs(tmp_path / "nowhere")
    (tmp_path / "empty.txt").write_text("# nothing listed\n")
    with pytest.raises(UsageError, match="no image files"):
        list_inputs(tmp_path / "empty.txt")


def test_engine_is_passed_only_where_create_pipeline_takes_it():
    import inspect

    from mlcls import create_pipeline

    assert "engine" not in BatchSettings().pipeline_kwargs()
    takes = "engine" in inspect.signature(create_pipeline).parameters
    settings = BatchSettings(engine="onnxruntime")
    if takes:
        assert settings.pipeline_kwargs()["engine"] == "onnxruntime"
    else:
        with pytest.raises(UsageError, match="no engine choice"):
            settings.pipeline_kwargs()


def test_batch_usage_errors_need_no_ray(tmp_path, capsys, tiny_model):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["batch", "--input", str(tmp_path), "--pipeline", "x"])
    assert exit_info.value.code == 2
    capsys.readouterr()
    status = cli_main(["batch", "--input", str(tmp_path / "nowhere"), "--output",
                       str(tmp_path / "out"), "--pipeline", "multi_label_image_classification",
                       "--model_dir", str(tiny_model), "--device", "gpu:0,1"])
    assert status == 2
    assert "pass the type alone" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    status = cli_main(["batch", "--input", str(tmp_path / "nowhere"), "--output",
                       str(tmp_path / "out"), "--pipeline", "multi_label_image_classification",
                       "--model_dir", str(tiny_model)])
    assert status == 2 and "no such file, folder or pattern" in capsys.readouterr().err


def test_serve_run_target_reads_its_key_value_arguments(tiny_model, monkeypatch):
    """`serve run mlcls.distributed.serve:build_app key=value ...` hands strings over."""
    from mlcls.distributed.serve import build_app

    app = build_app({"model_dir": str(tiny_model), "device": "cpu", "num_replicas": "2",
                     "max_queue": "16", "threshold": "0.3"})
    deployment = app._bound_deployment
    assert deployment.num_replicas == 2
    pipeline_args, serving = deployment.init_args
    assert pipeline_args["threshold"] == 0.3 and pipeline_args["device"] == "cpu"
    assert serving.max_queue == 16
    # `serve run` calls build_app before it joins Ray: no cluster to ask about GPUs yet
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    gpu = build_app({"model_dir": str(tiny_model), "device": "gpu"})._bound_deployment
    assert gpu.ray_actor_options["num_gpus"] == 1 and gpu.init_args[0]["device"] == "gpu:0"
    with pytest.raises(UsageError, match="unknown argument.*modeldir"):
        build_app({"modeldir": str(tiny_model)})


def test_an_unreachable_cluster_is_said_at_once(tmp_path, tiny_model, tiny_images, capsys):
    port = distributed_helpers.free_port()  # closed again: nothing listens there
    status = cli_main(["batch", "--address", f"127.0.0.1:{port}", "--input", str(tiny_images),
                       "--output", str(tmp_path / "out"), "--pipeline",
                       "multi_label_image_classification", "--model_dir", str(tiny_model)])
    assert status == 1
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written before Ray was there


def test_resume_names_a_result_file_it_cannot_read(tmp_path, tiny_model, tiny_images, capsys):
    """A Parquet file cut short by a killed run is named, not skipped (its inputs would be
    tagged again beside its remains); a folder mlcls did not write is not resumed into."""
    import json

    from mlcls.distributed.batch import MANIFEST_NAME

    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "cut.parquet").write_bytes(b"PAR1 and then nothing")
    args = ["batch", "--input", str(tiny_images), "--output", str(dst), "--pipeline",
            "multi_label_image_classification", "--model_dir", str(tiny_model), "--resume"]
    assert cli_main(args) == 2
    assert "holds files but no _mlcls_batch.json" in capsys.readouterr().err
    identity = BatchSettings(model_dir=str(tiny_model)).identity()
    (dst / MANIFEST_NAME).write_text(json.dumps({"settings": identity}))
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert f"{dst / 'cut.parquet'}: cannot read this result file" in err and "remove it" in err


def test_decoding_tasks_resize_only_where_the_pipeline_would_keep_the_result():
    from mlcls.distributed.batch import leading_resize

    fixed = {"ResizeImage": {"size": 448, "interpolation": "bilinear", "backend": "pil"}}
    short = {"ResizeImage": {"resize_short": 256}}
    crop, norm = {"CropImage": {"size": 224}}, {"NormalizeImage": {}}
    assert leading_resize([{"DecodeImage": {}}, fixed, norm]) == fixed
    assert leading_resize([short, crop, norm]) == short  # resize_short again: same size
    assert leading_resize([short, fixed, norm]) is None  # the second resize would differ
    assert leading_resize([crop, fixed, norm]) is None
    assert leading_resize([norm]) is None


def test_a_failed_ray_job_is_reported_by_the_workers_own_error():
    """Ray wraps a worker's exception in its own (ActorDiedError...) with the traceback as
    text; the message shown is the worker's."""
    from mlcls.distributed.batch import _ray_cause

    wrapped = RuntimeError("ActorDiedError: The actor died in its constructor.\nTraceback "
                           "(most recent call last):\n  File \"x.py\", line 5, in __init__\n"
                           "mlcls.errors.DeviceError: device 'gpu:0': no NVIDIA driver found")
    assert _ray_cause(wrapped) == "device 'gpu:0': no NVIDIA driver found"
    outer = RuntimeError("job failed")
    outer.__cause__ = RuntimeError("Traceback:\n  ...\nnumpy.core.MemoryError: 3 GiB")
    assert _ray_cause(outer) == "MemoryError: 3 GiB"
