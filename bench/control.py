"""Control plane at fleet scale: N jobs, up to 16 replicas each, on a cloud with slow APIs.

    python bench/control.py                     # 200 jobs, 1 controller process
    python bench/control.py --controllers 2     # 2 controller processes on one Redis; one is
                                                # killed with SIGKILL once a third of the jobs finished

What is real: one redis-server (``orca.queue.embedded.EmbeddedRedis``), the job service
(submit, ingest, planning), the production ``Controller`` in its own processes with its
default settings (``tick_s`` 2 s, launcher calls on its thread pool), the chunk queue and
its Lua scripts.

What is simulated (the outside world only):

* **the cloud** (:class:`FakeCloud`, one process): instances boot in ``--boot-s`` seconds,
  then act as burst workers against the real queue (claim a chunk, hold it ``--chunk-s``
  seconds, complete it, claim the next; exit when nothing is left to claim; release what
  they hold when drained). It counts every launch per replica id: ``double_launches`` is
  the number of replica ids launched more than once.
* **its API latency** (:class:`LatencyLauncher`, a FAKE launcher standing in for SkyPilot):
  every launch, drain and teardown call sleeps a random 0.2-5 s (``--latency``) before it
  reaches the cloud. State reads are batched as real clouds allow (one "describe
  instances" call, with the same latency, refreshes every replica's state at most every
  ``--describe-every-s``), so a poll returns the last described state at once.

A job counts as finished once the controller moved it to ``finalizing`` (every chunk
committed): the simulated workers write no outputs, so assembly (an RQ step outside the
controller) is not run.

Output: one JSON object. ``tick_p50_s``/``tick_p99_s`` are controller tick durations (all
controllers); ``max_job_tick_gap_s`` is the longest time any job waited between two ticks
of its own (by any controller) while it was not finished; ``redis_ops_per_job_tick`` and
``redis_round_trips_per_job_tick`` are the Redis commands the controller processes sent (counted
in them, up to their last tick; a pipeline is one round trip) per job tick, all jobs' ticks
counted, finished ones included. The baseline measured in the same run is ``targets``
(``tick_s`` and ``3 * tick_s``) and the cloud's own latency figures.
"""

from __future__ import annotations

import os
import sys

# Run as a script, bench/ would be sys.path[0] and its queue.py would shadow the stdlib's.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import dataclasses
import json
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from pathlib import Path

from orca.control.schemas import JobCreate  # noqa: E402
from orca.control.service import OrcaService  # noqa: E402
from orca.errors import OrcaError  # noqa: E402
from orca.fleet import PoolSpec, Replica, ReplicaState, WorkerEnv  # noqa: E402
from orca.launchers.base import Launcher  # noqa: E402
from orca.models import JobStatus  # noqa: E402
from orca.queue import ChunkQueue  # noqa: E402
from orca.queue.embedded import EmbeddedRedis  # noqa: E402
from orca.settings import IngestSettings, Settings  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
AUTHKEY = b"orca-bench-control"
FINISHED = {JobStatus.FINALIZING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED}


# -- the simulated cloud (its own process) -------------------------------------------
@dataclass
class _Instance:
    job_id: str
    replica_id: str
    pool: str
    state: str                   # provisioning | running | draining | terminated
    ready_at: float
    started_at: float | None = None
    ended_at: float | None = None
    message: str = ""
    lease: object = None
    next_at: float = 0.0


class FakeCloud:
    """Instances that boot, then run as burst workers against the real chunk queue (a FAKE cloud)."""

    def __init__(self, redis_url: str, boot_s: tuple[float, float], chunk_s: tuple[float, float], seed: int) -> None:
        self.redis_url = redis_url
        self.boot_s, self.chunk_s = boot_s, chunk_s
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.instances: dict[str, _Instance] = {}
        self.launches: dict[str, int] = {}
        self.queues: dict[str, ChunkQueue] = {}
        threading.Thread(target=self._run, daemon=True).start()

    # API (called through the manager, after the caller's latency)
    def launch(self, job_id: str, replica_id: str, pool: str, handle: str) -> str:
        with self.lock:
            self.launches[replica_id] = self.launches.get(replica_id, 0) + 1
            self.instances[handle] = _Instance(job_id, replica_id, pool, "provisioning",
                                               time.time() + self.rng.uniform(*self.boot_s))
            return handle

    def describe(self) -> dict[str, tuple]:
        with self.lock:
            return {h: (i.state, i.started_at, i.ended_at, i.message) for h, i in self.instances.items()}

    def drain(self, handle: str) -> None:
        with self.lock:
            inst = self.instances.get(handle)
            if inst is not None and inst.state in ("provisioning", "running"):
                inst.state = "draining"

    def terminate(self, handle: str) -> None:
        with self.lock:
            inst = self.instances.get(handle)
            if inst is not None and inst.state != "terminated":
                inst.state, inst.ended_at, inst.message = "terminated", time.time(), "terminated"

    def stats(self) -> dict:
        with self.lock:
            return {"launches": sum(self.launches.values()), "replica_ids": len(self.launches),
                    "double_launches": sum(1 for n in self.launches.values() if n > 1)}

    # the instances' workers
    def _queue(self, job_id: str) -> ChunkQueue:
        if job_id not in self.queues:
            self.queues[job_id] = ChunkQueue(self.redis_url, job_id)
        return self.queues[job_id]

    def _run(self) -> None:
        while True:
            now = time.time()
            with self.lock:
                due = [i for i in self.instances.values() if i.state != "terminated" and
                       ((i.state == "provisioning" and now >= i.ready_at) or (i.state == "running" and now >= i.next_at)
                        or i.state == "draining")]
            for inst in due:
                try:
                    self._step(inst, now)
                except OrcaError as exc:  # a lease reclaimed under us, Redis busy: the worker goes on
                    inst.message = str(exc)
            time.sleep(0.1)

    def _step(self, inst: _Instance, now: float) -> None:
        queue = self._queue(inst.job_id)
        if inst.state == "provisioning":
            with self.lock:
                if inst.state != "provisioning":
                    return
                inst.state, inst.started_at, inst.next_at = "running", now, now
            return
        if inst.lease is not None:
            lease, inst.lease = inst.lease, None
            if inst.state == "draining":
                queue.release(lease)
            else:
                try:
                    queue.complete(lease)
                except OrcaError:
                    pass  # reclaimed meanwhile: fenced off, as a real worker would be
        if inst.state == "draining":
            with self.lock:
                inst.state, inst.ended_at, inst.message = "terminated", now, "drained"
            return
        leases = queue.claim(inst.replica_id, inst.pool, 1)
        with self.lock:
            if inst.state != "running":
                if leases:
                    inst.lease = leases[0]  # released on the next step (draining) or left to the reclaim
                return
            if leases:
                inst.lease, inst.next_at = leases[0], now + self.rng.uniform(*self.chunk_s)
            else:
                inst.state, inst.ended_at, inst.message = "terminated", now, "worker exited: nothing to claim"


_cloud: FakeCloud | None = None


def _cloud_singleton() -> FakeCloud:
    global _cloud
    if _cloud is None:
        cfg = json.loads(os.environ["ORCA_BENCH_CLOUD"])
        _cloud = FakeCloud(cfg["redis_url"], tuple(cfg["boot_s"]), tuple(cfg["chunk_s"]), cfg["seed"])
    return _cloud


class CloudManager(BaseManager):
    pass


CloudManager.register("cloud", callable=_cloud_singleton)


# -- the launcher the controllers use ------------------------------------------------
class LatencyLauncher(Launcher):
    """A FAKE launcher: each call to the simulated cloud first sleeps a cloud-like API latency.

    Launch, drain and teardown are one API call each. State reads are batched: one
    "describe instances" call (same latency) refreshes every replica's state, at most every
    ``describe_every_s``; ``poll`` returns the last described state at once.
    """

    name = "skypilot"

    def __init__(self, cloud_address: tuple[str, int], latency_s: tuple[float, float], describe_every_s: float,
                 seed: int) -> None:
        self.address = cloud_address
        self.latency_s = latency_s
        self.describe_every_s = describe_every_s
        self.rng = random.Random(seed)
        self._local = threading.local()
        self._described: dict[str, tuple] = {}
        self._described_at = 0.0
        self._describing = threading.Lock()
        self.api_calls = 0

    def _cloud(self):
        cloud = getattr(self._local, "cloud", None)
        if cloud is None:
            manager = CloudManager(address=self.address, authkey=AUTHKEY)
            manager.connect()
            cloud = self._local.cloud = manager.cloud()
        return cloud

    def _api(self):
        self.api_calls += 1
        time.sleep(self.rng.uniform(*self.latency_s))
        return self._cloud()

    def planned_handle(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> str:
        return f"i-{replica_id}"  # the instance name is chosen by the caller, as SkyPilot's cluster names are

    def launch(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> Replica:
        handle = self._api().launch(env.job_id, replica_id, pool.key, self.planned_handle(env, pool, replica_id))
        return Replica(replica_id=replica_id, job_id=env.job_id, pool=pool.key, launcher=self.name, handle=handle,
                       state=ReplicaState.PROVISIONING, created_at=time.time(),
                       price_per_hour=pool.price_per_replica_hour, message=f"instance {handle}")

    def poll(self, replica: Replica) -> Replica:
        if time.time() - self._described_at >= self.describe_every_s and self._describing.acquire(blocking=False):
            try:
                self._described = self._api().describe()
                self._described_at = time.time()
            finally:
                self._describing.release()
        seen = self._described.get(replica.handle)
        if seen is None:
            return replica
        state, started_at, ended_at, message = seen
        if state == "running" and replica.state is not ReplicaState.DRAINING:
            replica.state, replica.started_at = ReplicaState.RUNNING, started_at
        elif state == "terminated":
            replica.state, replica.ended_at, replica.message = ReplicaState.TERMINATED, ended_at, message
        return replica

    def drain(self, replica: Replica) -> Replica:
        self._api().drain(replica.handle)
        replica.state = ReplicaState.DRAINING
        return replica

    def terminate(self, replica: Replica) -> Replica:
        if replica.handle:
            self._api().terminate(replica.handle)
        replica.state, replica.ended_at, replica.message = ReplicaState.TERMINATED, time.time(), "terminated"
        return replica


# -- a controller process --------------------------------------------------------------
def count_redis_commands() -> dict[str, int]:
    """Count, in this process, the Redis commands sent and the round trips they took (a pipeline is
    one round trip). Measurement only: wraps redis-py's send paths."""
    import redis.client

    counts = {"commands": 0, "round_trips": 0}
    execute_command = redis.client.Redis.execute_command
    immediate = redis.client.Pipeline.immediate_execute_command
    execute = redis.client.Pipeline.execute

    def counted_command(self, *args, **kwargs):
        counts["commands"] += 1
        counts["round_trips"] += 1
        return execute_command(self, *args, **kwargs)

    def counted_immediate(self, *args, **kwargs):
        counts["commands"] += 1
        counts["round_trips"] += 1
        return immediate(self, *args, **kwargs)

    def counted_execute(self, *args, **kwargs):
        if self.command_stack:
            counts["commands"] += len(self.command_stack)
            counts["round_trips"] += 1
        return execute(self, *args, **kwargs)

    redis.client.Redis.execute_command = counted_command
    redis.client.Pipeline.immediate_execute_command = counted_immediate
    redis.client.Pipeline.execute = counted_execute
    return counts


def run_controller(args: argparse.Namespace) -> None:
    from orca.control.controller import Controller, TickReport

    import faulthandler

    faulthandler.register(signal.SIGUSR1)  # the parent asks for stacks of a child that will not stop
    redis_counts = count_redis_commands()
    settings = Settings.model_validate_json(Path(args.settings_file).read_text())
    host, port = args.cloud.split(":")
    launcher = LatencyLauncher((host, int(port)), tuple(args.latency), args.describe_every_s, seed=args.seed)
    svc = OrcaService.from_settings(settings)
    out = open(args.stats, "a", buffering=1)

    def record(report: TickReport) -> None:
        out.write(json.dumps({"c": report.controller, "t": report.started, "d": report.duration_s,
                              "jobs": report.jobs, **redis_counts}) + "\n")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller = Controller(svc, controller_id=f"bench-{args.seed}", launchers={"skypilot": launcher}, on_tick=record)
    if os.environ.get("ORCA_BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("controller.run(stop)", globals(), {"controller": controller, "stop": stop},
                        f"{os.environ['ORCA_BENCH_PROFILE']}.{args.seed}")
    else:
        controller.run(stop)
    out.write(json.dumps({"c": f"bench-{args.seed}", "api_calls": launcher.api_calls}) + "\n")
    out.close()
    svc.close()
    # Leave without interpreter teardown: every call thread's proxy would say goodbye to the cloud
    # process at once (multiprocessing decref handshakes), and a call asleep in its latency holds exit.
    os._exit(0)


# -- the benchmark -------------------------------------------------------------------
def batch(n: int) -> bytes:
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": f"q{i}"}]}}
            for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--max-replicas", type=int, default=16)
    p.add_argument("--chunks-per-replica", type=int, default=2)
    p.add_argument("--controllers", type=int, default=1, choices=(1, 2))
    p.add_argument("--no-kill", action="store_true", help="With 2 controllers, do not kill one mid-run.")
    p.add_argument("--latency", type=float, nargs=2, default=(0.2, 5.0), metavar=("MIN_S", "MAX_S"))
    p.add_argument("--describe-every-s", type=float, default=5.0)
    p.add_argument("--boot-s", type=float, nargs=2, default=(2.0, 10.0))
    p.add_argument("--chunk-s", type=float, nargs=2, default=(2.0, 6.0))
    p.add_argument("--timeout-s", type=float, default=900.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--commandstats", action="store_true", help="Also print the Redis command mix of the run to stderr.")
    # a controller child
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--settings-file", help=argparse.SUPPRESS)
    p.add_argument("--cloud", help=argparse.SUPPRESS)
    p.add_argument("--stats", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_controller(args)
        return

    import redis

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="orca-bench-control-"))
    server = EmbeddedRedis(tmp / "redis").start()
    url = f"redis://127.0.0.1:{server.port}/0"
    settings = Settings(home=tmp, redis_url=url, store_url=(tmp / "store").as_uri(),
                        ingest=IngestSettings(min_chunk_requests=1, max_chunk_requests=4))
    settings_file = tmp / "settings.json"
    settings_file.write_text(settings.model_dump_json())
    children: list[subprocess.Popen] = []
    manager = None
    try:
        # the jobs: submitted, ingested and planned for the cloud launcher; each pool's target fixed
        svc = OrcaService.from_settings(settings, synchronous=True)
        token_user = "bench"
        targets: dict[str, int] = {}
        started = time.monotonic()
        for _ in range(args.jobs):
            replicas = rng.randint(1, args.max_replicas)
            job = svc.create_job(token_user, batch(4 * args.chunks_per_replica * replicas),
                                 JobCreate(deadline="24h", launcher="skypilot"))
            record = svc.registry.get(job.id)
            pools = [dataclasses.replace(p, target=replicas) for p in record.pools]
            svc.registry.update(job.id, pools=pools, options=[])
            targets[job.id] = replicas
        submit_s = time.monotonic() - started

        os.environ["ORCA_BENCH_CLOUD"] = json.dumps({"redis_url": url, "boot_s": args.boot_s,
                                                     "chunk_s": args.chunk_s, "seed": args.seed})
        manager = CloudManager(address=("127.0.0.1", 0), authkey=AUTHKEY)
        manager.start()
        cloud = manager.cloud()
        client = redis.Redis.from_url(url)
        mix_before = client.info("commandstats")
        stats_files = [tmp / f"controller-{i}.jsonl" for i in range(args.controllers)]
        host, port = manager.address
        for i, stats in enumerate(stats_files):
            children.append(subprocess.Popen(
                [sys.executable, __file__, "--child", "--settings-file", str(settings_file), "--cloud", f"{host}:{port}",
                 "--stats", str(stats), "--seed", str(i), "--latency", *map(str, args.latency),
                 "--describe-every-s", str(args.describe_every_s)]))

        finished_at: dict[str, float] = {}
        killed_at = None
        run_started = time.time()
        while len(finished_at) < args.jobs and time.time() - run_started < args.timeout_s:
            time.sleep(1.0)
            statuses = svc.registry.statuses()
            now = time.time()
            for job_id, status in statuses.items():
                if status in FINISHED and job_id not in finished_at:
                    finished_at[job_id] = now
            if args.controllers == 2 and not args.no_kill and killed_at is None and len(finished_at) >= args.jobs / 3:
                children[1].send_signal(signal.SIGKILL)
                killed_at = now
        run_s = time.time() - run_started
        if args.commandstats:
            mix = {k: v["calls"] - mix_before.get(k, {"calls": 0})["calls"] for k, v in client.info("commandstats").items()}
            print(json.dumps(dict(sorted(mix.items(), key=lambda kv: -kv[1]))), file=sys.stderr)
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGUSR1)
                time.sleep(1)
                raise
        cloud_stats = cloud.stats()

        ticks, gaps, api_calls = [], [], 0
        job_ticks: dict[str, list[float]] = {j: [] for j in targets}
        per_controller: dict[str, int] = {}
        sent: dict[str, dict[str, int]] = {}   # controller -> its cumulative Redis commands and round trips
        for stats in stats_files:
            for line in stats.read_text().splitlines():
                row = json.loads(line)
                if "api_calls" in row:
                    api_calls += row["api_calls"]
                    continue
                ticks.append(row["d"])
                per_controller[row["c"]] = per_controller.get(row["c"], 0) + len(row["jobs"])
                sent[row["c"]] = {"commands": row["commands"], "round_trips": row["round_trips"]}
                for job_id, t in row["jobs"].items():
                    if job_id in job_ticks:
                        job_ticks[job_id].append(t)
        for job_id, times in job_ticks.items():
            times = sorted(t for t in times if t <= finished_at.get(job_id, float("inf")))
            gaps += [b - a for a, b in zip(times, times[1:])]
        job_tick_count = sum(per_controller.values())
        commands = sum(c["commands"] for c in sent.values())
        round_trips = sum(c["round_trips"] for c in sent.values())
        tick_s = settings.control.tick_s
        result = {
            "jobs": args.jobs,
            "jobs_finished": len(finished_at),
            "replicas": cloud_stats["replica_ids"],
            "replica_target_total": sum(targets.values()),
            "controllers": args.controllers,
            "tick_p50_s": round(statistics.median(ticks), 4) if ticks else None,
            "tick_p99_s": round(percentile(ticks, 0.99), 4),
            "max_job_tick_gap_s": round(max(gaps), 3) if gaps else None,
            "redis_ops_per_job_tick": round(commands / job_tick_count, 2) if job_tick_count else None,
            "redis_round_trips_per_job_tick": round(round_trips / job_tick_count, 2) if job_tick_count else None,
            "double_launches": cloud_stats["double_launches"],
            "job_ticks_per_controller": per_controller,
            "controller_killed_after_s": round(killed_at - run_started, 1) if killed_at else None,
            "cloud_api_calls": api_calls,
            "cloud_api_latency_s": list(args.latency),
            "run_s": round(run_s, 1),
            "submit_s": round(submit_s, 1),
            "targets": {"tick_p99_s": tick_s, "max_job_tick_gap_s": 3 * tick_s, "double_launches": 0},
        }
        print(json.dumps(result))
        svc.close()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        if manager is not None:
            manager.shutdown()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
