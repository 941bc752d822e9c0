#!/usr/bin/env bash
# GPU bench: orca's worker with the vLLM engine vs vLLM's own offline LLM.generate, same prompts.
#
# Needs a CUDA GPU, `pip install -e '.[vllm]'` (the `vllm` CLI on PATH) and the model
# weights reachable (HF hub or a local dir). Not run in CI: there is no GPU there.
#
#   bench/gpu_vllm.sh                       # Qwen/Qwen2.5-0.5B-Instruct, 2000 requests x 256 tokens
#   MODEL=/models/qwen N=4000 MAX_TOKENS=128 bench/gpu_vllm.sh
#
# Baseline: one `LLM.generate` call over every prompt (vLLM schedules them all at once:
# the best this GPU can do). orca: the same prompts as /v1/completions requests with the
# same sampling parameters (ignore_eos, so both produce exactly MAX_TOKENS tokens each),
# in chunks of CHUNK in a real redis-server queue and a file store, processed by
# `python -m orca.worker --engine vllm` (which runs `vllm serve`). The orca clock starts
# when the chunks are enqueued (engine already loaded) and stops when the last chunk is
# committed. Prints one JSON object; `ratio` = orca tokens/s / offline tokens/s.
set -euo pipefail

MODEL="${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}"
N="${N:-2000}"
MAX_TOKENS="${MAX_TOKENS:-256}"
CHUNK="${CHUNK:-250}"
CONCURRENCY="${CONCURRENCY:-256}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-2048}"
GPU_MEM="${GPU_MEM:-0.90}"
PYTHON="${PYTHON:-python}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d -t orca-gpu-vllm-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

command -v vllm >/dev/null || { echo '{"error": "the vllm CLI is not on PATH (pip install -e .[vllm])"}'; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null || { echo '{"error": "no NVIDIA GPU visible"}'; exit 2; }

export MODEL N MAX_TOKENS CHUNK CONCURRENCY MAX_MODEL_LEN GPU_MEM WORK
cd "$ROOT"

# The same prompts for both runs (deterministic).
"$PYTHON" - <<'EOF'
import json, os
topics = ["the ocean", "a city at night", "prime numbers", "bread baking", "the moon", "a chess opening",
          "rain forests", "old bridges", "jazz", "volcanoes"]
n = int(os.environ["N"])
prompts = [f"Write a detailed essay about {topics[i % len(topics)]} (variation {i})." for i in range(n)]
json.dump(prompts, open(os.path.join(os.environ["WORK"], "prompts.json"), "w"))
EOF

# 1. Baseline: offline LLM.generate (its own process, so the GPU is free afterwards).
"$PYTHON" - <<'EOF' 1>&2  # vLLM logs to stdout; keep stdout for the one JSON object
import json, os, time
from vllm import LLM, SamplingParams
prompts = json.load(open(os.path.join(os.environ["WORK"], "prompts.json")))
llm = LLM(model=os.environ["MODEL"], max_model_len=int(os.environ["MAX_MODEL_LEN"]),
          gpu_memory_utilization=float(os.environ["GPU_MEM"]))
params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=int(os.environ["MAX_TOKENS"]), ignore_eos=True)
llm.generate(prompts[:8], params)  # warm-up (CUDA graphs, allocator)
start = time.perf_counter()
outputs = llm.generate(prompts, params)
elapsed = time.perf_counter() - start
tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
json.dump({"elapsed_s": elapsed, "output_tokens": tokens}, open(os.path.join(os.environ["WORK"], "offline.json"), "w"))
EOF

# 2. orca: queue + store + one worker running `vllm serve`.
"$PYTHON" - <<'EOF'
import json, os, subprocess, sys, time
from pathlib import Path
from orca.queue import ChunkQueue
from orca.queue.embedded import EmbeddedRedis
from orca.queue.worker_metrics import WorkerMetricsStore
from orca.storage import open_store
from orca.storage.layout import JobLayout

work = Path(os.environ["WORK"])
model, n, max_tokens = os.environ["MODEL"], int(os.environ["N"]), int(os.environ["MAX_TOKENS"])
chunk, job = int(os.environ["CHUNK"]), "gpu-vllm-bench"
prompts = json.load(open(work / "prompts.json"))
offline = json.load(open(work / "offline.json"))

redis = EmbeddedRedis(work / "redis").start()
store_url = f"file://{work / 'store'}"
store = open_store(store_url)
layout = JobLayout(job)
ids = []
for start in range(0, n, chunk):
    chunk_id = f"chunk-{start // chunk:05d}"
    lines = [json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/completions",
                         "body": {"model": model, "prompt": prompts[i], "max_tokens": max_tokens,
                                  "temperature": 0.8, "top_p": 0.95, "ignore_eos": True}})
             for i in range(start, min(n, start + chunk))]
    store.put_bytes(layout.chunk(chunk_id), ("\n".join(lines) + "\n").encode())
    ids.append(chunk_id)

env = {**os.environ, "ORCA_WORKER__IDLE_POLL_S": "0.05", "ORCA_WORKER__METRICS_EVERY_S": "1"}
log = open(work / "worker.log", "wb")
worker = subprocess.Popen(
    [sys.executable, "-m", "orca.worker", "--job", job, "--redis-url", redis.url, "--store-url", store_url,
     "--pool", "gpu-bench", "--worker-id", "gpu-w0", "--engine", "vllm", "--model", model,
     "--max-model-len", os.environ["MAX_MODEL_LEN"], "--gpu-memory-utilization", os.environ["GPU_MEM"],
     "--max-concurrency", os.environ["CONCURRENCY"]],
    env=env, stdout=log, stderr=subprocess.STDOUT)
try:
    metrics = WorkerMetricsStore(redis.url, job)
    while not any(m.state == "running" for m in metrics.read()):  # engine loaded, worker polls the queue
        if worker.poll() is not None:
            sys.exit(json.dumps({"error": "worker exited", "log": (work / "worker.log").read_text()[-3000:]}))
        time.sleep(0.5)
    with ChunkQueue(redis.url, job) as queue:
        queue.enqueue_many(ids[:1])  # warm-up chunk, not timed
        while queue.counts().done < 1:
            time.sleep(0.05)
        start = time.perf_counter()
        queue.enqueue_many(ids[1:])
        while not queue.counts().finished:
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        committed = queue.committed_generations()
    tokens = errors = 0
    for chunk_id, gen in committed.items():
        if chunk_id == ids[0]:
            continue
        for raw in store.get_bytes(layout.chunk_output(chunk_id, gen)).splitlines():
            line = json.loads(raw)
            if line["error"] is None:
                tokens += line["response"]["body"]["usage"]["completion_tokens"]
            else:
                errors += 1
    worker.wait(120)
    timed = n - min(n, chunk)
    offline_tps = offline["output_tokens"] / offline["elapsed_s"]
    orca_tps = tokens / elapsed
    print(json.dumps({
        "bench": "gpu_vllm", "model": model, "requests": n, "timed_requests": timed, "max_tokens": max_tokens,
        "chunk_size": chunk, "worker_concurrency": int(os.environ["CONCURRENCY"]),
        "offline_generate_s": round(offline["elapsed_s"], 3), "offline_tokens_per_s": round(offline_tps, 1),
        "orca_s": round(elapsed, 3), "orca_tokens_per_s": round(orca_tps, 1), "orca_error_lines": errors,
        "ratio": round(orca_tps / offline_tps, 4), "worker_exit_code": worker.returncode,
    }))
finally:
    worker.terminate()
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
    redis.stop()
EOF
