"""One serverless invocation's body, shared by the Modal function and the RunPod handler.

The platform passes the arguments built by ``orca.launchers.modal.invocation_kwargs``;
this turns them into the worker's own configuration (through the worker CLI parser, so
engine arguments mean exactly what they mean to ``python -m orca.worker``) and runs
``orca.worker.serverless.run_until_empty`` until the queue is empty, the pool is
drained, or the time budget ends. A Redis or store URL left out of the arguments
(because it carries a password) is read from ``ORCA_REDIS_URL`` / ``ORCA_STORE_URL``,
which the platform's secret provides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from orca.errors import ConfigError
from orca.launchers.worker_env import REDIS_URL, STORE_URL
from orca.settings import Settings, get_settings


def worker_argv(args: Mapping[str, Any], redis_url: str, store_url: str) -> list[str]:
    """``python -m orca.worker`` arguments for one invocation."""
    argv = ["--job", str(args["job_id"]), "--redis-url", redis_url, "--store-url", store_url,
            "--pool", str(args["pool"]), "--worker-id", str(args["worker_id"]), "--engine", str(args["engine"]),
            "--tp", str(args.get("tp", 1)), "--pp", str(args.get("pp", 1)), "--burst"]
    if args.get("model"):
        argv += ["--model", str(args["model"])]
    for name, value in sorted((args.get("engine_args") or {}).items()):
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def run_invocation(args: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                   settings: Settings | None = None) -> dict:
    """Run one burst worker for ``args``; returns ``run_until_empty``'s summary."""
    from orca.worker.__main__ import parse_config
    from orca.worker.serverless import run_until_empty

    environ = os.environ if environ is None else environ
    settings = settings or get_settings()
    redis_url = args.get("redis_url") or environ.get(REDIS_URL)
    store_url = args.get("store_url") or environ.get(STORE_URL)
    if not redis_url or not store_url:
        raise ConfigError("the invocation has no Redis or store URL (argument or platform secret)",
                          names=[REDIS_URL, STORE_URL])
    config = parse_config(worker_argv(args, redis_url, store_url), settings)
    return run_until_empty(config.job_id, config.redis_url, config.store_url, engine=config.engine,
                           pool=config.pool, worker_id=config.worker_id,
                           time_budget_s=float(args["time_budget_s"]), settings=settings)
