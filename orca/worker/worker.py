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

Stopping: SIGTERM/SIGINT (or a serverless time budget) stops claims, releases
chunks that have not started, gives the rest ``drain_grace_s`` to finish, then
releases what is left (no attempt charged). A drained pool or an empty queue in
burst mode finishes its chunks and exits. A fenced-off lease is abandoned at once
(its requests cancelled); a hung engine loses every lease (renewals stop); an
engine that is gone for good gets its chunks released.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import threading
import time
from dataclasses import dataclass, field

from orca.errors import EngineError, OrcaError, QueueUnavailableError, StaleLeaseError, StoreUnavailableError
from orca.queue.chunk_usage import ChunkUsageStore
from orca.queue.types import Lease
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
    ENGINE_FAILED = "engine_failed"
    UNAVAILABLE = "unavailable"    # Redis or the object store stayed unreachable through retries

    @property
    def exit_code(self) -> ExitCode:
        if self is StopReason.ENGINE_FAILED:
            return ExitCode.ENGINE_FAILED
        if self is StopReason.UNAVAILABLE:
            return ExitCode.UNAVAILABLE
        return ExitCode.OK


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
        self.stop_reason: StopReason | None = None
        self.state = "running"
        self._runs: dict[str, _Run] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._room: asyncio.Event | None = None  # set while the held chunks have few enough requests left to send
        self._drain_deadline: float | None = None  # monotonic; set by a stop signal or the budget

    # -- control from outside the loop ---------------------------------------
    def stop(self, reason: StopReason = StopReason.SIGNALLED) -> None:
        """Stop claiming and drain (thread-safe; what SIGTERM does)."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._set_stop, reason)

    def _set_stop(self, reason: StopReason) -> None:
        if self.stop_reason is None or reason in (StopReason.ENGINE_FAILED, StopReason.UNAVAILABLE):
            self.stop_reason = reason
        if reason in (StopReason.SIGNALLED, StopReason.BUDGET) and self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.settings.worker.drain_grace_s
        self.state = "draining"
        if self._wake is not None:
            self._wake.set()

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
                "requests_uncommitted": self.requests_uncommitted}

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
            leases = await asyncio.to_thread(self.queue.claim, self.worker_id, self.pool, 1)
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
        draining = await asyncio.to_thread(self.queue.draining)
        if self.pool in draining:
            return StopReason.DRAINED
        counts = await asyncio.to_thread(self.queue.counts)
        if counts.finished:
            return StopReason.FINISHED
        if self.burst and not self._runs and counts.pending == 0:
            if counts.leased and self.pool in await asyncio.to_thread(self.queue.standby):
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
                await asyncio.to_thread(self.queue.fail, self._lease(run), f"unreadable chunk data: {e}", False)
                return
            run.unsent = len(requests)
            self._update_room()
            if previous is not None:
                await previous.wait()
            def answered(task: asyncio.Future) -> None:
                if not task.cancelled():
                    run.finished += 1
                    self.requests_uncommitted += 1

            for req in requests:
                task = await forwarder.submit(chunk_id, req)
                task.add_done_callback(answered)
                tasks.append(task)
                run.dispatching = True  # a request is in flight: on stop, this chunk gets the grace period
                run.unsent -= 1
                if run.unsent <= self.concurrency:
                    self._update_room()
            done_dispatching()
            lines = await asyncio.gather(*tasks)
            run.finishing = True
            await self._commit(run, lines)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if run.cancel_reason == "release":
                await self._release(run)
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
            await self._release(run)
            self._set_stop(StopReason.ENGINE_FAILED)
        except (QueueUnavailableError, StoreUnavailableError) as e:
            run.finishing = True
            log.error("chunk %s: %s", chunk_id, e)
            await self._release(run)
            self._set_stop(StopReason.UNAVAILABLE)
        except OrcaError as e:
            run.finishing = True
            log.error("chunk %s failed: %s", chunk_id, e)
            try:
                await asyncio.to_thread(self.queue.fail, self._lease(run), str(e), True)
            except OrcaError as e2:
                log.warning("could not fail chunk %s: %s", chunk_id, e2)
        finally:
            done_dispatching()
            self.requests_uncommitted -= run.finished  # committed (now counted by the chunk) or given up
            self.book.remove(chunk_id)
            self._runs.pop(chunk_id, None)
            self._update_room()

    def _lease(self, run: _Run) -> Lease:
        return self.book.get(run.lease.chunk_id) or run.lease

    async def _commit(self, run: _Run, lines: list[dict]) -> None:
        """Fence check, upload under the lease's generation, then complete (the commit point)."""
        lease = await asyncio.to_thread(self.queue.renew, self._lease(run))
        self.book.update(lease)
        key = self.layout.chunk_output(lease.chunk_id, lease.generation)
        await asyncio.to_thread(self.store.put_bytes, key, encode_lines(lines))
        if self.usage is not None:  # before the commit, so every committed output has its usage
            await asyncio.to_thread(self.usage.record, self.job_id, lease.chunk_id, lease.generation, lines_usage(lines))
        await asyncio.to_thread(self.queue.complete, lease)
        self.chunks_done += 1

    async def _release(self, run: _Run) -> None:
        try:
            await asyncio.to_thread(self.queue.release, self._lease(run))
            log.info("released chunk %s", run.lease.chunk_id)
        except StaleLeaseError:
            pass
        except OrcaError as e:  # the lease will expire and be reaped instead
            log.warning("release of chunk %s failed: %s", run.lease.chunk_id, e)

