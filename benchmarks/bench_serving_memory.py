"""Memory of ``mlcls --serve`` under sustained load: the server's resident memory (VmRSS)
after start-up and after each round of requests from concurrent clients.

    .venv/bin/python benchmarks/bench_serving_memory.py
    .venv/bin/python benchmarks/bench_serving_memory.py --rounds 3 --requests 1600 \
        --concurrency 32 --visualize

Uses the parity fixture's model and images (``MLCLS_REFERENCE_DIR``, default
``../shared/reference``) through ``bench_serving``'s server and clients. Memory that keeps
growing round after round is a leak; growth that stops after the first round or two is the
allocator and the caches settling.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serving import REFERENCE, Server, load_bodies, need_serving, run_load  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_dir", type=Path, default=REFERENCE / "model" / "PP-LCNet_x1_0_ML")
    p.add_argument("--images", type=Path, default=REFERENCE / "images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=1600, help="requests per round")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max_batch_size", type=int, default=8)
    p.add_argument("--max_wait_ms", type=float, default=5.0)
    p.add_argument("--visualize", action="store_true", help="ask for the drawn result too")
    p.add_argument("--max_images", type=int, default=50)
    args = p.parse_args()
    need_serving(args)
    bodies = load_bodies(args.images, args.visualize, args.max_images)
    server = Server(args, batching=True)
    try:
        print(f"{'after':>14} {'RSS MiB':>8} {'req/s':>7} {'failed':>6}")
        print(f"{'start-up':>14} {rss_mib(server.proc.pid):8.0f}")
        for r in range(1, args.rounds + 1):
            out = run_load(server.url, bodies, args.concurrency, args.requests)
            print(f"{f'round {r} ({r * args.requests})':>14} {rss_mib(server.proc.pid):8.0f} "
                  f"{out['rps']:7.1f} {len(out['failures']):6d}", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
