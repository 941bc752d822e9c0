"""Chaos bench: a job on the embedded stack under seeded random faults; nothing lost, nothing answered wasted.

Runs the real stack (redis-server, supervisor, API server + controller, RQ worker, local workers)
under a temporary ORCA_HOME, with the fake engine (its speed is the one thing simulated: requests
take ``--latency`` s, 8 at a time per worker). While the job runs it injects faults at seeded
random times, each picked from: kill -9 of a worker, SIGTERM of a worker, kill -9 of the control
plane server, of the redis-server, of the RQ worker (its process group: work horse included),
and two of these at once. One fault hits ingest (right after submit) and one assembly (when the
job reaches finalizing or cancelling). With ``--cancel`` the job is cancelled mid-run, under the
same faults. Nobody runs ``orca up`` or ``orca down``: the stack must heal itself.

Every fake engine logs each request it starts and each answer it gives (``ORCA_FAKE_ANSWER_LOG``,
one file per worker process), and every answer carries a unique id, so the final output says
which answer of each request was kept. Printed as one JSON object:

* ``lost``: requests with no output line (``--cancel``: with no line at all);
* ``duplicated``: lines beyond one per custom_id in output plus errors;
* ``answered_then_discarded``: answers given to a worker that was *not* killed with -9 (it stopped
  by SIGTERM, by the cancel's teardown, or ran to the end) and that are not in the output;
* ``redone_requests``: requests sent to an engine more than once (sends beyond the first);
* ``in_flight_at_kill``: requests the kill -9'd workers had started and not committed (answered
  or in flight) - the work a kill may destroy, the bound for ``redone_requests``;
* ``max_recovery_s``: the longest time, over faults, from a fault to the next committed progress
  (a chunk done, a status change); ``recovery_s`` lists every fault's;
* ``faults`` by kind, ``final_status``, ``wall_s``.

    python bench/chaos.py --seed 1 [--requests 3000] [--faults 8] [--cancel]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

# bench/ holds a queue.py that would shadow the standard library's queue module for this script.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import httpx  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
WORKER_KINDS = ("kill9_worker", "sigterm_worker")
STACK_KINDS = ("kill9_server", "kill9_redis", "kill9_rq_worker")
KINDS = WORKER_KINDS + STACK_KINDS + ("overlapping",)


def stack_env(home: Path, port: int, latency_s: float) -> dict[str, str]:
    """Timings of a small local stack; the engine is the fake (8 requests at a time, ``latency_s`` each)."""
    return {
        "ORCA_HOME": str(home),
        "ORCA_CONTROL__PORT": str(port),
        "ORCA_CONTROL__TICK_S": "0.3",
        "ORCA_CONTROL__LOCK_TTL_S": "3",
        "ORCA_CONTROL__TASK_RETRY_BACKOFF_S": "1",
        "ORCA_CONTROL__SUPERVISE_EVERY_S": "0.5",
        "ORCA_QUEUE__LEASE_S": "10",
        "ORCA_QUEUE__RENEW_EVERY_S": "1",
        "ORCA_QUEUE__REAP_EVERY_S": "1",
        "ORCA_WORKER__DRAIN_GRACE_S": "5",
        "ORCA_WORKER__METRICS_EVERY_S": "0.5",
        "ORCA_WORKER__IDLE_POLL_S": "0.2",
        "ORCA_INGEST__MIN_CHUNK_REQUESTS": "1",
        "ORCA_INGEST__MAX_CHUNK_REQUESTS": "100",
        "ORCA_LAUNCHER__LOCAL_ENGINE": "fake",
        "ORCA_LAUNCHER__LOCAL_STOP_GRACE_S": "10",
        "ORCA_LAUNCHER__LOCAL_ENGINE_ARGS": json.dumps({"fake_latency_s": str(latency_s), "fake_slots": "8"}),
        "ORCA_FAKE_ANSWER_LOG": str(home / "answers"),
    }


def batch(n: int) -> bytes:
    rows = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": MODEL, "max_tokens": 8, "user": f"req-{i}",
                      "messages": [{"role": "user", "content": f"question {i}"}]}} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


class Chaos:
    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        from orca.settings import Settings

        self.args, self.home = args, home
        self.rng = random.Random(args.seed)
        self.settings = Settings()
        self.api = f"http://127.0.0.1:{self.settings.control.port}"
        self.headers: dict[str, str] = {}
        self.job_id = ""
        self.faults: list[tuple[float, str]] = []       # (time, kind)
        self.killed: dict[int, float] = {}              # worker pid -> kill -9 time
        self.progress: list[float] = []                 # times of committed progress
        self.signature: tuple | None = None
        self.status = ""
        self._lock = threading.Lock()

    # -- the stack -------------------------------------------------------------
    def call(self, method: str, path: str, timeout_s: float = 120, **kw) -> httpx.Response:
        """An API call that rides out the stack healing (refused connections, 503)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                r = httpx.request(method, f"{self.api}{path}", headers=self.headers, timeout=30, **kw)
                if r.status_code != 503:
                    return r
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: the stack did not answer for {timeout_s:.0f} s")
            time.sleep(0.2)

    def pid_of(self, name: str) -> int | None:
        path = self.home / "redis" / "orca-redis.state" if name == "redis" else self.home / "run" / f"{name}.pid"
        try:
            return int(path.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def live_workers(self) -> list[int]:
        """Pids of the running workers not yet killed (each fake engine's answer log is named by its worker's pid)."""
        from orca.launchers.local import process_start_time

        pids = {int(f.name.split("-")[0]) for f in (self.home / "answers").glob("*.jsonl")}
        return sorted(pid for pid in pids if pid not in self.killed and process_start_time(pid) is not None)

    # -- faults ----------------------------------------------------------------
    def inject(self, kind: str) -> None:
        now = time.time()
        if kind == "overlapping":
            for k in self.rng.sample(WORKER_KINDS[:1] + STACK_KINDS, 2):
                self.inject(k)
            return
        pid: int | None
        if kind in WORKER_KINDS:
            workers = self.live_workers()
            if not workers:
                return
            pid = self.rng.choice(workers)
            if kind == "kill9_worker":
                self.killed[pid] = now
                sig = signal.SIGKILL
            else:
                sig = signal.SIGTERM
            _signal(pid, sig)
        else:
            pid = self.pid_of({"kill9_server": "server", "kill9_redis": "redis", "kill9_rq_worker": "rq-worker"}[kind])
            if pid is None:
                return
            if kind == "kill9_rq_worker":
                _signal(pid, signal.SIGKILL, group=True)  # the RQ work horse dies with it
            else:
                _signal(pid, signal.SIGKILL)
        with self._lock:
            self.faults.append((now, kind))

    # -- progress --------------------------------------------------------------
    def watch(self, stop: threading.Event) -> None:
        """Record the time of every committed progress: chunks finished or a status change."""
        while not stop.is_set():
            try:
                r = httpx.get(f"{self.api}/api/jobs/{self.job_id}", headers=self.headers, timeout=5)
                if r.status_code == 200:
                    j = r.json()
                    sig = (j["status"], j["progress"]["chunks_done"] + j["progress"]["chunks_dead"], j["output_available"])
                    self.status = j["status"]
                    if sig != self.signature:
                        with self._lock:
                            self.progress.append(time.time())
                        self.signature = sig
            except httpx.HTTPError:
                pass
            stop.wait(0.25)

    def recovery(self) -> list[float]:
        out = []
        for t, _ in self.faults:
            later = [p for p in self.progress if p > t]
            out.append(round(later[0] - t, 2) if later else float("inf"))
        return out

    # -- the run ---------------------------------------------------------------
    def run(self) -> dict:
        from orca.control import embedded

        started = time.time()
        (self.home / "answers").mkdir(parents=True)
        embedded.up(self.settings)
        try:
            self.headers = {"authorization": f"Bearer {(self.home / 'token').read_text().strip()}"}
            r = self.call("POST", "/api/jobs", files={"file": ("chaos.jsonl", batch(self.args.requests))},
                          data={"deadline": "2h"})
            assert r.status_code == 201, r.text
            self.job_id = r.json()["id"]
            stop = threading.Event()
            watcher = threading.Thread(target=self.watch, args=(stop,), daemon=True)
            watcher.start()
            try:
                self.inject(self.rng.choice(("kill9_rq_worker", "kill9_server")))  # during ingest
                self._drive()
            finally:
                stop.set()
                watcher.join()
            return self._score(started)
        finally:
            embedded.down(self.settings)

    def _drive(self) -> None:
        deadline = time.monotonic() + self.args.timeout
        left = self.args.faults
        cancel_after = max(1, self.args.faults // 2) if self.args.cancel else None
        next_at = time.monotonic() + self.rng.uniform(2, 5)
        assembly_hit = False
        while time.monotonic() < deadline:
            status = self.status
            if status in ("completed", "cancelled", "failed", "expired"):
                j = self.call("GET", f"/api/jobs/{self.job_id}").json()
                if j["output_available"] or status == "failed":
                    return
            if status in ("finalizing", "cancelling") and not assembly_hit:
                assembly_hit = True
                self.inject(self.rng.choice(("kill9_rq_worker", "kill9_server", "kill9_redis")))
            if status == "in_progress" and left > 0 and time.monotonic() >= next_at:
                self.inject(self.rng.choice(KINDS))
                left -= 1
                next_at = time.monotonic() + self.rng.uniform(3, 7)
                if cancel_after is not None and self.args.faults - left == cancel_after:
                    self.call("POST", f"/api/jobs/{self.job_id}/cancel")
            time.sleep(0.1)
        raise RuntimeError(f"the job did not settle within {self.args.timeout} s (status {self.status})")

    def _score(self, started: float) -> dict:
        j = self.call("GET", f"/api/jobs/{self.job_id}").json()
        out = [json.loads(x) for x in self.call("GET", f"/api/jobs/{self.job_id}/results").text.splitlines() if x.strip()]
        err = [json.loads(x) for x in self.call("GET", f"/api/jobs/{self.job_id}/errors").text.splitlines() if x.strip()]
        ids = [f"req-{i}" for i in range(self.args.requests)]
        lines = Counter(x["custom_id"] for x in out + err)
        kept = {x["custom_id"]: x["response"]["body"]["id"] for x in out}
        if self.args.cancel:
            lost = sum(1 for cid in ids if cid not in lines)
        else:
            lost = sum(1 for cid in ids if cid not in kept)
        starts: Counter = Counter()
        unused_by_pid: dict[int, int] = defaultdict(int)     # answers (or sends) not in the output, per worker
        discarded = 0
        for f in (self.home / "answers").glob("*.jsonl"):
            pid = int(f.name.split("-")[0])
            events = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
            answered = {e["user"]: e["id"] for e in events if e["ev"] == "done"}
            for e in events:
                if e["ev"] != "start":
                    continue
                starts[e["user"]] += 1
                used = kept.get(e["user"]) == answered.get(e["user"]) is not None
                if not used:
                    unused_by_pid[pid] += 1
            if pid not in self.killed:
                discarded += sum(1 for cid, rid in answered.items() if kept.get(cid) != rid)
        return {
            "seed": self.args.seed,
            "requests": self.args.requests,
            "cancel": self.args.cancel,
            "faults": dict(Counter(kind for _, kind in self.faults)),
            "lost": lost,
            "duplicated": sum(n - 1 for n in lines.values()),
            "answered_then_discarded": discarded,
            "redone_requests": sum(n - 1 for n in starts.values()),
            "in_flight_at_kill": sum(unused_by_pid[pid] for pid in self.killed),
            "max_recovery_s": max(self.recovery(), default=0.0),
            "recovery_s": self.recovery(),
            "final_status": j["status"],
            "output_lines": len(out),
            "error_lines": len(err),
            "error_codes": dict(Counter(x["error"]["code"] for x in err)),
            "wall_s": round(time.time() - started, 1),
        }


def _signal(pid: int, sig: int, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--faults", type=int, default=8, help="faults while the job runs (plus one at ingest, one at assembly)")
    p.add_argument("--latency", type=float, default=0.1, help="fake engine seconds per request")
    p.add_argument("--cancel", action="store_true", help="cancel the job mid-run, under the same faults")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--keep", metavar="DIR", help="run the stack under DIR and keep it (logs, answer logs) for a post-mortem")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped bench still takes its stack down
    from orca.queue.embedded import free_port

    with tempfile.TemporaryDirectory(prefix="orca-chaos-") as tmp:
        home = Path(args.keep or tmp) / "orca"
        os.environ.update(stack_env(home, free_port(), args.latency))
        for k in ("ORCA_REDIS_URL", "ORCA_STORE_URL", "ORCA_API_URL", "ORCA_API_TOKEN"):
            os.environ.pop(k, None)
        result = Chaos(args, home).run()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
