"""Run one worker end to end: connect to the queue and store, start the engine, loop, stop, exit code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from orca.errors import ConfigError, EngineError, OrcaError, QueueUnavailableError, StoreUnavailableError
from orca.settings import Settings
from orca.worker.engines import Engine, EngineSpec, make_engine
from orca.worker.worker import ExitCode, StopReason, Worker

log = logging.getLogger("orca.worker")


@dataclass(frozen=True)
class WorkerConfig:
    job_id: str
    redis_url: str
    store_url: str
    pool: str
    worker_id: str
    engine: EngineSpec
    burst: bool = False
    max_concurrency: int | None = None      # None: sized to the engine
    time_budget_s: float | None = None      # serverless: stop claiming in time to release within it


def engine_concurrency(config: WorkerConfig, settings: Settings) -> int:
    """Requests in flight: the explicit value, else what the engine kind can absorb."""
    if config.max_concurrency is not None:
        return config.max_concurrency
    if config.engine.kind == "llamacpp":
        return settings.engine.llamacpp_parallel
    if config.engine.kind == "fake":
        return config.engine.fake_slots
    return settings.worker.max_concurrency


def run_worker(config: WorkerConfig, settings: Settings, engine: Engine | None = None) -> tuple[ExitCode, StopReason | None]:
    """Run a worker until it stops; returns its exit code and why it stopped.

    ``engine``: an already running engine to use (not stopped here); default:
    start the one ``config.engine`` describes and stop it at the end.
    """
    from orca.queue import ChunkQueue
    from orca.queue.chunk_usage import ChunkUsageStore
    from orca.queue.worker_metrics import WorkerMetrics, WorkerMetricsStore
    from orca.storage import open_store

    with contextlib.ExitStack() as stack:
        try:
            queue = ChunkQueue(config.redis_url, config.job_id, settings.queue)
            stack.callback(queue.close)
            metrics = WorkerMetricsStore(config.redis_url, config.job_id, settings.queue)
            stack.callback(metrics.close)
            usage = ChunkUsageStore(config.redis_url, settings.queue)
            stack.callback(usage.close)
            store = open_store(config.store_url)
            metrics.report(WorkerMetrics(  # visible to the control plane while the engine loads
                worker_id=config.worker_id, pool=config.pool, state="starting", engine=config.engine.kind,
                requests_total=0, errors_total=0, chunks_done=0, in_flight=0, requests_per_s=0.0,
                tokens_per_s=0.0, prompt_tokens_per_s=0.0, busy_fraction=0.0))
            if engine is None:
                engine = make_engine(config.engine, settings.engine)
                stack.callback(engine.stop)
                log.info("starting %s engine for model %s", config.engine.kind, config.engine.model)
                engine.start()
            worker = Worker(job_id=config.job_id, pool=config.pool, worker_id=config.worker_id, queue=queue,
                            store=store, engine=engine, settings=settings,
                            concurrency=engine_concurrency(config, settings), burst=config.burst,
                            time_budget_s=config.time_budget_s, metrics=metrics, usage=usage)
            reason = asyncio.run(worker.run())
            return reason.exit_code, reason
        except ConfigError as e:
            log.error("configuration: %s", e)
            return ExitCode.USAGE, None
        except EngineError as e:
            log.error("engine: %s", e)
            return ExitCode.ENGINE_FAILED, None
        except (QueueUnavailableError, StoreUnavailableError) as e:
            log.error("unavailable: %s", e)
            return ExitCode.UNAVAILABLE, None
        except OrcaError as e:
            log.exception("worker failed: %s", e)
            return ExitCode.ERROR, None
