"""Load test of ``mlcls --serve``: requests/s and latency percentiles at several concurrency
levels, with dynamic batching on and off.

    .venv/bin/python benchmarks/bench_serving.py
    .venv/bin/python benchmarks/bench_serving.py --concurrency 1 8 32 --repeat 5 --visualize

Each mode gets its own server (a child process, as a user would run it); both are started
and warmed up first. Then, for each concurrency level, the modes take turns ``--repeat`` times
(so a change in the machine's load hits both alike), each turn sending ``--requests``
requests from that many client threads, each on its own keep-alive connection. Bodies are
encoded before timing. Printed: the median req/s of the turns, and latency percentiles over
all their requests. The clients share the machine with the server, so on few cores they take
some of its CPU.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from needs import REFERENCE, need_images, need_model_dir, need_module

PATH = "/multilabel-image-classification"
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def load_bodies(image_dir: Path, visualize: bool, limit: int) -> list[bytes]:
    from PIL import Image

    bodies = []
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() not in SUFFIXES:
            continue
        try:
            with Image.open(path) as img:
                img.verify()
        except Exception:  # the reference folder also holds deliberately broken files
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        bodies.append(json.dumps({"image": data, "visualize": visualize}).encode())
        if len(bodies) == limit:
            break
    if not bodies:
        sys.exit(f"no readable images in {image_dir}")
    return bodies


def need_serving(args: argparse.Namespace) -> None:
    """What ``mlcls --serve`` and the clients need, before any server is started."""
    need_model_dir(args.model_dir)
    need_images(args.images)
    for module in ("fastapi", "uvicorn"):
        need_module(module, "pip install 'mlcls[serve]' (the HTTP service)")


class Server:
    """``mlcls --serve`` in a child process on a free port."""

    def __init__(self, args: argparse.Namespace, batching: bool):
        self.log = tempfile.NamedTemporaryFile(prefix="mlcls-serve-", suffix=".log",
                                               delete=False)
        cmd = [sys.executable, "-m", "mlcls.cli", "--serve", "--pipeline",
               "multi_label_image_classification", "--model_dir", str(args.model_dir),
               "--device", args.device, "--port", "0", "--max_queue", "1024",
               "--request_timeout", "300",
               "--max_batch_size", str(args.max_batch_size if batching else 1),
               "--max_wait_ms", str(args.max_wait_ms if batching else 0)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit("the server exited:\n" + Path(self.log.name).read_text())
            for line in Path(self.log.name).read_text(errors="replace").splitlines():
                if "serving on http://" in line:
                    url = line.split("serving on ")[1].split()[0]
                    if self._ready(url):
                        return url
            time.sleep(0.2)
        sys.exit("the server did not start within 300 s")

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            return get_json(url, "/ready")[0] == 200
        except OSError:
            return False

    def stats(self) -> dict:
        return get_json(self.url, "/ready")[1]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        os.unlink(self.log.name)


def get_json(url: str, path: str) -> tuple[int, dict]:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def run_load(url: str, bodies: list[bytes], concurrency: int, total: int) -> dict:
    parsed = urlparse(url)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)
        headers = {"Content-Type": "application/json"}
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                conn.request("POST", PATH, body=bodies[i % len(bodies)], headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                elapsed = time.perf_counter() - started
                with lock:
                    if resp.status == 200:
                        latencies.append(elapsed)
                    else:
                        failures.append(f"{resp.status} {payload[:200]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"latencies": latencies, "failures": failures, "rps": len(latencies) / wall}


def summarise(turns: list[dict]) -> dict:
    """Median req/s over the turns; percentiles over every request of every turn."""
    ms = sorted(x * 1000 for t in turns for x in t["latencies"])
    failures = [f for t in turns for f in t["failures"]]

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))] if ms else float("nan")

    return {"ok": len(ms), "failed": len(failures),
            "rps": statistics.median(t["rps"] for t in turns),
            "p50": pct(50), "p90": pct(90), "p99": pct(99), "errors": failures[:3]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", type=Path, default=REFERENCE / "model" / "PP-LCNet_x1_0_ML")
    p.add_argument("--images", type=Path, default=REFERENCE / "images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=64,
                   help="requests per turn (at least the concurrency)")
    p.add_argument("--repeat", type=int, default=3, help="turns per mode and concurrency")
    p.add_argument("--modes", nargs="+", choices=["on", "off"], default=["on", "off"],
                   help="dynamic batching on and/or off")
    p.add_argument("--max_batch_size", type=int, default=8)
    p.add_argument("--max_wait_ms", type=float, default=5.0)
    p.add_argument("--visualize", action="store_true",
                   help="ask for the visualisation too (drawing + JPEG per request)")
    p.add_argument("--max_images", type=int, default=50)
    args = p.parse_args()
    need_serving(args)
    bodies = load_bodies(args.images, args.visualize, args.max_images)
    print(f"model {args.model_dir.name} on {args.device}; {len(bodies)} images from "
          f"{args.images}; visualize={args.visualize}; {os.cpu_count()} CPU cores; "
          f"batching on = max_batch_size {args.max_batch_size}, max_wait_ms {args.max_wait_ms}")
    header = (f"{'batching':>8} {'conc':>5} {'ok':>5} {'fail':>5} {'req/s':>8} {'p50 ms':>8} "
              f"{'p90 ms':>8} {'p99 ms':>8} {'img/batch':>9}")
    servers: dict[str, Server] = {}
    try:
        for mode in args.modes:
            servers[mode] = Server(args, batching=mode == "on")
            run_load(servers[mode].url, bodies, min(8, max(args.concurrency)), 32)  # warm-up
        print(header)
        print("-" * len(header))
        for conc in args.concurrency:
            turns: dict[str, list[dict]] = {mode: [] for mode in args.modes}
            counts = {mode: [0, 0] for mode in args.modes}
            for _ in range(args.repeat):
                for mode, server in servers.items():
                    before = server.stats()
                    turns[mode].append(run_load(server.url, bodies, conc,
                                                max(args.requests, conc)))
                    after = server.stats()
                    counts[mode][0] += after["images"] - before["images"]
                    counts[mode][1] += after["batches"] - before["batches"]
            for mode in args.modes:
                r = summarise(turns[mode])
                images, batches = counts[mode]
                per_batch = images / batches if batches else 0.0
                print(f"{mode:>8} {conc:>5} {r['ok']:>5} {r['failed']:>5} {r['rps']:>8.1f} "
                      f"{r['p50']:>8.1f} {r['p90']:>8.1f} {r['p99']:>8.1f} {per_batch:>9.2f}",
                      flush=True)
                for err in r["errors"]:
                    print(f"    error: {err}")
    finally:
        for server in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
