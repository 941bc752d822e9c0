"""Serverless entry point: one call runs a worker until the queue is empty or a time budget ends.

Modal and RunPod handlers wrap :func:`run_until_empty`. The worker runs in burst
mode: it exits when nothing is pending and it holds nothing. It stops claiming
``drain_grace_s`` before the budget ends and releases (no attempt charged)
whatever is still unfinished at the budget, so a platform time limit above the
budget never kills it holding leases.
"""

from __future__ import annotations

import os
import socket
import uuid

from orca.settings import Settings, get_settings
from orca.worker.engines import Engine, EngineSpec
from orca.worker.runner import WorkerConfig, run_worker


def run_until_empty(job_id: str, redis_url: str, store_url: str, *, engine: EngineSpec | Engine | str = "vllm",
                    model: str | None = None, pool: str = "serverless", worker_id: str | None = None,
                    time_budget_s: float | None = None, max_concurrency: int | None = None,
                    settings: Settings | None = None) -> dict:
    """Run one burst worker; returns ``{"exit_code", "stop_reason", "worker_id"}``.

    ``engine``: an engine kind (with ``model``), a full :class:`EngineSpec`, or an
    already running :class:`Engine` (kept running afterwards, so a warm container
    reuses its loaded model across invocations).
    """
    settings = settings or get_settings()
    running: Engine | None = engine if isinstance(engine, Engine) else None
    if isinstance(engine, str):
        spec = EngineSpec(kind=engine, model=model or "smollm2")  # type: ignore[arg-type]
    elif isinstance(engine, EngineSpec):
        spec = engine
    else:
        spec = EngineSpec(kind="external", model=model or "smollm2")  # describes the running engine
    worker_id = worker_id or f"{pool}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    config = WorkerConfig(job_id=job_id, redis_url=redis_url, store_url=store_url, pool=pool, worker_id=worker_id,
                          engine=spec, burst=True, max_concurrency=max_concurrency,
                          time_budget_s=time_budget_s if time_budget_s is not None else settings.launcher.serverless_budget_s)
    code, reason = run_worker(config, settings, engine=running)
    return {"exit_code": int(code), "stop_reason": reason.value if reason else None, "worker_id": worker_id}
