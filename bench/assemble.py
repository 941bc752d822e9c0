"""Assembly throughput: 1,000,000 output lines in 1,000 chunks merged into output/errors files, against `cat`.

Prints one JSON object: ``assemble_mb_per_s`` (bytes of committed chunk outputs merged per
second, default settings, fsync included), ``cat_mb_per_s`` (``cat`` of the same chunk output
files to /dev/null, median of 3), their ratio, and ``peak_rss_mb`` of the assembly (run in a child
process; RUSAGE_CHILDREN ru_maxrss). For context it also reports, measured in the same run, what
bounds any assembler on this machine: ``copy_fsync_mb_per_s`` and ``ratio_vs_copy_fsync`` (the same
chunk outputs copied into one new file on the same disk in 4 MB blocks, then fsync: the floor of
writing the result durably), and ``copy_mb_per_s`` and ``copy_ratio_vs_cat`` (the same copy without
fsync, into the page cache, median of 3: the ceiling of any assembler, which must write those bytes).

The job is shaped like a real one: chunks come from orca's own splitter over requests in 20
shared-prefix groups (so chunks interleave across the input), output lines are chat
completion responses of a few hundred bytes, 2% are error lines, and 5 chunks are dead.
``--lines N --chunks K`` size it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# bench/ holds a queue.py that would shadow the standard library's queue module for this script.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np

CHILD = """
import json, sys, time
from orca.assembler import assemble
from orca.storage import open_store
store = open_store(sys.argv[1])
committed, dead = json.loads(sys.argv[2]), json.loads(sys.argv[3])
t0 = time.perf_counter()
r = assemble(store, "bench", committed, dead)
print(json.dumps({"seconds": time.perf_counter() - t0, "completed": r.completed, "failed": r.failed, "total": r.total}))
"""

OK_LINE = ('{{"id":"batch_req_{n:08x}","custom_id":"request-{n}","response":{{"status_code":200,"request_id":"req_{n:08x}",'
           '"body":{{"id":"chatcmpl-{n}","object":"chat.completion","created":1700000000,"model":"meta-llama/Llama-3.1-8B-Instruct",'
           '"choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}],'
           '"usage":{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{t}}}}}}},"error":null}}\n')
ERR_LINE = ('{{"id":"batch_req_{n:08x}","custom_id":"request-{n}","response":null,'
            '"error":{{"code":"engine_error","message":"the engine returned 500 three times"}}}}\n')
IN_LINE = ('{{"custom_id":"request-{n}","method":"POST","url":"/v1/chat/completions","body":{{"model":"m",'
           '"messages":[{{"role":"user","content":"question {n}"}}],"max_tokens":128}}}}\n')


def build(store, n_lines: int, n_chunks: int) -> tuple[dict, dict, int]:
    """Write manifests, chunk data objects and committed outputs; returns (committed, dead, output bytes)."""
    from orca.ingest.split import split_chunks
    from orca.storage.layout import JobLayout

    rng = np.random.default_rng(7)
    layout = JobLayout("bench")
    tokens = rng.integers(100, 1500, n_lines)
    chunks = split_chunks(tokens, rng.integers(0, 20, n_lines), budget=int(tokens.sum() // n_chunks) + 1,
                          min_requests=1, max_requests=10**6)
    words = "the quick brown fox jumps over the lazy dog and answers every question in the batch".split()
    texts = [" ".join(rng.choice(words, 60)) for _ in range(64)]
    dead_ids = {f"chunk-{i:06d}" for i in rng.choice(len(chunks), 5, replace=False)}
    committed, dead, out_bytes = {}, {}, 0
    with store.open_write(layout.manifests) as mf:
        for k, idx in enumerate(chunks):
            cid = f"chunk-{k:06d}"
            lines = (idx + 1).tolist()
            mf.write(json.dumps({"job_id": "bench", "chunk_id": cid, "lines": lines, "est_tokens": int(tokens[idx].sum())}).encode() + b"\n")
            store.put_bytes(layout.chunk(cid), "".join(IN_LINE.format(n=n - 1) for n in lines).encode())
            if cid in dead_ids:
                dead[cid] = "preempted 3 times"
                continue
            out = "".join((ERR_LINE.format(n=n - 1) if (n * 2654435761) % 50 == 0 else
                           OK_LINE.format(n=n - 1, text=texts[n % 64], p=40, c=60, t=100)) for n in lines).encode()
            store.put_bytes(layout.chunk_output(cid, 1), out)
            committed[cid] = 1
            out_bytes += len(out)
    return committed, dead, out_bytes


def copy_seconds(sources: list[str], dst: str, fsync: bool) -> float:
    """Seconds to copy ``sources`` into ``dst`` in 4 MB blocks (then fsync it, if asked)."""
    t0 = time.perf_counter()
    with open(dst, "wb", buffering=0) as fout:
        for src in sources:
            with open(src, "rb", buffering=0) as fin:
                while block := fin.read(4 << 20):
                    fout.write(block)
        if fsync:
            os.fsync(fout.fileno())
    seconds = time.perf_counter() - t0
    os.unlink(dst)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--chunks", type=int, default=1_000)
    args = ap.parse_args()
    from orca.settings import StoreSettings
    from orca.storage import open_store

    with tempfile.TemporaryDirectory(prefix="orca-bench-assemble-") as tmp:
        store_dir = os.path.join(tmp, "store")
        committed, dead, out_bytes = build(open_store("file://" + store_dir, StoreSettings(local_fsync=False)),
                                           args.lines, args.chunks)
        outputs = os.path.join(store_dir, "jobs", "bench", "outputs")
        cats = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(f"cat {outputs}/*/gen-*.jsonl > /dev/null", shell=True, check=True)
            cats.append(time.perf_counter() - t0)
        sources, dst = sorted(glob.glob(f"{outputs}/*/gen-*.jsonl")), os.path.join(tmp, "copy.jsonl")
        copy_fsync_s = copy_seconds(sources, dst, fsync=True)
        copy_s = statistics.median(copy_seconds(sources, dst, fsync=False) for _ in range(3))
        child = subprocess.run([sys.executable, "-c", CHILD, "file://" + store_dir, json.dumps(committed), json.dumps(dead)],
                               capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(child.stderr)
        res = json.loads(child.stdout)
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        mb = out_bytes / 1e6
        rate, cat_rate = mb / res["seconds"], mb / statistics.median(cats)
        copy_fsync_rate, copy_rate = mb / copy_fsync_s, mb / copy_s
        print(json.dumps({
            "lines": res["total"], "chunks": len(committed) + len(dead), "output_mb": round(mb, 1),
            "completed": res["completed"], "failed": res["failed"],
            "assemble_mb_per_s": round(rate, 1), "cat_mb_per_s": round(cat_rate, 1),
            "ratio": round(rate / cat_rate, 4), "peak_rss_mb": round(rss_mb, 1),
            "copy_fsync_mb_per_s": round(copy_fsync_rate, 1), "ratio_vs_copy_fsync": round(rate / copy_fsync_rate, 3),
            "copy_mb_per_s": round(copy_rate, 1), "copy_ratio_vs_cat": round(copy_rate / cat_rate, 4),
        }))


if __name__ == "__main__":
    main()
