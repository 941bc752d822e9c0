"""Chaos bench: a job on the embedded stack under seeded faults, against a no-fault run of the same job.

Runs the real stack (redis-server, supervisor, API server + controller, RQ worker, local workers)
under a temporary ORCA_HOME, with the fake engine (its speed is the one thing simulated: requests
take ``--latency`` s, 8 at a time per worker). Two runs of the same job, each on a fresh stack:
first the baseline with no fault (with ``--cancel``: cancelled at the same point), then the chaos
run. Nobody runs ``orca up`` or ``orca down`` during a run: the stack must heal itself.

The fault schedule is a pure function of the seed (``schedule``), printed in the result: one fault
right after submit (during ingest), faults at fractions of the job's requests answered (each a
kill -9 of a worker, of the control plane server, of the redis-server, of the RQ worker with its
work horse, a SIGTERM of a worker, two of these at once, or a worker kill -9 followed by a kill -9
of the server the moment the worker's replacement is launched, before that launch is recorded;
``pick`` chooses the worker among the live ones by pid order), with ``--cancel`` the cancel at a
fraction answered, and one fault when the job reaches finalizing or cancelling (with ``--cancel``:
during the workers' teardown). What a fault meets (which chunks are in flight) still depends on
timing; which faults come, in what order and at what progress, does not.

Every fake engine logs each request it starts and each answer it gives (``ORCA_FAKE_ANSWER_LOG``,
one file per worker process), and every answer carries a unique id, so the final output says
which answer of each request was kept. Printed as one JSON object:

* ``lost``: requests with no output line (``--cancel``: with no line at all);
* ``duplicated``: lines beyond one per custom_id in output plus errors;
* ``answered_then_discarded``: answers given to a worker that the bench did *not* kill with -9
  (it stopped by SIGTERM, by the cancel's teardown, or ran to the end) and that are not in the
  output; ``discarded_by`` names each such worker (its replica record's state and message, with
  ``replica`` null for a worker no replica record knows, and its log lines about fencing);
* ``redone_requests``: requests sent to an engine more than once (sends beyond the first);
* ``in_flight_at_kill``: requests the kill -9'd workers had started and not committed (answered
  or in flight) - the work a kill may destroy, the bound for ``redone_requests``;
* ``max_recovery_s``: the longest time, over faults, from a fault to the next committed progress
  (a chunk done, a status change); ``recovery_s`` lists every fault's;
* ``faults`` by kind (injected), ``schedule``, ``final_status``, ``wall_s`` (submit to results);
* ``baseline``: the no-fault run's ``wall_s``, ``redone_requests``, output and error lines and
  ``answered_then_discarded``; ``wall_ratio``: chaos wall time over the baseline's.

    python bench/chaos.py --seed 1 [--requests 3000] [--faults 8] [--cancel] [--keep DIR]
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
from dataclasses import asdict, dataclass
from pathlib import Path

# bench/ holds a queue.py that would shadow the standard library's queue module for this script.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import httpx  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
WORKER_KINDS = ("kill9_worker", "sigterm_worker")
STACK_KINDS = ("kill9_server", "kill9_redis", "kill9_rq_worker")
#: kill -9 of a worker, then of the server as soon as the launcher has started the worker's replacement
#: (a new worker process appears), before the controller recorded that launch: the launch is lost with it
AT_LAUNCH = "kill9_server_at_launch"
KINDS = WORKER_KINDS + STACK_KINDS + ("overlapping", AT_LAUNCH)
PIDS = {"kill9_server": "server", "kill9_redis": "redis", "kill9_rq_worker": "rq-worker"}
SETTLED = ("completed", "cancelled", "failed", "expired")


@dataclass(frozen=True)
class Fault:
    at: float | str          # fraction of the requests answered; "ingest" (after submit) or "assembly"
    kind: str
    pick: float = 0.0        # a worker fault's target: live workers sorted by pid, index int(pick * n)
    parts: tuple[str, ...] = ()  # overlapping: the two kinds injected at once


def schedule(seed: int, faults: int, cancel: bool) -> dict:
    """The run's faults (and cancel point), from the seed alone."""
    rng = random.Random(seed)
    n = max(1, faults // 2) if cancel else faults
    top = 0.5 if cancel else 0.9  # with --cancel, every fault comes before the cancel
    run = []
    for at in sorted(round(rng.uniform(0.03, top), 3) for _ in range(n)):
        kind = rng.choice(KINDS)
        parts = tuple(rng.sample(WORKER_KINDS[:1] + STACK_KINDS, 2)) if kind == "overlapping" else ()
        run.append(Fault(at, kind, round(rng.random(), 3), parts))
    return {
        "ingest": Fault("ingest", rng.choice(("kill9_rq_worker", "kill9_server"))),
        "run": run,
        "cancel_at": round(rng.uniform(max(f.at for f in run), 0.6), 3) if cancel else None,  # type: ignore[type-var]
        "assembly": Fault("assembly", rng.choice(STACK_KINDS), round(rng.random(), 3)),
    }


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


class Answers:
    """The fake engines' answer logs, read incrementally: which requests have been answered so far."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.answered: set[str] = set()
        self._offsets: dict[Path, int] = {}

    def fraction(self, n: int) -> float:
        for f in self.dir.glob("*.jsonl"):
            with open(f, "rb") as fh:
                fh.seek(self._offsets.get(f, 0))
                data = fh.read()
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            self._offsets[f] = self._offsets.get(f, 0) + end
            for line in data[:end].splitlines():
                e = json.loads(line)
                if e["ev"] == "done":
                    self.answered.add(e["user"])
        return len(self.answered) / n


class Run:
    """One run of the job on a fresh stack under ``home``; ``faults`` False: the no-fault baseline."""

    def __init__(self, args: argparse.Namespace, home: Path, plan: dict, faults: bool) -> None:
        from orca.settings import Settings

        self.args, self.home, self.plan, self.with_faults = args, home, plan, faults
        self.settings = Settings()
        self.api = f"http://127.0.0.1:{self.settings.control.port}"
        self.headers: dict[str, str] = {}
        self.job_id = ""
        self.faults: list[tuple[float, str]] = []       # (time, kind) of every fault injected
        self.killed: dict[int, float] = {}              # worker pid -> kill -9 time
        self.progress: list[float] = []                 # times of committed progress
        self.signature: tuple | None = None
        self.status = ""
        self.armed = 0                                  # AT_LAUNCH faults waiting for their launch
        self.procs_seen: set[int] = set()               # worker processes when the last one fired
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
    def inject(self, fault: Fault) -> None:
        for kind in fault.parts or (fault.kind,):
            self._inject_one(kind, fault.pick)

    def worker_procs(self) -> set[int]:
        """Pids of this job's ``python -m orca.worker`` processes (from /proc: the launcher may not have recorded them)."""
        out = set()
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            except OSError:
                continue
            if b"orca.worker" in argv and self.job_id.encode() in argv:
                out.add(int(entry.name))
        return out

    def _inject_one(self, kind: str, pick: float, name: str | None = None) -> None:
        now = time.time()
        if kind == AT_LAUNCH:
            if not self.armed:
                self.procs_seen = self.worker_procs()
            self.armed += 1  # the server dies at the next launch (see _drive)
            self._inject_one("kill9_worker", pick)
            return
        if kind in WORKER_KINDS:
            workers = self.live_workers()
            if not workers:
                return
            pid = workers[min(len(workers) - 1, int(pick * len(workers)))]
            if kind == "kill9_worker":
                self.killed[pid] = now
            _signal(pid, signal.SIGKILL if kind == "kill9_worker" else signal.SIGTERM)
        else:
            pid = self.pid_of(PIDS[kind])
            if pid is None:
                return
            _signal(pid, signal.SIGKILL, group=kind == "kill9_rq_worker")  # the RQ work horse dies with it
        with self._lock:
            self.faults.append((now, name or kind))

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

        (self.home / "answers").mkdir(parents=True)
        embedded.up(self.settings)
        try:
            self.headers = {"authorization": f"Bearer {(self.home / 'token').read_text().strip()}"}
            started = time.time()
            r = self.call("POST", "/api/jobs", files={"file": ("chaos.jsonl", batch(self.args.requests))},
                          data={"deadline": "2h"})
            assert r.status_code == 201, r.text
            self.job_id = r.json()["id"]
            stop = threading.Event()
            watcher = threading.Thread(target=self.watch, args=(stop,), daemon=True)
            watcher.start()
            try:
                if self.with_faults:
                    self.inject(self.plan["ingest"])
                self._drive()
            finally:
                stop.set()
                watcher.join()
            return self._score(time.time() - started)
        finally:
            embedded.down(self.settings)

    def _drive(self) -> None:
        deadline = time.monotonic() + self.args.timeout
        answers = Answers(self.home / "answers")
        todo = list(self.plan["run"]) if self.with_faults else []
        cancel_at = self.plan["cancel_at"]
        assembly_hit = not self.with_faults
        while time.monotonic() < deadline:
            status = self.status
            if status in SETTLED:
                if self.call("GET", f"/api/jobs/{self.job_id}").json()["output_available"] or status == "failed":
                    return
            if status in ("finalizing", "cancelling") and not assembly_hit:
                assembly_hit = True
                self.inject(self.plan["assembly"])
            if self.armed and (procs := self.worker_procs()) - self.procs_seen:
                self.armed, self.procs_seen = self.armed - 1, procs
                self._inject_one("kill9_server", 0.0, name=AT_LAUNCH)
            if status == "in_progress":
                done = answers.fraction(self.args.requests)
                while todo and done >= todo[0].at:
                    self.inject(todo.pop(0))
                if cancel_at is not None and done >= cancel_at and not todo:
                    cancel_at = None
                    self.call("POST", f"/api/jobs/{self.job_id}/cancel")
            time.sleep(0.01 if self.armed else 0.1)  # armed: catch the launch before the controller records it
        raise RuntimeError(f"the job did not settle within {self.args.timeout} s (status {self.status})")

    def _score(self, wall_s: float) -> dict:
        j = self.call("GET", f"/api/jobs/{self.job_id}").json()
        out = [json.loads(x) for x in self.call("GET", f"/api/jobs/{self.job_id}/results").text.splitlines() if x.strip()]
        err = [json.loads(x) for x in self.call("GET", f"/api/jobs/{self.job_id}/errors").text.splitlines() if x.strip()]
        ids = [f"req-{i}" for i in range(self.args.requests)]
        lines = Counter(x["custom_id"] for x in out + err)
        kept = {x["custom_id"]: x["response"]["body"]["id"] for x in out}
        lost = sum(1 for cid in ids if cid not in (lines if self.args.cancel else kept))
        starts: Counter = Counter()
        unused_by_pid: dict[int, int] = defaultdict(int)     # sends whose answer is not in the output, per worker
        discarded_by_pid: dict[int, int] = {}
        for f in (self.home / "answers").glob("*.jsonl"):
            pid = int(f.name.split("-")[0])
            events = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
            answered = {e["user"]: e["id"] for e in events if e["ev"] == "done"}
            for e in events:
                if e["ev"] == "start":
                    starts[e["user"]] += 1
                    if not (kept.get(e["user"]) == answered.get(e["user"]) is not None):
                        unused_by_pid[pid] += 1
            discarded = sum(1 for cid, rid in answered.items() if kept.get(cid) != rid)
            if pid not in self.killed and discarded:
                discarded_by_pid[pid] = discarded_by_pid.get(pid, 0) + discarded
        return {
            "faults": dict(Counter(kind for _, kind in self.faults)),
            "lost": lost,
            "duplicated": sum(n - 1 for n in lines.values()),
            "answered_then_discarded": sum(discarded_by_pid.values()),
            "discarded_by": self._who(discarded_by_pid),
            "redone_requests": sum(n - 1 for n in starts.values()),
            "in_flight_at_kill": sum(unused_by_pid[pid] for pid in self.killed),
            "max_recovery_s": max(self.recovery(), default=0.0),
            "recovery_s": self.recovery(),
            "final_status": j["status"],
            "output_lines": len(out),
            "error_lines": len(err),
            "error_codes": dict(Counter(x["error"]["code"] for x in err)),
            "wall_s": round(wall_s, 1),
        }

    def _who(self, discarded_by_pid: dict[int, int]) -> list[dict]:
        """For each worker with discarded answers: its replica record (None: no record knows that pid)
        and what its log says about fenced-off or failed commits."""
        if not discarded_by_pid:
            return []
        from orca.control.embedded import redis_url
        from orca.queue.jobs import JobRegistry

        registry = JobRegistry(redis_url(self.settings), self.settings)
        try:
            by_pid = {r.handle.split(":")[0]: r for r in registry.replicas(self.job_id)}
        finally:
            registry.close()
        out = []
        for pid, n in sorted(discarded_by_pid.items()):
            r = by_pid.get(str(pid))
            notes: list[str] = []
            if r is not None:
                log = self.home / "logs" / self.job_id / f"{r.replica_id}.log"
                text = log.read_text(errors="replace").splitlines() if log.exists() else []
                notes = [x[-200:] for x in text if any(w in x for w in ("fenced", "abandon", "failed", "stops:"))][-4:]
            out.append({"pid": pid, "answers": n, "replica": r.replica_id if r else None,
                        "state": r.state.value if r else None, "message": r.message if r else None, "log": notes})
        return out


def _signal(pid: int, sig: int, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        pass


def run_once(args: argparse.Namespace, plan: dict, faults: bool) -> dict:
    """One run on a fresh stack in its own home and port."""
    from orca.queue.embedded import free_port

    with tempfile.TemporaryDirectory(prefix="orca-chaos-") as tmp:
        home = Path(args.keep or tmp) / ("orca" if faults else "orca-baseline")
        os.environ.update(stack_env(home, free_port(), args.latency))
        for k in ("ORCA_REDIS_URL", "ORCA_STORE_URL", "ORCA_API_URL", "ORCA_API_TOKEN"):
            os.environ.pop(k, None)
        return Run(args, home, plan, faults).run()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--faults", type=int, default=8, help="faults while the job runs (plus one at ingest, one at assembly; "
                                                         "with --cancel half of them, all before the cancel)")
    p.add_argument("--latency", type=float, default=0.1, help="fake engine seconds per request")
    p.add_argument("--cancel", action="store_true", help="cancel the job mid-run, under the same faults")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--keep", metavar="DIR", help="run the stacks under DIR and keep them (logs, answer logs) for a post-mortem")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped bench still takes its stack down
    plan = schedule(args.seed, args.faults, args.cancel)
    baseline = run_once(args, plan, faults=False)
    result = run_once(args, plan, faults=True)
    print(json.dumps({
        "seed": args.seed, "requests": args.requests, "cancel": args.cancel, **result,
        "baseline": {k: baseline[k] for k in ("wall_s", "redone_requests", "output_lines", "error_lines",
                                              "answered_then_discarded", "final_status")},
        "wall_ratio": round(result["wall_s"] / max(baseline["wall_s"], 1e-9), 2),
        "schedule": {k: ([asdict(f) for f in v] if k == "run" else asdict(v) if isinstance(v, Fault) else v)
                     for k, v in plan.items()},
    }))


if __name__ == "__main__":
    main()
