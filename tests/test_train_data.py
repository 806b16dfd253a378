"""The training loader streams from disk on worker threads, ahead of the consumer, with
reproducible augmentation; an unreadable image is reported and left out; the trainer keeps
the best model and the last N checkpoints."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from mldataset import make_dataset
from PIL import Image

from mlcls.cli import main
from mlcls.training.augment import AugmentConfig
from mlcls.training.data import SplitData
from mlcls.training.dataset import load_dataset


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds", n_train=20, n_val=6)


def _train_split(root, **kw):
    return SplitData(load_dataset(root).splits["train"], 32, **kw)


def test_images_are_decoded_on_worker_threads_ahead_of_the_consumer(dataset, monkeypatch):
    data = _train_split(dataset, workers=2, prefetch=3)
    loaded, threads = [], set()
    real = SplitData._load

    def spy(self, i):
        threads.add(threading.current_thread().name)
        loaded.append(i)
        return real(self, i)

    monkeypatch.setattr(SplitData, "_load", spy)
    batches = data.batches(4, np.random.default_rng(0), AugmentConfig())
    first = next(batches)
    assert len(first.y) == 4
    deadline = time.monotonic() + 10
    while len(loaded) < 4 * 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    # while the consumer holds batch 1, batches 2 and 3 have been read
    assert len(loaded) >= 12
    assert threads and all(t.startswith("mlcls-data") for t in threads)
    assert not hasattr(data, "images")  # nothing decoded is kept
    assert sum(len(b.y) for b in batches) == 16


def test_every_epoch_reads_the_files_again(dataset):
    data = _train_split(dataset)
    before = next(data.batches(20)).x
    first = data.paths[0]
    Image.new("RGB", (32, 32), (0, 0, 0)).save(first)
    after = next(data.batches(20)).x
    assert not np.allclose(before[0], after[0])
    np.testing.assert_array_equal(before[1:], after[1:])


def test_augmentation_is_reproducible_whatever_the_thread_timing(dataset):
    a = [b.x for b in _train_split(dataset, workers=3).batches(
        4, np.random.default_rng(5), AugmentConfig.with_affine(hflip=0.5))]
    b = [b.x for b in _train_split(dataset, workers=1).batches(
        4, np.random.default_rng(5), AugmentConfig.with_affine(hflip=0.5))]
    assert len(a) == len(b) == 5
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    plain = next(_train_split(dataset).batches(20)).x
    assert not np.array_equal(np.concatenate(a)[:1], plain[:1])


def test_an_unreadable_image_is_reported_and_left_out(dataset):
    data = _train_split(dataset)
    data.paths[3].write_bytes(b"not an image")
    batches = list(data.batches(8))
    assert [len(b.y) for b in batches] == [7, 8, 4]
    assert len(batches[0].bad) == 1 and "train.txt:4" in batches[0].bad[0]
    assert 3 not in batches[0].index


def test_keeps_the_best_and_the_last_checkpoints_and_survives_a_bad_image(dataset, tmp_path,
                                                                           capsys):
    (dataset / "images" / "train_005.png").write_bytes(b"broken")
    out = tmp_path / "out"
    args = ["train", "--dataset", str(dataset), "--output", str(out), "--model",
            "PP-LCNet_x0_25_ML", "--device", "cpu", "--image_size", "32", "--batch_size", "8",
            "--keep_last", "1", "--workers", "2"]
    assert main([*args, "--epochs", "3"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped an unreadable image") == 1 and "train_005.png" in err
    assert sorted(p.name for p in out.glob("epoch_*")) == ["epoch_3"]
    assert (out / "best_model" / "model.pdparams").is_file()
    assert (out / "best_model" / "inference" / "inference.json").is_file()
    assert main([*args, "--epochs", "4", "--resume"]) == 0
    assert sorted(p.name for p in out.glob("epoch_*")) == ["epoch_4"]
    assert main([*args, "--epochs", "1", "--keep_last", "0"]) == 2
    assert "--keep_last" in capsys.readouterr().err


def test_default_augmentation_keeps_objects_in_place_and_affine_adds_none():
    """By default only colours change and a small patch may be erased: a dark square stays
    where it is. With --affine's zoom, shift and rotation the uncovered border is filled
    with the edge colour, so a square touching the edge is never mirrored into a second one
    (a reflected border would add one for every shift away from that edge)."""
    from mlcls.training.augment import augment

    img = np.full((64, 64, 3), 200, np.uint8)
    img[20:36, 0:16] = 20  # a dark square on the left edge
    dark = int((img[..., 0] < 100).sum())
    for seed in range(12):
        out = augment(img, AugmentConfig(erase=0.0), np.random.default_rng(seed))
        np.testing.assert_array_equal(out[..., 0] < 110, img[..., 0] < 100)
    shifted = AugmentConfig.with_affine(scale=0.0, rotate=0.0, jitter=0.0, erase=0.0)
    counts = [int((augment(img, shifted, np.random.default_rng(seed))[..., 0] < 100).sum())
              for seed in range(12)]
    assert max(counts) <= 1.05 * dark, counts  # moved or cut by the edge, never copied
    assert min(counts) < dark  # some shifts did move it out of the frame
