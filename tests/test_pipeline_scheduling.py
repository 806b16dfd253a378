"""How the pipeline schedules work: loaders decode ahead, the single predictor runs on the
caller's thread, results come back in input order, and a failed batch spoils only itself.
One stream throughout (streams: test_pipeline_streams.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mlcls import create_pipeline
from mlcls.inputs import read_file


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    pipe = create_pipeline("multi_label_image_classification", device="cpu",
                           model_dir=tiny_model, batch_size=2, device_options={"streams": 1})
    yield pipe
    pipe.close()


def _inputs(image_dir):
    paths = sorted(str(p) for p in image_dir.iterdir())
    # a missing file in the middle, twice over, so that batches straddle it
    return paths[:2] + [str(image_dir / "missing.png")] + paths[2:] + paths


def test_results_follow_input_order_and_match_a_plain_run(pipeline, image_dir):
    inputs = _inputs(image_dir)
    got = list(pipeline.predict(inputs, threshold=0.0))
    assert [r["input_path"] for r in got] == inputs
    assert [r.ok for r in got] == [not p.endswith("missing.png") for p in inputs]
    # the same scores as preprocessing and running each image alone, by hand
    for res, path in zip(got, inputs):
        if not res.ok:
            continue
        batch = pipeline.preprocessor([read_file(path)])
        scores = pipeline.predictors[0].run(batch)[0]
        # results carry scores rounded to 5 decimals, as PaddleX's do
        assert np.allclose(sorted(scores, reverse=True), res["scores"], atol=6e-6)


def test_single_predictor_runs_on_the_callers_thread(pipeline, image_dir, monkeypatch):
    predictor = pipeline.predictors[0]
    threads = []
    real_run = predictor.run

    def recording_run(batch):
        threads.append(threading.get_ident())
        return real_run(batch)

    monkeypatch.setattr(predictor, "run", recording_run)
    assert all(r.ok for r in pipeline.predict(str(image_dir)))
    assert threads and set(threads) == {threading.get_ident()}


def test_a_failing_batch_fails_only_its_own_images(pipeline, image_dir, monkeypatch):
    predictor = pipeline.predictors[0]
    calls = []
    real_run = predictor.run

    def second_batch_fails(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("engine fault on batch 2")
        return real_run(batch)

    monkeypatch.setattr(predictor, "run", second_batch_fails)
    paths = sorted(str(p) for p in image_dir.iterdir())  # 4 images -> 2 batches of 2
    got = list(pipeline.predict(paths + paths[:2]))
    assert [r.ok for r in got] == [True, True, False, False, True, True]
    assert "engine fault on batch 2" in got[2]["error"]


def _load_threads(pipe, image_dir, monkeypatch) -> set[int]:
    seen = set()
    real_prepare = pipe.preprocessor.prepare

    def recording_prepare(image):
        seen.add(threading.get_ident())
        return real_prepare(image)

    monkeypatch.setattr(pipe.preprocessor, "prepare", recording_prepare)
    assert all(r.ok for r in pipe.predict(sorted(str(p) for p in image_dir.iterdir()) * 3))
    return seen


def test_cpu_loads_on_the_callers_thread(tiny_model, image_dir, monkeypatch):
    # devices.yaml gives the cpu type `loaders: 0`: its engine already uses every core
    with create_pipeline("multi_label_image_classification", device="cpu",
                         model_dir=tiny_model, batch_size=2) as pipe:
        assert _load_threads(pipe, image_dir, monkeypatch) == {threading.get_ident()}


def test_loader_threads_give_the_same_results(tiny_model, image_dir):
    paths = sorted(str(p) for p in image_dir.iterdir()) * 3
    runs = []
    for loaders in (0, 3):
        with create_pipeline("multi_label_image_classification", device="cpu",
                             model_dir=tiny_model, batch_size=2,
                             device_options={"loaders": loaders}) as pipe:
            runs.append([(r["input_path"], r["class_ids"], r["scores"])
                         for r in pipe.predict(paths, threshold=0.0)])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("bad", [-1, "two", 1.5, True])
def test_a_bad_loaders_option_is_named(tiny_model, bad):
    from mlcls.errors import UsageError

    with pytest.raises(UsageError, match="'loaders'"):
        create_pipeline("multi_label_image_classification", device="cpu",
                        model_dir=tiny_model, device_options={"loaders": bad})
