"""`mlcls batch` (Ray Data) against the plain `mlcls` CLI on the same images, on this machine,
and the stage rates from which the throughput of N workers is estimated.

    .venv/bin/python benchmarks/bench_batch.py [--copies 4] [--batch_size 8] [--repeats 2]

The input folder holds the reference images ``--copies`` times over (distinct file names).
Each run is a fresh subprocess timed from exec to exit, so the figures include Python's start,
the model's loading and, for `mlcls batch`, starting a local Ray and its workers:

  plain        mlcls --pipeline ... --input DIR -q (results computed, nothing written);
  batch        mlcls batch --input DIR --output OUT (Parquet rows);
  batch steady the images/s `mlcls batch` reports itself: from its first Ray task to the last
               row written (Ray's start and shutdown left out).

Then, in this process, the two stages' rates alone: decoding and resizing (what each CPU task
does, one core) and inference (what one worker does, on those images), from which the throughput of
N nodes like this one is estimated (their cores shared by both stages), and the decoding
cores an accelerator worker needs beside it. These are estimates, printed as such: one host
cannot measure a cluster.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from needs import REFERENCE, need_images, need_model_dir, need_module

PIPELINE = "multi_label_image_classification"


def make_inputs(images: Path, copies: int, root: Path) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    made = []
    for k in range(copies):
        for src in sorted(images.iterdir()):
            if src.is_file():
                dst = root / f"{src.stem}_{k}{src.suffix}"
                shutil.copyfile(src, dst)
                made.append(dst)
    return made


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-3000:]}")
    return wall, out.stderr


def stage_rates(paths: list[Path], model_dir: Path, batch_size: int) -> tuple[float, float]:
    """(images/s decoded and resized on one core, as a decoding task does; images/s of one
    pipeline on those images, as an inference worker does)."""
    from mlcls import create_pipeline
    from mlcls.distributed.batch import leading_resize, load_pages
    from mlcls.model import load_model_dir
    from mlcls.preprocess import NumpyPreprocessor

    op = leading_resize(load_model_dir(model_dir).transform_ops)
    resize = NumpyPreprocessor([op]).prepare if op else (lambda img: img)
    t0 = time.perf_counter()
    decoded = [resize(rgb) for p in paths for _, rgb, _ in load_pages(str(p))
               if rgb is not None]
    decode_rate = len(decoded) / (time.perf_counter() - t0)
    bgr = [img[:, :, ::-1] for img in decoded]
    with create_pipeline(PIPELINE, device="cpu", model_dir=model_dir,
                         batch_size=batch_size) as pipeline:
        list(pipeline.predict(bgr[: batch_size * 2]))  # warm-up: first shapes, oneDNN kernels
        t0 = time.perf_counter()
        count = sum(1 for _ in pipeline.predict(bgr))
        infer_rate = count / (time.perf_counter() - t0)
    return decode_rate, infer_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, default=REFERENCE / "images")
    ap.add_argument("--model_dir", type=Path,
                    default=REFERENCE / "model" / "PP-LCNet_x1_0_ML")
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    need_images(args.images)
    need_model_dir(args.model_dir)
    need_module("ray", "pip install 'mlcls[ray]' (mlcls batch runs on Ray Data)")

    work = Path(tempfile.mkdtemp(prefix="mlcls-bench-batch-"))
    try:
        paths = make_inputs(args.images, args.copies, work / "in")
        n = len(paths)
        mlcls = [sys.executable, "-m", "mlcls.cli"]
        common = ["--pipeline", PIPELINE, "--model_dir", str(args.model_dir),
                  "--device", "cpu", "--batch_size", str(args.batch_size)]
        plain, batch, steady = [], [], []
        for r in range(args.repeats):  # interleaved, so drift hits both alike
            wall, _ = timed([*mlcls, *common, "--input", str(work / "in"), "-q"])
            plain.append(wall)
            wall, err = timed([*mlcls, "batch", *common, "--input", str(work / "in"),
                               "--output", str(work / f"batch{r}")])
            batch.append(wall)
            found = re.search(r"([0-9.]+) images/s", err)
            steady.append(float(found.group(1)) if found else float("nan"))
        decode_rate, infer_rate = stage_rates(paths, args.model_dir, args.batch_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    machine = platform.processor() or platform.machine()
    print(f"# {n} images ({args.copies} x {args.images}), model {args.model_dir.name}, "
          f"batch {args.batch_size}, cpu, {os.cpu_count()} cores ({machine}), medians of "
          f"{args.repeats}")
    print(f"{'run':<28}{'wall s':>9}{'images/s':>10}")
    print(f"{'plain mlcls CLI':<28}{med(plain):>9.1f}{n / med(plain):>10.1f}")
    print(f"{'mlcls batch (exec to exit)':<28}{med(batch):>9.1f}{n / med(batch):>10.1f}")
    print(f"{'mlcls batch (steady)':<28}{'':>9}{med(steady):>10.1f}")
    print(f"Ray's fixed cost on one host: {med(batch) - med(plain):+.1f} s per run")
    cores = os.cpu_count() or 1
    # A CPU node's cores share decoding and inference: per image it spends 1/infer seconds of
    # all its cores plus 1/decode seconds of one core.
    per_node = 1.0 / (1.0 / infer_rate + 1.0 / (decode_rate * cores))
    print(f"\n# stage rates here: decoding and resizing {decode_rate:.1f} images/s per core; "
          f"inference {infer_rate:.1f} images/s per worker (one engine on {cores} cores)")
    print(f"# estimate for nodes like this one, one CPU worker each: {per_node:.1f} images/s "
          "per node = 1 / (1/inference + 1/(cores x decoding)), times the nodes while the "
          "storage keeps up")
    print(f"{'nodes':>8}{'images/s':>10}")
    for nodes in (1, 2, 4, 8, 16):
        print(f"{nodes:>8}{nodes * per_node:>10.1f}")
    print(f"# an accelerator worker inferring R images/s needs R / {decode_rate:.0f} cores of "
          f"decoding beside it (e.g. {1000 / decode_rate:.1f} cores per 1000 images/s)")


if __name__ == "__main__":
    main()
