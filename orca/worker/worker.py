"""The worker loop: claim chunks, keep the engine saturated, commit each chunk's output exactly once.

Flow of one chunk: claim (lease, generation g) -> read its data object -> wait
until the previous chunk has all its requests in flight -> dispatch each request
as soon as a slot of the shared semaphore frees -> gather output lines -> renew
(a fencing check: a stale lease uploads nothing) -> write
``JobLayout.chunk_output(chunk, g)`` -> record its token usage -> ``complete``. Completion is the only commit.

The next chunk is claimed ahead (up to ``queue.prefetch`` chunks beyond the one
dispatching) only once the held chunks have at most ``concurrency`` requests left
to send, i.e. about one engine round before the engine would run dry: its data is
loaded when the current chunk's last request goes out, and a worker never sits on
chunks that idle workers of the same job could be running.

Stopping: SIGTERM/SIGINT, a serverless time budget or a preemption notice stops
claims and halts dispatch: chunks that have not started are released at once,
requests in flight get ``drain_grace_s`` (or what the notice leaves) to be
answered, and then every held chunk is let go with a partial commit
(``ChunkQueue.split``: the answered requests are committed, write-before-commit as
always, and the rest goes back to the head of the queue; no attempt charged).
Nothing answered is thrown away. A drained pool or an empty queue in burst mode
finishes its chunks and exits. A fenced-off lease is abandoned at once (its
requests cancelled; it can commit nothing); a hung engine loses every lease
(renewals stop); an engine that is gone for good gets its chunks salvaged the same way.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field

from orca.errors import EngineError, OrcaError, QueueUnavailableError, StaleLeaseError, StoreUnavailableError
from orca.models import ChunkSplit, SplitPart
from orca.queue.chunk_usage import ChunkUsageStore
from orca.queue.types import Lease, split_children
from orca.queue.worker_metrics import WorkerMetricsStore
from orca.settings import Settings
from orca.storage.base import ObjectStore
from orca.storage.layout import JobLayout
from orca.usage import lines_usage
from orca.worker.engines.base import Engine
from orca.worker.forwarder import Forwarder
from orca.worker.heartbeat import Heartbeat, LeaseBook
from orca.worker.meter import Meter
from orca.worker.output import encode_lines, parse_chunk
from orca.worker.preemption import NoticeWatcher

log = logging.getLogger("orca.worker")


class ExitCode(enum.IntEnum):
    """Process exit codes of ``python -m orca.worker``."""

    OK = 0             # queue finished or empty (burst), pool drained, or stopped by SIGTERM/SIGINT/budget
    ERROR = 1          # unexpected error
    USAGE = 2          # bad arguments or configuration
    ENGINE_FAILED = 3  # engine did not start, crashed more than max_restarts times, or hung
    UNAVAILABLE = 4    # Redis or the object store could not be reached


class StopReason(str, enum.Enum):
    FINISHED = "finished"          # every chunk of the job is done or dead
    EMPTY = "empty"                # burst mode: nothing pending, nothing held by me (and my pool not on standby)
    DRAINED = "drained"            # the pool may not claim any more
    SIGNALLED = "signalled"        # SIGTERM/SIGINT or stop()
    BUDGET = "budget"              # serverless time budget ran out
    PREEMPTED = "preempted"        # the cloud announced a preemption (spot notice)
    ENGINE_FAILED = "engine_failed"
    UNAVAILABLE = "unavailable"    # Redis or the object store stayed unreachable through retries

    @property
    def exit_code(self) -> ExitCode:
        if self is StopReason.ENGINE_FAILED:
            return ExitCode.ENGINE_FAILED
        if self is StopReason.UNAVAILABLE:
            return ExitCode.UNAVAILABLE
        return ExitCode.OK


_HALTING = (StopReason.SIGNALLED, StopReason.BUDGET, StopReason.PREEMPTED)


@dataclass
class _Run:
    lease: Lease
    task: asyncio.Task | None = None
    dispatched: asyncio.Event = field(default_factory=asyncio.Event)
    dispatching: bool = False                 # at least one of its requests went to the engine
    unsent: int | None = None          # requests not yet sent to the engine; None until the chunk is read
    finished: int = 0                  # its requests answered so far (not committed until the chunk is)
    cancel_reason: str | None = None   # "release" | "stale" | "hung"
    finishing: bool = False            # committing or releasing on its own: not to be cancelled
    raw: list[bytes] | None = None     # the chunk's request lines, by position; None until read
    lines: dict[int, dict] = field(default_factory=dict)  # position -> output line of each answered request


class Worker:
    """One worker process's chunk loop over an already started engine."""

    def __init__(self, *, job_id: str, pool: str, worker_id: str, queue, store: ObjectStore, engine: Engine,
                 settings: Settings, concurrency: int, burst: bool = False, time_budget_s: float | None = None,
                 metrics: WorkerMetricsStore | None = None, usage: ChunkUsageStore | None = None) -> None:
        self.job_id, self.pool, self.worker_id = job_id, pool, worker_id
        self.queue, self.store, self.engine, self.settings = queue, store, engine, settings
        self.concurrency, self.burst, self.time_budget_s = concurrency, burst, time_budget_s
        self.layout = JobLayout(job_id)
        self.meter = Meter()
        self.book = LeaseBook()
        self.metrics = metrics
        self.usage = usage  # per-chunk token usage, recorded with each commit (the batch's ``usage``)
        self.chunks_done = 0
        self.requests_uncommitted = 0  # answered requests of held chunks (live progress for the control plane)
        self.requests_salvaged = 0  # answered requests kept by partial commits
        self.notice = ""  # the cloud's preemption notice, once seen
        self._halt = False  # stopping: send no more requests; commit what is answered, hand the rest back
        self.stop_reason: StopReason | None = None
        self.state = "running"
        self._runs: dict[str, _Run] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._room: asyncio.Event | None = None  # set while the held chunks have few enough requests left to send
        self._drain_deadline: float | None = None  # monotonic; set by a stop signal or the budget

    # -- control from outside the loop ---------------------------------------
    def stop(self, reason: StopReason = StopReason.SIGNALLED, grace_s: float | None = None) -> None:
        """Stop claiming and let held chunks go (thread-safe; what SIGTERM does)."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._set_stop, reason, grace_s)

    def _set_stop(self, reason: StopReason, grace_s: float | None = None) -> None:
        """Stop claiming. A stop from outside (signal, budget, preemption notice) also halts dispatch:
        requests in flight get ``grace_s`` (default ``drain_grace_s``) to be answered, then every
        held chunk is let go with a partial commit."""
        if self.stop_reason is None or reason in (StopReason.ENGINE_FAILED, StopReason.UNAVAILABLE):
            self.stop_reason = reason
        if reason in _HALTING:
            self._halt = True
            grace = self.settings.worker.drain_grace_s if grace_s is None else min(grace_s, self.settings.worker.drain_grace_s)
            deadline = time.monotonic() + grace
            if self._drain_deadline is None or deadline < self._drain_deadline:
                self._drain_deadline = deadline
        self.state = "draining"
        if self._wake is not None:
            self._wake.set()

    def _on_notice(self, notice: str, seconds_left: float) -> None:
        """The cloud will take this machine in ``seconds_left``: stop, and let chunks go before it does."""
        self.notice = notice
        self.stop(StopReason.PREEMPTED, grace_s=max(0.0, seconds_left - self.settings.worker.notice_margin_s))

    def _on_stale(self, chunk_id: str) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._cancel_run, chunk_id, "stale")

    def _on_hung(self) -> None:
        assert self._loop is not None

        def hung() -> None:
            self._set_stop(StopReason.ENGINE_FAILED)
            for chunk_id in list(self._runs):
                self._cancel_run(chunk_id, "hung")

        self._loop.call_soon_threadsafe(hung)

    def _cancel_run(self, chunk_id: str, reason: str) -> None:
        run = self._runs.get(chunk_id)
        if (run is not None and run.task is not None and not run.task.done() and run.cancel_reason is None
                and not run.finishing):
            run.cancel_reason = reason
            run.task.cancel()

    def _describe(self) -> dict:
        return {"worker_id": self.worker_id, "pool": self.pool, "state": self.state,
                "engine": self.engine.kind, "chunks_done": self.chunks_done,
                "requests_uncommitted": self.requests_uncommitted, "requests_salvaged": self.requests_salvaged,
                "notice": self.notice}

    # -- main loop -------------------------------------------------------------
    async def run(self) -> StopReason:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._update_room()
        signals = self._install_signals()
        forwarder = Forwarder(self.engine, self.job_id, self.concurrency, self.settings.worker,
                              self.settings.engine, self.meter)
        heartbeat = Heartbeat(self.queue, self.book, self.meter, self.queue.settings, self.settings.worker,
                              self._on_stale, self._on_hung, self.metrics, self._describe)
        heartbeat.start()
        watcher = None
        if self.settings.worker.preemption_notices != "off":
            watcher = NoticeWatcher(self.settings.worker, self._on_notice)
            watcher.start()
        budget = None
        if self.time_budget_s is not None:
            claim_for = max(0.0, self.time_budget_s - self.settings.worker.drain_grace_s)
            budget = self._loop.call_later(claim_for, self._set_stop, StopReason.BUDGET)
        try:
            try:
                await self._claim_loop(forwarder)
            except (QueueUnavailableError, StoreUnavailableError) as e:
                log.error("stopping: %s", e)
                self._set_stop(StopReason.UNAVAILABLE)
            await self._finish_runs()
        finally:
            if budget is not None:
                budget.cancel()
            if watcher is not None:
                watcher.stop()
            for sig in signals:
                self._loop.remove_signal_handler(sig)
            heartbeat.stop()
            self.state = "stopped"
            heartbeat.report()
            await forwarder.aclose()
        assert self.stop_reason is not None
        log.info("worker %s stops: %s (%d chunks done)", self.worker_id, self.stop_reason.value, self.chunks_done)
        return self.stop_reason

    def _install_signals(self) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []  # serverless handlers may run us off the main thread; their platform stops them
        assert self._loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._set_stop, StopReason.SIGNALLED)
        return [signal.SIGTERM, signal.SIGINT]

    async def _claim_loop(self, forwarder: Forwarder) -> None:
        assert self._wake is not None
        waiting = asyncio.Semaphore(1 + self.queue.settings.prefetch)  # chunks claimed but not fully dispatched
        previous: asyncio.Event | None = None
        while self.stop_reason is None:
            if not await self._acquire_or_wake(waiting):
                break
            if not await self._room_or_wake():
                waiting.release()
                break
            if self.engine.failure:
                waiting.release()
                self._set_stop(StopReason.ENGINE_FAILED)
                break
            leases = await self._q(self.queue.claim, self.worker_id, self.pool, 1)
            if not leases:
                waiting.release()
                reason = await self._why_nothing_to_claim()
                if reason is not None:
                    self._set_stop(reason)
                    break
                await self._sleep_or_wake(self.settings.worker.idle_poll_s)
                continue
            lease = leases[0]
            run = _Run(lease)
            self._runs[lease.chunk_id] = run
            self._update_room()
            self.book.add(lease)
            run.task = asyncio.create_task(self._run_chunk(run, previous, waiting, forwarder))
            previous = run.dispatched

    async def _acquire_or_wake(self, sem: asyncio.Semaphore) -> bool:
        """Acquire ``sem`` unless a stop comes first."""
        assert self._wake is not None
        acquire = asyncio.ensure_future(sem.acquire())
        wake = asyncio.ensure_future(self._wake.wait())
        await asyncio.wait({acquire, wake}, return_when=asyncio.FIRST_COMPLETED)
        wake.cancel()
        if self.stop_reason is not None:
            if acquire.done():
                sem.release()
            else:
                acquire.cancel()
            return False
        return True

    async def _room_or_wake(self) -> bool:
        """Wait until another chunk may be claimed (see the module doc) unless a stop comes first."""
        assert self._room is not None and self._wake is not None
        if not self._room.is_set():
            room = asyncio.ensure_future(self._room.wait())
            wake = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({room, wake}, return_when=asyncio.FIRST_COMPLETED)
            room.cancel()
            wake.cancel()
        return self.stop_reason is None

    def _update_room(self) -> None:
        """Room for another claim: every held chunk is read and they have at most ``concurrency`` requests left to send."""
        if self._room is None:
            return
        unsent = [run.unsent for run in self._runs.values()]
        if None not in unsent and sum(unsent) <= self.concurrency:  # type: ignore[arg-type]
            self._room.set()
        else:
            self._room.clear()

    async def _sleep_or_wake(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _why_nothing_to_claim(self) -> StopReason | None:
        """Why a claim came back empty, if that should end the worker."""
        draining = await self._q(self.queue.draining)
        if self.pool in draining:
            return StopReason.DRAINED
        counts = await self._q(self.queue.counts)
        if counts.finished:
            return StopReason.FINISHED
        if self.burst and not self._runs and counts.pending == 0:
            if counts.leased and self.pool in await self._q(self.queue.standby):
                return None  # a swap is moving chunks to this pool: wait for them
            return StopReason.EMPTY
        return None

    async def _finish_runs(self) -> None:
        """Wait for held chunks; once a stop signal or the budget came, release what misses the grace period."""
        assert self._wake is not None
        if self.stop_reason in (StopReason.ENGINE_FAILED, StopReason.UNAVAILABLE):
            for chunk_id in list(self._runs):
                self._cancel_run(chunk_id, "release")
        while self._runs:
            if self._drain_deadline is not None:
                for chunk_id, run in list(self._runs.items()):
                    if not run.dispatching:
                        self._cancel_run(chunk_id, "release")  # not started: another worker gets it now
                if time.monotonic() >= self._drain_deadline:
                    for chunk_id in list(self._runs):
                        self._cancel_run(chunk_id, "release")
            tasks = {run.task for run in self._runs.values() if run.task is not None}
            left = None if self._drain_deadline is None else self._drain_deadline - time.monotonic()
            timeout = left if left is not None and left > 0 else None  # past it: every run is ending
            self._wake.clear()
            wake = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait(tasks | {wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()

    # -- one chunk -------------------------------------------------------------
    async def _run_chunk(self, run: _Run, previous: asyncio.Event | None, waiting: asyncio.Semaphore,
                         forwarder: Forwarder) -> None:
        chunk_id = run.lease.chunk_id
        tasks: list[asyncio.Task] = []
        released_waiting = False

        def done_dispatching() -> None:
            nonlocal released_waiting
            run.dispatched.set()
            if not released_waiting:
                released_waiting = True
                waiting.release()

        try:
            data = await asyncio.to_thread(self.store.get_bytes, self.layout.chunk(chunk_id))
            try:
                requests = parse_chunk(data)
            except (ValueError, KeyError, TypeError) as e:
                run.finishing = True
                log.error("chunk %s holds an unreadable line: %s", chunk_id, e)
                await self._q(self.queue.fail, self._lease(run), f"unreadable chunk data: {e}", False)
                return
            run.raw = [line for line in data.splitlines() if line.strip()]  # position i <-> requests[i]
            run.unsent = len(requests)
            self._update_room()
            if previous is not None:
                await previous.wait()

            def answered(position: int, task: asyncio.Future) -> None:
                if not task.cancelled() and task.exception() is None:
                    run.lines[position] = task.result()
                    run.finished += 1
                    self.requests_uncommitted += 1

            for position, req in enumerate(requests):
                if self._halt:
                    break  # stopping: what is in flight finishes, the rest is handed back
                task = await forwarder.submit(chunk_id, req)
                if self._halt:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    break
                task.add_done_callback(functools.partial(answered, position))
                tasks.append(task)
                run.dispatching = True  # a request is in flight: on stop, this chunk gets the grace period
                run.unsent -= 1
                if run.unsent <= self.concurrency:
                    self._update_room()
            done_dispatching()
            if tasks:
                await asyncio.wait(tasks)
            for t in tasks:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]  # EngineError: the engine is gone
            run.finishing = True
            if len(run.lines) == len(requests):
                await self._commit(run, [run.lines[i] for i in range(len(requests))])
            else:
                await self._salvage(run, len(requests))
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if run.cancel_reason == "release":
                await self._salvage(run, None)
            elif run.cancel_reason is None:
                raise
            else:
                log.warning("abandoned chunk %s (%s)", chunk_id, run.cancel_reason)
        except StaleLeaseError:
            log.warning("lease on chunk %s was fenced off before commit: nothing uploaded", chunk_id)
        except EngineError as e:
            run.finishing = True
            log.error("engine failed during chunk %s: %s", chunk_id, e)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._salvage(run, None)
            self._set_stop(StopReason.ENGINE_FAILED)
        except (QueueUnavailableError, StoreUnavailableError) as e:
            run.finishing = True
            log.error("chunk %s: %s", chunk_id, e)
            await self._salvage(run, None)
            self._set_stop(StopReason.UNAVAILABLE)
        except OrcaError as e:
            run.finishing = True
            log.error("chunk %s failed: %s", chunk_id, e)
            try:
                await self._q(self.queue.fail, self._lease(run), str(e), True)
            except OrcaError as e2:
                log.warning("could not fail chunk %s: %s", chunk_id, e2)
        finally:
            done_dispatching()
            self.requests_uncommitted -= run.finished  # committed (now counted by the chunk) or given up
            self.book.remove(chunk_id)
            self._runs.pop(chunk_id, None)
            self._update_room()

    async def _q(self, call, *args):
        """A queue call off the loop that rides out a Redis outage of up to ``worker.redis_outage_s``
        (leases stay held: the heartbeat renews them as soon as Redis answers again)."""
        outage_since: float | None = None
        while True:
            try:
                return await asyncio.to_thread(call, *args)
            except QueueUnavailableError as e:
                now = time.monotonic()
                if outage_since is None:
                    outage_since = now
                    log.warning("Redis unreachable (%s); riding it out for up to %.0f s", e, self.settings.worker.redis_outage_s)
                if now - outage_since >= self.settings.worker.redis_outage_s:
                    raise
                await asyncio.sleep(self.queue.settings.retry_backoff_s)

    def _lease(self, run: _Run) -> Lease:
        return self.book.get(run.lease.chunk_id) or run.lease

    async def _commit(self, run: _Run, lines: list[dict]) -> None:
        """Fence check, upload under the lease's generation, then complete (the commit point)."""
        lease = await self._q(self.queue.renew, self._lease(run))
        self.book.update(lease)
        key = self.layout.chunk_output(lease.chunk_id, lease.generation)
        await asyncio.to_thread(self.store.put_bytes, key, encode_lines(lines))
        if self.usage is not None:  # before the commit, so every committed output has its usage
            await self._q(self.usage.record, self.job_id, lease.chunk_id, lease.generation, lines_usage(lines))
        await self._q(self.queue.complete, lease)
        self.chunks_done += 1

    async def _salvage(self, run: _Run, n_requests: int | None) -> None:
        """The chunk must be let go: commit what was answered, hand the rest back (no attempt charged).

        All answered: a normal commit. Nothing answered: a plain release. Otherwise a partial
        commit under the lease (``ChunkQueue.split``): the answered part's data, its output and the
        rest's data are written first, then the split record, then the fenced split (the commit
        point); a stale lease gets STALE and its objects are never referenced.
        """
        n = len(run.raw) if n_requests is None else n_requests
        try:
            if run.raw is None or not run.lines:
                await self._release(run)
            elif len(run.lines) == n:
                await self._commit(run, [run.lines[i] for i in range(n)])
            else:
                await self._split(run, n)
        except StaleLeaseError:
            log.warning("lease on chunk %s was fenced off before its partial commit: nothing kept", run.lease.chunk_id)
        except OrcaError as e:  # the lease will expire and be reaped instead
            log.warning("partial commit of chunk %s failed: %s", run.lease.chunk_id, e)

    async def _split(self, run: _Run, n: int) -> None:
        assert run.raw is not None
        lease = await self._q(self.queue.renew, self._lease(run))  # fence check before writing
        self.book.update(lease)
        tag = f"{lease.generation}{secrets.token_hex(3)}"
        answered_id, rest_id = split_children(lease.chunk_id, tag)
        done = sorted(run.lines)
        rest = [i for i in range(n) if i not in run.lines]
        put = self.store.put_bytes
        await asyncio.to_thread(put, self.layout.chunk(answered_id), b"".join(run.raw[i] + b"\n" for i in done))
        await asyncio.to_thread(put, self.layout.chunk_output(answered_id, 1), encode_lines([run.lines[i] for i in done]))
        await asyncio.to_thread(put, self.layout.chunk(rest_id), b"".join(run.raw[i] + b"\n" for i in rest))
        record = ChunkSplit(chunk_id=lease.chunk_id, tag=tag, answered=SplitPart(chunk_id=answered_id, positions=done),
                            rest=SplitPart(chunk_id=rest_id, positions=rest))
        await asyncio.to_thread(put, self.layout.split(lease.chunk_id, tag), record.model_dump_json().encode())
        if self.usage is not None:  # the answered part's usage, before it commits
            await self._q(self.usage.record, self.job_id, answered_id, 1,
                                    lines_usage([run.lines[i] for i in done]))
        await self._q(self.queue.split, lease, tag)
        self.chunks_done += 1
        self.requests_salvaged += len(done)
        log.info("chunk %s: kept %d answered request(s), handed %d back as %s", lease.chunk_id, len(done), len(rest), rest_id)

    async def _release(self, run: _Run) -> None:
        try:
            await self._q(self.queue.release, self._lease(run))
            log.info("released chunk %s", run.lease.chunk_id)
        except StaleLeaseError:
            pass
        except OrcaError as e:  # the lease will expire and be reaped instead
            log.warning("release of chunk %s failed: %s", run.lease.chunk_id, e)

