"""Chunk queue throughput against redis-server's own PING rate, measured in the same run.

Starts an embedded redis-server (AOF on, appendfsync everysec, as orca runs it), then
alternates two phases, each with 4 client processes (one connection each) for a fixed time:

* baseline: ``PING`` round trips;
* queue: ``claim(n=1)`` + ``complete`` cycles through ``ChunkQueue`` (Lua scripts, retry
  wrapper and all), every process its own worker id.

Prints one JSON object: claims/completes per second (one of each per cycle), the ping rate,
``ratio_vs_ping`` = cycles/s / ping/s (a cycle is two round trips, so 0.5 is the ceiling)
and ``per_op_ratio_vs_ping`` = (2 x cycles/s) / ping/s. Target: per-op ratio >= 0.25.
Usage: ``python bench/queue.py [--seconds 3] [--rounds 3] [--clients 4]``.
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/queue.py`, this file's folder is first on sys.path and its name
# would shadow the standard library's `queue` (which redis-py and multiprocessing import).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from orca.queue import ChunkQueue  # noqa: E402
from orca.queue.connection import RedisConnection  # noqa: E402
from orca.queue.embedded import EmbeddedRedis  # noqa: E402
from orca.settings import QueueSettings  # noqa: E402

SETTINGS = QueueSettings(lease_s=600)  # no lease expires during a run


def _client(kind: str, url: str, job: str, seconds: float, index: int, ready, go, results) -> None:
    if kind == "ping":
        conn = RedisConnection(url, SETTINGS)
        conn.client.ping()  # connect before the clock starts

        def op() -> bool:
            conn.client.ping()
            return True
    else:
        q = ChunkQueue(url, job, SETTINGS)
        q.counts()
        worker = f"bench-{index}"

        def op() -> bool:
            leases = q.claim(worker, "bench", n=1)
            if not leases:
                return False
            q.complete(leases[0])
            return True
    ready.release()
    go.wait()
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        if not op():
            break
        done += 1
    results.put((done, time.perf_counter() - started))


def _phase(kind: str, url: str, job: str, seconds: float, clients: int) -> float:
    """Aggregate operations (pings or cycles) per second over ``clients`` processes."""
    ctx = mp.get_context("fork")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(kind, url, job, seconds, i, ready, go, results))
             for i in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    go.set()
    rates = [n / elapsed for n, elapsed in (results.get(timeout=seconds + 60) for _ in procs)]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="ping/queue phase pairs (interleaved)")
    parser.add_argument("--clients", type=int, default=4, help="client processes per phase")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="orca-bench-queue-") as tmp:
        server = EmbeddedRedis(Path(tmp)).start()
        try:
            ping_rates, cycle_rates = [], []
            for r in range(args.rounds):
                job = f"bench{r}"
                with ChunkQueue(server.url, job, SETTINGS) as q:
                    q.enqueue_many(f"c{i}" for i in range(100_000))  # more than a phase can take
                    ping_rates.append(_phase("ping", server.url, job, args.seconds, args.clients))
                    cycle_rates.append(_phase("queue", server.url, job, args.seconds, args.clients))
                    counts = q.counts()
                    if counts.pending == 0 or counts.leased != 0 or counts.done == 0:
                        raise SystemExit(f"round {r}: the queue phase was not measured cleanly: {counts}")
                    q.delete()
                print(f"round {r}: ping {ping_rates[-1]:.0f}/s, claim+complete {cycle_rates[-1]:.0f} cycles/s",
                      file=sys.stderr)
        finally:
            server.stop()

    ping = sum(ping_rates) / len(ping_rates)
    cycles = sum(cycle_rates) / len(cycle_rates)
    print(json.dumps({
        "claims_per_s": round(cycles),
        "completes_per_s": round(cycles),
        "cycles_per_s": round(cycles),
        "redis_ping_per_s": round(ping),
        "ratio_vs_ping": round(cycles / ping, 3),
        "per_op_ratio_vs_ping": round(2 * cycles / ping, 3),
        "target_per_op_ratio": 0.25,
        "clients": args.clients,
        "seconds_per_phase": args.seconds,
        "rounds": args.rounds,
        "appendfsync": "everysec",
        "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
