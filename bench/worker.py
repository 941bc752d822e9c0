"""Worker saturation bench: does orca keep a fixed-capacity engine as busy as a direct client does?

The engine is the FAKE OpenAI server (orca.worker.engines.fake_server) as a subprocess:
``slots`` requests at once, ``latency_s`` each, i.e. capacity = slots / latency_s req/s.

* ``direct_s``: one asyncio client drives the engine at full concurrency (``slots``
  requests in flight) with the same HTTP client stack the worker uses.
* ``orca_s``: the same requests as chunks in a real redis-server queue and a local
  file store, processed by ``workers`` worker subprocesses sharing the engine
  (``--engine external``, ``slots / workers`` requests in flight each by default), claim,
  output writes and completions included. The clock starts at enqueue (workers
  are already up and polling) and stops when the queue counts every chunk done.
* ``efficiency = direct_s / orca_s`` (1.0: orca loses nothing to chunking, leases
  and commits).

Default latency is 125 ms (not 20 ms) on purpose: on a 2-core machine one Python
HTTP client tops out near 850 req/s, so 64 slots x 20 ms (3,200 req/s) would
measure client CPU, not engine saturation. At 512 req/s both runs are engine-bound.

Prints one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ would be sys.path[0] and its queue.py would shadow the stdlib's.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402

from orca.queue import ChunkQueue  # noqa: E402
from orca.queue.embedded import EmbeddedRedis  # noqa: E402
from orca.queue.worker_metrics import WorkerMetricsStore  # noqa: E402
from orca.storage import open_store  # noqa: E402
from orca.storage.layout import JobLayout  # noqa: E402
from orca.worker.engines.base import free_port  # noqa: E402
from orca.worker.forwarder import ClientPool  # noqa: E402

JOB = "bench-worker"


def body(i: int) -> dict:
    return {"model": "bench", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 16,
            "temperature": 0.5}


def start_engine(slots: int, latency_s: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "orca.worker.engines.fake_server", "--port", str(port),
                             "--slots", str(slots), "--latency-s", str(latency_s)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("fake engine did not start")


async def drive_direct(url: str, n: int, concurrency: int, per_client: int) -> float:
    pool = ClientPool(concurrency, per_client, 60, {})
    payloads = [json.dumps(body(i)).encode() for i in range(n)]
    next_i = 0

    async def lane() -> None:
        nonlocal next_i
        while next_i < n:
            i, next_i = next_i, next_i + 1
            resp = await pool.post(url + "/v1/chat/completions", payloads[i])
            assert resp.status_code == 200
            resp.json()

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await pool.aclose()
    return elapsed


def write_chunks(store, n: int, chunk_size: int) -> list[str]:
    layout = JobLayout(JOB)
    ids = []
    for start in range(0, n, chunk_size):
        chunk_id = f"chunk-{start // chunk_size:05d}"
        data = b"".join(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                                    "body": body(i)}).encode() + b"\n"
                        for i in range(start, min(n, start + chunk_size)))
        store.put_bytes(layout.chunk(chunk_id), data)
        ids.append(chunk_id)
    return ids


def run_orca(url: str, n: int, chunk_size: int, workers: int, worker_concurrency: int, tmp: Path) -> dict:
    redis = EmbeddedRedis(tmp / "redis").start()
    procs: list[subprocess.Popen] = []
    try:
        store_url = f"file://{tmp / 'store'}"
        store = open_store(store_url)
        ids = write_chunks(store, n, chunk_size)
        env = {**os.environ, "ORCA_WORKER__IDLE_POLL_S": "0.02", "ORCA_WORKER__METRICS_EVERY_S": "0.5",
               "ORCA_LOG_LEVEL": "WARNING"}
        for w in range(workers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "orca.worker", "--job", JOB, "--redis-url", redis.url, "--store-url", store_url,
                 "--pool", "bench", "--worker-id", f"bench-w{w}", "--engine", "external", "--engine-url", url,
                 "--max-concurrency", str(worker_concurrency)],
                env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / f"worker-{w}.log", "wb")))
        metrics = WorkerMetricsStore(redis.url, JOB)
        deadline = time.monotonic() + 60
        while sum(m.state == "running" for m in metrics.read()) < workers:  # all up, polling an empty queue
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("workers did not start: see " + str(tmp))
            time.sleep(0.05)
        with ChunkQueue(redis.url, JOB) as queue:
            start = time.perf_counter()
            queue.enqueue_many(ids)
            while not queue.counts().finished:
                time.sleep(0.005)
            elapsed = time.perf_counter() - start
            committed = queue.committed_generations()
        codes = [p.wait(30) for p in procs]
        reports = metrics.read()
        metrics.close()
        layout = JobLayout(JOB)
        lines = sum(len(store.get_bytes(layout.chunk_output(c, g)).splitlines()) for c, g in committed.items())
        return {"orca_s": elapsed, "chunks_committed": len(committed), "output_lines": lines, "exit_codes": codes,
                "worker_requests": [r.requests_total for r in reports]}
    finally:
        for p in procs:
            p.kill()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--latency-s", type=float, default=0.125)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=None,
                        help="requests in flight per worker (default: slots / workers, so orca never has more "
                             "in flight than the direct client)")
    args = parser.parse_args()
    worker_concurrency = args.worker_concurrency or max(1, args.slots // args.workers)
    engine, url = start_engine(args.slots, args.latency_s)
    try:
        direct_s = asyncio.run(drive_direct(url, args.requests, args.slots, 8))
        with tempfile.TemporaryDirectory(prefix="orca-bench-worker-") as tmp:
            orca = run_orca(url, args.requests, args.chunk_size, args.workers, worker_concurrency, Path(tmp))
    finally:
        engine.kill()
    ideal_s = args.requests / args.slots * args.latency_s
    print(json.dumps({
        "bench": "worker", "requests": args.requests, "chunk_size": args.chunk_size, "workers": args.workers,
        "worker_concurrency": worker_concurrency,
        "engine_slots": args.slots, "engine_latency_s": args.latency_s,
        "engine_capacity_rps": round(args.slots / args.latency_s, 1), "ideal_s": round(ideal_s, 3),
        "direct_s": round(direct_s, 3), "orca_s": round(orca["orca_s"], 3),
        "efficiency": round(direct_s / orca["orca_s"], 4),
        "chunks_committed": orca["chunks_committed"], "output_lines": orca["output_lines"],
        "worker_exit_codes": orca["exit_codes"], "worker_requests": orca["worker_requests"],
    }))


if __name__ == "__main__":
    main()
