"""Training speed per model: images/s of the training step at a given image size.

    .venv/bin/python benchmarks/bench_train.py [--models A,B] [--image_size 96]
        [--batch_size 16] [--steps 6] [--workers 0] [--threads 0] [--head linear]

For each model, in a fresh subprocess (so peak memory is the model's own):
  step      forward + ASL loss + backward + AdamW step on a batch already in memory:
            what the network costs;
  loader    the streaming loader alone (decode PNGs from disk, resize, augment, collate on
            worker threads) over a generated dataset: what the data costs;
  together  the two as ``mlcls train`` runs them, the loader working ahead of the step;
  peak RSS  the process's ``ru_maxrss`` at the end.
The first step (graph building, allocations) is not timed. Figures move with the machine and
with what else runs on it: compare models within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODELS = ("PP-LCNet_x0_25_ML,PP-LCNet_x0_5_ML,PP-LCNet_x1_0_ML,PP-HGNetV2-B0_ML,"
                  "PP-HGNetV2-B4_ML,PP-HGNetV2-B6_ML,ResNet50_ML")


def make_images(folder: Path, count: int, size: int) -> Path:
    """A dataset in PaddleX's layout: smooth random photos-like PNGs at about twice the
    training size, so decoding and resizing cost what they would on real data."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "label.txt").write_text("0 a\n1 b\n2 c\n")
    lines = []
    for i in range(count):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        rel = f"images/{i:04d}.png"
        Image.fromarray(small).resize((size * 2, size * 2 * 3 // 4), Image.BILINEAR).save(
            folder / rel)
        lines.append(f"{rel}\t{i % 2},{(i // 2) % 2},1")
    for split in ("train", "val"):
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def worker(args) -> dict:
    import numpy as np

    from mlcls.paddle_engine import import_paddle_inference
    from mlcls.training.trainer import compute_threads, default_threads

    compute_threads(args.threads or default_threads(), import_paddle_inference)  # as train does
    import paddle

    from mlcls.training.augment import AugmentConfig
    from mlcls.training.data import SplitData
    from mlcls.training.dataset import load_dataset
    from mlcls.training.loss import make_loss
    from mlcls.training.models import build_model

    paddle.set_device("cpu")
    paddle.seed(0)
    net = build_model(args.worker, 3, head=args.head)
    opt = paddle.optimizer.AdamW(1e-4, parameters=net.parameters())
    loss_fn = make_loss("asl")

    def step(x, y):
        loss = loss_fn(net(paddle.to_tensor(x)), paddle.to_tensor(y))
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)

    rng = np.random.default_rng(0)
    b, s = args.batch_size, args.image_size
    x = rng.normal(size=(b, 3, s, s)).astype("float32")
    y = (rng.random((b, 3)) < 0.5).astype("float32")
    step(x, y)  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(x, y)
    step_rate = b * args.steps / (time.perf_counter() - t0)

    split = load_dataset(args.dataset).splits["train"]
    data = SplitData(split, s, workers=args.workers or None)
    aug = AugmentConfig()
    t0 = time.perf_counter()
    n = sum(len(batch.y) for batch in data.batches(b, np.random.default_rng(1), aug, True))
    loader_rate = n / (time.perf_counter() - t0)

    batches = data.batches(b, np.random.default_rng(2), aug, True)
    first = next(batches)
    step(first.x, first.y)
    t0, n = time.perf_counter(), 0
    for batch in batches:
        step(batch.x, batch.y)
        n += len(batch.y)
    together = n / (time.perf_counter() - t0)
    params = sum(int(np.prod(p.shape)) for p in net.parameters()) / 1e6
    return {"model": args.worker, "params_m": params, "step": step_rate,
            "loader": loader_rate, "together": together,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=6, help="timed steps on the in-memory batch")
    p.add_argument("--workers", type=int, default=0, help="loader threads; 0: automatic")
    p.add_argument("--head", choices=("linear", "mldecoder"), default="linear",
                   help="the head trained (mlcls train's default from scratch: linear)")
    p.add_argument("--threads", type=int, default=0,
                   help="Paddle's compute threads, as mlcls train --threads; 0: its default")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    from needs import need_module

    need_module("paddle", "pip install 'mlcls[cpu]' (training runs on Paddle; or your own "
                "Paddle build)")
    failed = 0

    with tempfile.TemporaryDirectory() as tmp:
        # enough images for the together pass to take several steps after its first
        dataset = make_images(Path(tmp) / "ds", args.batch_size * (args.steps + 2),
                              args.image_size)
        print(f"training step, {args.head} head, {args.image_size}px, batch "
              f"{args.batch_size}, CPU, {os.cpu_count()} cores; images/s")
        print(f"{'model':<20}{'params':>9}{'step':>9}{'loader':>9}{'together':>10}"
              f"{'peak RSS':>10}")
        for model in args.models.split(","):
            cmd = [sys.executable, __file__, "--worker", model, "--dataset", str(dataset),
                   "--image_size", str(args.image_size), "--batch_size",
                   str(args.batch_size), "--steps", str(args.steps), "--workers",
                   str(args.workers), "--threads", str(args.threads), "--head", args.head]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                print(f"{model:<20} failed: {last}")
                failed += 1
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{model:<20}{r['params_m']:>8.1f}M{r['step']:>9.1f}{r['loader']:>9.0f}"
                  f"{r['together']:>10.1f}{r['rss_mb']:>8.0f}MB", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
