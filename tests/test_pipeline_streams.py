"""Streams: several predictors on one device, each running whole batches of its own, opened
when a run has more than one batch, sharing the available cores."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from mlcls import create_pipeline
from mlcls.errors import UsageError
from mlcls.plugin import available_cores


def _paths(image_dir) -> list[str]:
    return sorted(str(p) for p in image_dir.iterdir())


def _pipeline(tiny_model, streams, **options):
    return create_pipeline("multi_label_image_classification", device="cpu",
                           model_dir=tiny_model, batch_size=2, engine="onnxruntime",
                           device_options={"streams": streams, **options})


def test_two_streams_share_the_work_and_give_the_same_scores(tiny_model, image_dir):
    inputs = _paths(image_dir) * 3  # 12 images, 6 batches of 2
    with _pipeline(tiny_model, 1) as single:
        expected = list(single.predict(inputs, threshold=0.0))
    with _pipeline(tiny_model, 2) as pipe:
        assert len(pipe.predictors) == 1  # the second stream waits for work
        threads_seen: list[set[int]] = []
        got = []
        for i, res in enumerate(pipe.predict(inputs, threshold=0.0)):
            got.append(res)
            if i == 0:
                assert len(pipe.predictors) == 2
                for predictor in pipe.predictors:
                    seen: set[int] = set()
                    threads_seen.append(seen)
                    real = predictor.run

                    def run(batch, real=real, seen=seen):
                        seen.add(threading.get_ident())
                        return real(batch)

                    predictor.run = run
        assert pipe.device == "cpu"  # streams are not devices
    assert [r["input_path"] for r in got] == inputs
    for mine, theirs in zip(got, expected):
        assert mine["class_ids"] == theirs["class_ids"]
        assert np.allclose(mine["scores"], theirs["scores"], atol=1e-5)
        assert mine["device"] == "cpu"
    # both streams ran batches, on runner threads, while this thread loaded the next ones
    assert all(threads_seen)
    assert threading.get_ident() not in threads_seen[0] | threads_seen[1]


def test_streams_share_the_cores_unless_threads_are_given(tiny_model, image_dir):
    with _pipeline(tiny_model, 2) as pipe:
        assert pipe.options["threads"] == max(1, available_cores() // 2)
    with _pipeline(tiny_model, 2, threads=3) as pipe:
        assert pipe.options["threads"] == 3
        list(pipe.predict(_paths(image_dir)))
        assert len(pipe.predictors) == 2
        assert all("3 threads" in p.detail for p in pipe.placements)


def test_one_batch_opens_one_stream(tiny_model, image_dir):
    with _pipeline(tiny_model, 2) as pipe:
        assert all(r.ok for r in pipe.predict(_paths(image_dir)[:2]))
        assert len(pipe.predictors) == 1


def test_a_stream_that_cannot_open_leaves_the_run_on_the_others(tiny_model, image_dir,
                                                                 monkeypatch, caplog):
    inputs = _paths(image_dir) * 2
    with _pipeline(tiny_model, 3) as pipe:
        real = pipe._engine.create_predictor
        calls = []

        def second_fails(*args):
            calls.append(args)
            if len(calls) == 2:
                raise RuntimeError("out of sessions")
            return real(*args)

        monkeypatch.setattr(pipe._engine, "create_predictor", second_fails)
        with caplog.at_level(logging.WARNING, logger="mlcls.pipeline"):
            got = list(pipe.predict(inputs))
        assert [r["input_path"] for r in got] == inputs and all(r.ok for r in got)
        assert len(pipe.predictors) == 2 and pipe.streams == 2
        assert "stream 3 not opened" in caplog.text and "out of sessions" in caplog.text
        list(pipe.predict(inputs))
        assert len(calls) == 2  # not tried again on every run


def test_a_server_opens_every_stream_and_splits_its_batches_over_them(tiny_model, image_dir):
    from mlcls.serving.batcher import DynamicBatcher

    with _pipeline(tiny_model, 2) as pipe:
        batcher = DynamicBatcher(pipe, max_batch_size=4)
        assert len(pipe.predictors) == 2 and batcher.lanes == 2
        assert batcher._parts(5) == [(0, 5, 3)]  # one call, batches of 3 and 2


def test_a_stream_whose_placement_fails_is_closed_and_named(tiny_model, image_dir,
                                                            monkeypatch, caplog):
    with _pipeline(tiny_model, 2) as pipe:
        closed = []

        def broken_placement(predictor):
            real_close = predictor.close
            predictor.close = lambda: (closed.append(predictor), real_close())
            raise RuntimeError("cannot read back")

        monkeypatch.setattr(pipe._engine, "placement", broken_placement)
        with caplog.at_level(logging.WARNING, logger="mlcls.pipeline"):
            got = list(pipe.predict(_paths(image_dir) * 2))
        assert all(r.ok for r in got) and len(pipe.predictors) == 1
        assert len(closed) == 1
        assert "stream 2 not opened" in caplog.text and "cannot read back" in caplog.text


@pytest.mark.parametrize(("engine", "streams"), [("onnxruntime", 2), ("paddle", 1)])
def test_the_engines_own_streams_setting_is_the_pipelines(tiny_model, engine, streams):
    # devices.yaml: engines.onnxruntime.options.cpu.streams = 2; the paddle engine sets none
    with create_pipeline("multi_label_image_classification", device="cpu",
                         model_dir=tiny_model, engine=engine) as pipe:
        assert pipe.streams == streams
        assert "streams" not in pipe.options  # a pipeline setting, never handed to the engine


def test_tune_times_every_stream_at_once(tiny_model):
    from mlcls.tuning import time_engines

    with _pipeline(tiny_model, 2) as pipe:
        timings = time_engines({"onnxruntime": pipe}, batch_size=2, seconds=0.1, rounds=1)
        assert len(pipe.predictors) == 2
        calls = [0, 0]
        for i, predictor in enumerate(pipe.predictors):
            real = predictor.run

            def run(batch, real=real, i=i):
                calls[i] += 1
                return real(batch)

            predictor.run = run
        time_engines({"onnxruntime": pipe}, batch_size=2, seconds=0.1, rounds=1)
    assert all(n >= 2 for n in calls), calls
    assert timings["onnxruntime"].placement.endswith(", 2 streams")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_streams_must_be_a_whole_number_of_at_least_one(tiny_model, bad):
    with pytest.raises(UsageError, match="device option 'streams' must be a whole number"):
        _pipeline(tiny_model, bad)
