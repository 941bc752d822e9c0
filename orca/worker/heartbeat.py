"""The worker's heartbeat: a thread that renews leases, watches engine progress and reports metrics.

It runs beside the event loop, so a loop busy parsing a large response (or stuck)
does not cost the worker its leases; and because it stops renewing when the
engine makes no progress, a hung engine cannot hold chunks forever either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from orca.errors import OrcaError, StaleLeaseError
from orca.queue.types import Lease
from orca.queue.worker_metrics import WorkerMetrics, WorkerMetricsStore
from orca.settings import QueueSettings, WorkerSettings
from orca.worker.meter import Meter, MeterSnapshot

log = logging.getLogger("orca.worker")


class LeaseBook:
    """The leases a worker holds, shared by the event loop and the heartbeat thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._renewed_at: dict[str, float] = {}

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases[lease.chunk_id] = lease
            self._renewed_at[lease.chunk_id] = time.monotonic()

    def update(self, lease: Lease) -> None:
        with self._lock:
            if lease.chunk_id in self._leases:
                self._leases[lease.chunk_id] = lease
                self._renewed_at[lease.chunk_id] = time.monotonic()

    def remove(self, chunk_id: str) -> None:
        with self._lock:
            self._leases.pop(chunk_id, None)
            self._renewed_at.pop(chunk_id, None)

    def get(self, chunk_id: str) -> Lease | None:
        with self._lock:
            return self._leases.get(chunk_id)

    def due(self, every_s: float) -> list[Lease]:
        now = time.monotonic()
        with self._lock:
            return [lease for cid, lease in self._leases.items() if now - self._renewed_at[cid] >= every_s]

    def __len__(self) -> int:
        with self._lock:
            return len(self._leases)


class Heartbeat(threading.Thread):
    """Renews due leases every tick; calls ``on_stale(chunk_id)`` for a lease fenced off and
    ``on_hung()`` once when requests stay in flight with none completing for ``progress_stall_s``."""

    def __init__(self, queue, book: LeaseBook, meter: Meter, queue_settings: QueueSettings,
                 settings: WorkerSettings, on_stale: Callable[[str], None], on_hung: Callable[[], None],
                 metrics: WorkerMetricsStore | None = None,
                 describe: Callable[[], dict] | None = None) -> None:
        super().__init__(name="orca-heartbeat", daemon=True)
        self.queue, self.book, self.meter = queue, book, meter
        self.queue_settings, self.settings = queue_settings, settings
        self.on_stale, self.on_hung = on_stale, on_hung
        self.metrics, self.describe = metrics, describe
        self.hung = False
        self._renew_failing = False
        self._stop_event = threading.Event()
        self._last_report: MeterSnapshot = meter.snapshot()
        self._next_report = time.monotonic() + settings.metrics_every_s

    def stop(self) -> None:
        self._stop_event.set()
        self.join(max(5.0, self.queue_settings.socket_timeout_s))

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.tick_s):
            if not self.hung and self.meter.stalled_for() > self.settings.progress_stall_s:
                self.hung = True
                log.error("engine made no progress for %.0f s with requests in flight: giving up leases",
                          self.settings.progress_stall_s)
                self.on_hung()
            if not self.hung:
                self._renew_due()
            if self.metrics is not None and time.monotonic() >= self._next_report:
                self.report()

    def _renew_due(self) -> None:
        for lease in self.book.due(self.queue_settings.renew_every_s):
            if self._stop_event.is_set() or self.hung:
                return
            try:
                self.book.update(self.queue.renew(lease))
                if self._renew_failing:
                    log.info("lease renewals work again")
                    self._renew_failing = False
            except StaleLeaseError:
                log.warning("lease on %s (generation %d) was fenced off: abandoning it",
                            lease.chunk_id, lease.generation)
                self.book.remove(lease.chunk_id)
                self.on_stale(lease.chunk_id)
            except OrcaError as e:  # Redis unreachable: retry next tick (an expired lease holds until reaped)
                if not self._renew_failing:
                    log.warning("lease renewal of %s failed: %s; retrying every tick", lease.chunk_id, e)
                self._renew_failing = True
                return

    def report(self, state: str | None = None) -> None:
        """Write one metrics report covering the time since the previous one."""
        if self.metrics is None or self.describe is None:
            return
        snap = self.meter.snapshot()
        prev, self._last_report = self._last_report, snap
        self._next_report = time.monotonic() + self.settings.metrics_every_s
        dt = max(snap.at - prev.at, 1e-9)
        info = self.describe()
        if state is not None:
            info["state"] = state
        record = WorkerMetrics(
            requests_total=snap.requests, errors_total=snap.errors, in_flight=snap.in_flight,
            requests_per_s=(snap.requests - prev.requests) / dt,
            tokens_per_s=(snap.completion_tokens - prev.completion_tokens) / dt,
            prompt_tokens_per_s=(snap.prompt_tokens - prev.prompt_tokens) / dt,
            busy_fraction=min(1.0, (snap.busy_s - prev.busy_s) / dt),
            **info,
        )
        try:
            self.metrics.report(record)
        except OrcaError as e:
            log.warning("metrics report failed: %s", e)
