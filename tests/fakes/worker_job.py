"""Write a job's chunks straight into a store (chunk data format) and run worker subprocesses on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orca.storage.layout import JobLayout


def write_chunks(store, job_id: str, chunks: list[list[dict]]) -> list[str]:
    """Store each chunk's request lines (dicts with custom_id/method/url/body); returns the chunk ids."""
    layout = JobLayout(job_id)
    ids = []
    for n, lines in enumerate(chunks):
        chunk_id = f"chunk-{n:04d}"
        store.put_bytes(layout.chunk(chunk_id), b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        ids.append(chunk_id)
    return ids


def request(custom_id: str, url: str, body: dict) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def read_committed(store, queue, job_id: str) -> dict[str, list[dict]]:
    """Chunk id -> output lines of its committed generation."""
    layout = JobLayout(job_id)
    return {chunk_id: [json.loads(x) for x in store.get_bytes(layout.chunk_output(chunk_id, gen)).splitlines()]
            for chunk_id, gen in queue.committed_generations().items()}


def spawn_worker(job_id: str, redis_url: str, store_url: str, worker_id: str, *args: str,
                 env: dict[str, str] | None = None, log_dir: Path | None = None) -> subprocess.Popen:
    """``python -m orca.worker`` as a subprocess (stderr to ``log_dir/<worker_id>.log`` when given)."""
    cmd = [sys.executable, "-m", "orca.worker", "--job", job_id, "--redis-url", redis_url, "--store-url", store_url,
           "--pool", "test-pool", "--worker-id", worker_id, *args]
    stderr = open(log_dir / f"{worker_id}.log", "wb") if log_dir else subprocess.DEVNULL
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=stderr)
