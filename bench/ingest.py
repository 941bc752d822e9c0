"""Ingest throughput: validate + split a generated batch file into the local store, against `cat` of the same file.

Prints one JSON object: ``validate_split_mb_per_s`` (ingest of the input already in the local
store: pass 1 validation, splitting, writing chunk data objects and manifests, default settings,
fsync included), ``cat_mb_per_s`` (``cat FILE > /dev/null`` of the same file, median of 3), their
ratio, and ``peak_rss_mb`` of the ingest (run in a child process; RUSAGE_CHILDREN ru_maxrss).
For context it also reports, measured in the same run, what bounds any ingest on this machine:

- ``copy_fsync_mb_per_s`` and ``ratio_vs_copy_fsync``: copying the same file in 4 MB blocks to
  a new file on the same disk, then fsync (the floor of an ingest that stores durable chunk copies);
- ``copy_mb_per_s`` and ``copy_ratio_vs_cat``: the same copy without fsync, into the page cache
  (median of 3), the ceiling of any ingest that writes the input's bytes again;
- ``json_validate_mb_per_s`` and ``json_validate_ratio_vs_cat``: reading the file in 4 MB
  blocks and checking each line is JSON with msgspec (``msgspec.Raw``: syntax only, no fields),
  the ceiling of a validator that parses each line from Python.

The input is realistic chat traffic: 20 shared system prompts (~600 chars), user prompts of
200-3,000 chars, a mix of max_tokens, written with ``json.dumps`` defaults (ASCII with \\u
escapes, as the OpenAI cookbook's files are). ``--mb N`` sizes it (default 500).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# bench/ holds a queue.py that would shadow the standard library's queue module for this script.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

WORDS = ("the model batch request answer question data token quick brown fox jumps over lazy dog summarize "
         "following text please explain why how what when résumé naïve über 日本語").split()


def generate(path: str, mb: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    pool = " ".join(rng.choice(WORDS) for _ in range(400_000))
    systems = [f"You are a helpful assistant #{i}. " + pool[i * 700: i * 700 + 600] for i in range(20)]
    target, size, n = mb * 1024 * 1024, 0, 0
    with open(path, "w") as f:
        while size < target:
            start = rng.randrange(0, len(pool) - 4000)
            body = {"model": "meta-llama/Llama-3.1-8B-Instruct",
                    "messages": [{"role": "system", "content": rng.choice(systems)},
                                 {"role": "user", "content": pool[start: start + rng.randrange(200, 3000)]}],
                    "max_tokens": rng.choice([64, 128, 256, 512, 1024]), "temperature": 0.7}
            line = json.dumps({"custom_id": f"request-{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"
            f.write(line)
            size += len(line)
            n += 1
    return n


def copy_seconds(src: str, dst: str, fsync: bool) -> float:
    """Seconds to copy ``src`` to ``dst`` in 4 MB blocks (then fsync it, if asked)."""
    t0 = time.perf_counter()
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        while block := fin.read(4 << 20):
            fout.write(block)
        if fsync:
            os.fsync(fout.fileno())
    seconds = time.perf_counter() - t0
    os.unlink(dst)
    return seconds


def json_validate_seconds(path: str) -> float:
    """Seconds to read ``path`` in 4 MB blocks of whole lines and check each line is JSON (msgspec, syntax only)."""
    import msgspec

    check = msgspec.json.Decoder(msgspec.Raw).decode
    t0 = time.perf_counter()
    rest = b""
    with open(path, "rb", buffering=0) as f:
        while block := f.read(4 << 20):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            for line in data[:cut].split(b"\n")[:-1]:
                check(line)
        if rest:
            check(rest)
    return time.perf_counter() - t0


CHILD = """
import json, sys, time
from orca.ingest import ingest
from orca.storage import open_store
store = open_store(sys.argv[1])
t0 = time.perf_counter()
r = ingest(store, "bench")
print(json.dumps({"seconds": time.perf_counter() - t0, "ok": r.ok, "n_requests": r.n_requests, "chunks": len(r.manifests)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="orca-bench-ingest-") as tmp:
        src = os.path.join(tmp, "batch.jsonl")
        n = generate(src, args.mb)
        size = os.path.getsize(src)
        store_dir = os.path.join(tmp, "store")
        from orca.storage import open_store
        from orca.storage.layout import JobLayout

        store = open_store("file://" + store_dir)
        store.put_file(JobLayout("bench").input, src)
        os.unlink(src)
        stored = store.local_path(JobLayout("bench").input)
        cats = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(f"cat '{stored}' > /dev/null", shell=True, check=True)
            cats.append(time.perf_counter() - t0)
        copy_fsync_s = copy_seconds(stored, os.path.join(tmp, "copy.jsonl"), fsync=True)
        copy_s = statistics.median(copy_seconds(stored, os.path.join(tmp, "copy.jsonl"), fsync=False) for _ in range(3))
        json_s = json_validate_seconds(stored)
        child = subprocess.run([sys.executable, "-c", CHILD, store.url], capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(child.stderr)
        res = json.loads(child.stdout)
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        mb = size / 1e6
        ingest_rate, cat_rate = mb / res["seconds"], mb / statistics.median(cats)
        copy_fsync_rate, copy_rate, json_rate = mb / copy_fsync_s, mb / copy_s, mb / json_s
        print(json.dumps({
            "input_mb": round(mb, 1), "requests": n, "chunks": res["chunks"], "ok": res["ok"],
            "validate_split_mb_per_s": round(ingest_rate, 1), "cat_mb_per_s": round(cat_rate, 1),
            "ratio": round(ingest_rate / cat_rate, 4), "peak_rss_mb": round(rss_mb, 1),
            "copy_fsync_mb_per_s": round(copy_fsync_rate, 1), "ratio_vs_copy_fsync": round(ingest_rate / copy_fsync_rate, 3),
            "copy_mb_per_s": round(copy_rate, 1), "copy_ratio_vs_cat": round(copy_rate / cat_rate, 4),
            "json_validate_mb_per_s": round(json_rate, 1), "json_validate_ratio_vs_cat": round(json_rate / cat_rate, 4),
        }))


if __name__ == "__main__":
    main()
