"""mlcls (each engine) against PaddleX on the same model, images and thread budget, side by side.

    .venv/bin/python benchmarks/bench_pipeline.py [--paddlex-python ~/paddlex-env/bin/python]
        [--engines auto,paddle,onnxruntime,openvino] [--paddlex-threads 2]

Each measurement runs in its own fresh subprocess (so cold start and peak RSS are real), the
repetitions are interleaved (mlcls b1, mlcls b8, PaddleX b1, PaddleX b8, then PaddleX first,
and so on) and the table shows medians, so that drift in a shared machine's speed hits both
sides alike. Each mlcls engine in ``--engines`` is a side of its own (``auto`` is mlcls's
default choice); the ratio columns are each side's advantage over PaddleX (> 1: better).

Per worker process (one framework, one batch size):
  cold start   process exec -> the first result of ``predict(<one image>)``, split into the
               import, the pipeline's creation and that first prediction;
  latency      wall time of ``predict(<B paths>)`` up to its last result, over the images in
               consecutive groups of B, divided by B (per image); median and p90;
  throughput   images/s of one ``predict(<all paths>)`` stream at batch size B, after a
               warm-up pass over the same paths (so every batch shape has been seen once);
  CPU time     the process's CPU seconds (every thread, spinning included) per image during
               that stream: steadier than wall time on a shared machine;
  peak RSS     the process's ``ru_maxrss`` at the end.
and, in a process of its own per side and repetition:
  whole run    exec -> exit of a process that tags every image once at batch 8 (import,
               pipeline creation, all images, exit), timed by the parent.
mlcls's b1 workers also time each stage of its pipeline one image at a time (decode, resize,
normalise, inference, postprocess) and the same stages back to back over all the images.

This file is also the worker (``--worker mlcls|paddlex``): it imports nothing outside the
standard library at the top, so PaddleX's own interpreter can run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLCLS_SHARED_DIR") or REPO.parent / "shared")
REFERENCE = Path(os.environ.get("MLCLS_REFERENCE_DIR") or SHARED / "reference")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
BATCHES = (1, 8)
# Environment variable through which the parent hands its exec timestamp to the worker.
ENV_T0 = "MLCLS_BENCH_T0"


# -- worker side ---------------------------------------------------------------------------------

def _paths(images: str) -> list[str]:
    return sorted(str(p) for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _mlcls_factory(model: str, batch: int, threads: int, options: dict[str, int],
                   engine: str = "auto"):
    t = time.perf_counter()
    import mlcls
    from mlcls import create_pipeline  # noqa: F401 - the import a user's program does
    t_import = time.perf_counter() - t

    # The thread budget is shared by the side's streams: its own, else devices.yaml's for its
    # engine (for auto, the first of the cpu's engines).
    from mlcls.catalogue import load_catalogue
    cat = load_catalogue()
    name = engine if engine != "auto" else (cat.entry("cpu").engines or ("paddle",))[0]
    streams = (options.get("streams") or cat.options_for(name, "cpu").get("streams")
               or cat.entry("cpu").options.get("streams") or 1)
    options = {"threads": max(1, threads // streams)} | options

    def create():
        pipeline = create_pipeline("multi_label_image_classification", device="cpu",
                                   model_dir=model, batch_size=batch, engine=engine,
                                   device_options=options)
        placement = pipeline.placements[0]
        return pipeline, (f"{placement.engine}: {placement.detail}; "
                          f"streams: {pipeline.streams}")

    def labels(res) -> list[int]:
        return list(res["class_ids"])

    return t_import, create, labels, f"mlcls {mlcls.__version__} from {Path(mlcls.__file__).parent}"


def _paddlex_factory(model: str, batch: int, threads: int):
    # PaddleX reads its CPU thread count from this variable (PaddlePredictorOption's default).
    os.environ["PADDLE_PDX_CPU_NUM_THREADS"] = str(threads)
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    t = time.perf_counter()
    import paddlex
    from paddlex import create_pipeline
    t_import = time.perf_counter() - t
    template = (REFERENCE / "paddlex_pipeline.yaml").read_text()
    yaml_text = template.replace("MODEL_DIR", model).replace("BATCH", str(batch))

    def create():
        import yaml  # PaddleX depends on PyYAML

        config = yaml.safe_load(yaml_text)
        pipeline = create_pipeline(config=config, device="cpu")
        return pipeline, f"PaddleX defaults, PADDLE_PDX_CPU_NUM_THREADS={threads}"

    def labels(res) -> list[int]:
        return [int(c) for c in res["class_ids"]]

    return t_import, create, labels, f"paddlex {paddlex.__version__}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _mlcls_stages(pipeline, paths: list[str]) -> dict[str, float]:
    """Median ms per image of each stage of mlcls's pipeline, run one after another on this
    thread (no overlap), one image at a time."""
    from mlcls.inputs import read_file

    times: dict[str, list[float]] = {k: [] for k in STAGES}
    predictor = pipeline.predictors[0]
    start = time.perf_counter()
    for path in paths:
        marks = [time.perf_counter()]
        image = read_file(path)
        marks.append(time.perf_counter())
        prepared = pipeline.preprocessor.prepare(image)
        marks.append(time.perf_counter())
        batch = pipeline.preprocessor.collate([prepared])
        marks.append(time.perf_counter())
        scores = predictor.run(batch)
        marks.append(time.perf_counter())
        pipeline.postprocessor(scores, None)
        marks.append(time.perf_counter())
        for name, a, b in zip(STAGES, marks, marks[1:]):
            times[name].append((b - a) * 1e3)
    medians = {name: statistics.median(v) for name, v in times.items()}
    medians[SEQUENTIAL] = len(paths) / (time.perf_counter() - start)
    return medians


STAGES = ("decode (read + cv2.imdecode + BGR->RGB)", "resize (PIL bilinear)",
          "normalise + CHW (collate)", "inference (the engine's predictor)", "postprocess")
SEQUENTIAL = "sequential img/s"


def _factory(args: argparse.Namespace):
    if args.worker == "mlcls":
        return _mlcls_factory(args.model, args.batch, args.threads, args.option,
                              engine=args.engine)
    return _paddlex_factory(args.model, args.batch, args.threads)


def run_whole(args: argparse.Namespace) -> dict:
    """Tag every image once and exit: what a user's one-off run costs (the parent times it
    from exec to exit)."""
    paths = _paths(args.images)
    _, create, _, _ = _factory(args)
    pipeline, _ = create()
    n = sum(1 for _ in pipeline.predict(paths))
    return {"images": n, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(args: argparse.Namespace) -> dict:
    t0 = float(os.environ.get(ENV_T0) or time.time())
    paths = _paths(args.images)
    t_import, create, labels, version = _factory(args)
    t = time.perf_counter()
    pipeline, engine = create()
    t_create = time.perf_counter() - t
    t = time.perf_counter()
    first = next(iter(pipeline.predict(paths[0])))
    t_first = time.perf_counter() - t
    cold = time.time() - t0
    del first

    latencies = []
    for i in range(0, len(paths) - args.batch + 1, args.batch):
        group = paths[i:i + args.batch]
        t = time.perf_counter()
        n = sum(1 for _ in pipeline.predict(group))
        latencies.append((time.perf_counter() - t) / n)

    found = {}
    for res in pipeline.predict(paths):  # warm-up: every batch shape once
        found[Path(res["input_path"]).name] = labels(res)
    t, cpu = time.perf_counter(), time.process_time()
    n = sum(1 for _ in pipeline.predict(paths))
    throughput = n / (time.perf_counter() - t)
    cpu_ms = (time.process_time() - cpu) / n * 1e3
    stages = _mlcls_stages(pipeline, paths) if args.worker == "mlcls" and args.batch == 1 \
        else {}
    if hasattr(pipeline, "close"):
        pipeline.close()
    return {
        "framework": args.worker, "version": version, "engine": engine, "batch": args.batch,
        "stages": stages,
        "images": len(paths), "cold_s": cold, "import_s": t_import, "create_s": t_create,
        "first_s": t_first, "lat_median_ms": statistics.median(latencies) * 1e3,
        "lat_p90_ms": _percentile(latencies, 0.9) * 1e3, "throughput": throughput,
        "cpu_ms": cpu_ms,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "labels": found,
    }


# -- parent side ---------------------------------------------------------------------------------

def spawn(side: Side, batch: int, args: argparse.Namespace, whole: bool = False) -> dict:
    env = dict(os.environ)
    env.update({"GLOG_minloglevel": "2", "PYTHONWARNINGS": "ignore"})
    threads = args.threads
    if side.framework == "paddlex":
        env.update(args.paddlex_env)
        threads = args.paddlex_threads or args.threads
    cmd = [side.python, str(Path(__file__).resolve()), "--worker", side.framework,
           "--batch", str(batch), "--threads", str(threads), "--model", args.model,
           "--images", args.images, "--engine", side.engine]
    for key, value in side.options:
        cmd += ["--option", f"{key}={value}"]
    if whole:
        cmd.append("--whole")
    with tempfile.TemporaryFile("w+") as err:
        env[ENV_T0] = repr(time.time())
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                              timeout=args.timeout)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read()[-3000:]
            raise SystemExit(f"{side.name} worker (batch {batch}) failed with exit status "
                             f"{proc.returncode}:\n{tail}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["whole_s"] = wall
    return out


@dataclass(frozen=True)
class Side:
    name: str  # column title
    framework: str  # mlcls | paddlex
    python: str
    engine: str = "auto"
    options: tuple[tuple[str, int], ...] = ()  # mlcls device options of this side


def parse_side(text: str) -> Side:
    """``ENGINE`` or ``ENGINE+KEY=N+KEY=N`` (mlcls device options, e.g. auto+streams=1)."""
    engine, *pairs = text.split("+")
    options = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not value.isdigit():
            raise SystemExit(f"--engines: {text!r}: options are KEY=N, e.g. auto+streams=1")
        options.append((key, int(value)))
    name = "mlcls" if engine == "auto" else f"mlcls-{engine}"
    name += "".join(f"+{k}={v}" for k, v in options)
    return Side(name, "mlcls", sys.executable, engine, tuple(options))


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _ratio(mine: float, theirs: float, higher_is_better: bool) -> str:
    """How many times better mlcls is (> 1 = mlcls better)."""
    if not mine or not theirs:
        return "-"
    return f"{(mine / theirs if higher_is_better else theirs / mine):.2f}x"


ROWS = [  # (label, key, format, higher is better)
    ("throughput b{b} (img/s)", "throughput", "{:.1f}", True),
    ("CPU time b{b}, all threads (ms/img)", "cpu_ms", "{:.1f}", False),
    ("latency b{b} median (ms/img)", "lat_median_ms", "{:.1f}", False),
    ("latency b{b} p90 (ms/img)", "lat_p90_ms", "{:.1f}", False),
    ("cold start b{b}: exec -> 1st result (s)", "cold_s", "{:.2f}", False),
    ("  of which import (s)", "import_s", "{:.2f}", False),
    ("  of which create pipeline (s)", "create_s", "{:.2f}", False),
    ("  of which 1st predict (s)", "first_s", "{:.2f}", False),
    ("peak RSS b{b} (MB)", "rss_mb", "{:.0f}", False),
]


def table(results: dict[tuple[str, int], list[dict]], names: list[str]) -> str:
    """One column per side; with PaddleX measured, one ratio column per mlcls side."""
    mine = [n for n in names if n != "paddlex"]
    ratios = "paddlex" in names
    head = [f"measure (median of {len(next(iter(results.values())))})", *names]
    if ratios:
        head += [f"{n}/PaddleX" for n in mine]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in BATCHES:
        for label, key, fmt, higher in ROWS:
            if key in ("import_s",) and b != BATCHES[0]:
                continue
            cells = [label.format(b=b)]
            values = {n: median_of(results[(n, b)], key) for n in names}
            cells += [fmt.format(values[n]) for n in names]
            if ratios:
                cells += [_ratio(values[n], values["paddlex"], higher) for n in mine]
            lines.append("| " + " | ".join(cells) + " |")
    if (names[0], WHOLE) in results:
        values = {n: median_of(results[(n, WHOLE)], "whole_s") for n in names}
        cells = [f"whole run: exec -> exit, {len(results[(names[0], WHOLE)])} runs, "
                 f"all images at b{WHOLE_BATCH} (s)"]
        cells += [f"{values[n]:.2f}" for n in names]
        if ratios:
            cells += [_ratio(values[n], values["paddlex"], False) for n in mine]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def agreement(results: dict[tuple[str, int], list[dict]], name: str) -> str:
    a = results[(name, 1)][0]["labels"]
    b = results[("paddlex", 1)][0]["labels"]
    same = sum(1 for k in a if a[k] == b.get(k))
    return (f"{name}: label sets at the model's threshold identical to PaddleX's for "
            f"{same}/{len(a)} images")


WHOLE = 0  # results key of the whole-run measurements
WHOLE_BATCH = 8


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paddlex-python", help="python of an environment with paddlex installed "
                   "(also measures PaddleX, side by side)")
    p.add_argument("--paddlex-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the PaddleX processes only (repeatable)")
    p.add_argument("--model", default=str(REFERENCE / "model" / "PP-LCNet_x1_0_ML"))
    p.add_argument("--images", default=str(REFERENCE / "images"))
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="inference threads for every side (default: the available cores)")
    p.add_argument("--paddlex-threads", type=int, metavar="N",
                   help="PaddleX's threads instead of --threads (its best here: 2; its "
                   "default: 10)")
    p.add_argument("--engines", default="auto",
                   help="mlcls engines to measure, comma separated, each a side of its own "
                   "(auto = mlcls's default choice; e.g. auto,paddle,onnxruntime,openvino); "
                   "ENGINE+KEY=N+... gives the side device options, e.g. auto+streams=1")
    p.add_argument("--no-whole", action="store_true",
                   help="skip the whole-run processes (exec -> exit)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (median)")
    p.add_argument("--option", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--only", choices=["mlcls", "paddlex"], help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write every run's figures to this file")
    p.add_argument("--timeout", type=float, default=600, help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["mlcls", "paddlex"], help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--engine", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    pairs = [item.partition("=") for item in args.paddlex_env]
    if any(not name or not eq for name, eq, _ in pairs):
        p.error(f"--paddlex-env takes NAME=VALUE, got {args.paddlex_env}")
    args.paddlex_env = {name: value for name, _, value in pairs}
    args.option = {k: int(v) for k, _, v in (o.partition("=") for o in args.option)}
    args.model = str(Path(args.model).expanduser().resolve())
    args.images = str(Path(args.images).expanduser().resolve())
    if args.worker:
        print(json.dumps(run_whole(args) if args.whole else run_worker(args)))
        return 0

    # checked here, in the parent: a worker may run in PaddleX's environment
    from needs import need_file, need_images, need_model_dir, need_module

    need_model_dir(args.model, "--model")
    need_images(args.images, at_least=max(*BATCHES, WHOLE_BATCH))
    if args.paddlex_python and args.only != "mlcls":
        need_module("paddlex", "install PaddleX 3.7.2 there as shared/reference/README.md "
                    "says ('Running PaddleX beside mlcls')", python=args.paddlex_python)
        need_file(REFERENCE / "paddlex_pipeline.yaml", "PaddleX's pipeline template")

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    sides = [parse_side(e) for e in engines]
    if args.paddlex_python:
        sides.append(Side("paddlex", "paddlex", str(Path(args.paddlex_python).expanduser())))
    if args.only:
        sides = [s for s in sides if s.framework == args.only]
    results: dict[tuple[str, int], list[dict]] = {}
    for rep in range(args.repeat):
        # Alternate who goes first, so that a slow spell does not always hit the same side.
        for side in (sides if rep % 2 == 0 else sides[::-1]):
            for b in BATCHES:
                r = spawn(side, b, args)
                results.setdefault((side.name, b), []).append(r)
                print(f"rep {rep + 1} {side.name:17s} b{b}: {r['throughput']:.1f} img/s, "
                      f"{r['lat_median_ms']:.1f} ms/img, cold {r['cold_s']:.2f} s, "
                      f"{r['rss_mb']:.0f} MB", file=sys.stderr, flush=True)
            if not args.no_whole:
                r = spawn(side, WHOLE_BATCH, args, whole=True)
                results.setdefault((side.name, WHOLE), []).append(r)
                print(f"rep {rep + 1} {side.name:17s} whole run b{WHOLE_BATCH}: "
                      f"{r['whole_s']:.2f} s", file=sys.stderr, flush=True)
    frameworks = [s.name for s in sides]
    first = {f: results[(f, 1)][0] for f in frameworks}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0))} available), {_cpu_name()}; "
          f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"model: {args.model}; images: {first[frameworks[0]]['images']} from {args.images}")
    for f in frameworks:
        print(f"{f}: {first[f]['version']}; engine: {first[f]['engine']}")
    for name in ("KMP_BLOCKTIME", "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        if name in os.environ:
            print(f"environment of both sides: {name}={os.environ[name]}")
    if args.paddlex_env:
        print("environment of PaddleX only: "
              + " ".join(f"{k}={v}" for k, v in args.paddlex_env.items()))
    print(f"thread budget: {args.threads} inference threads on each mlcls side (shared by its "
          f"streams), "
          f"{args.paddlex_threads or args.threads} for PaddleX\n")
    print(table(results, frameworks))
    if "paddlex" in frameworks:
        print()
        for name in frameworks:
            if name != "paddlex":
                print(agreement(results, name))
    for name in frameworks:
        if name == "paddlex":
            continue
        runs = results[(name, 1)]
        print(f"\n{name} stages, one image at a time with no overlap (ms/img, median of the "
              f"{len(runs)} b1 runs' medians):")
        total = 0.0
        for stage in STAGES:
            value = statistics.median(r["stages"][stage] for r in runs)
            total += value
            print(f"  {stage:42s} {value:6.2f}")
        print(f"  {'sum':42s} {total:6.2f}")
        seq = [r["stages"][SEQUENTIAL] for r in runs if SEQUENTIAL in r["stages"]]
        if seq:
            gains = [r["throughput"] / r["stages"][SEQUENTIAL] for r in runs
                     if SEQUENTIAL in r["stages"]]
            print(f"the same stages back to back on one thread: {statistics.median(seq):.1f} "
                  f"img/s; the b1 stream through predict() was "
                  f"{statistics.median(gains):.2f}x that (median of per-run ratios: "
                  + ", ".join(f"{g:.2f}" for g in gains) + ")")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{k[0]} b{k[1]}": v for k, v in
                                               results.items()}, indent=1))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
