"""``python -m orca.worker``: one worker process of a job (every launcher starts this).

Every option can also come from the environment (launchers such as SkyPilot and
serverless platforms pass envs): ``ORCA_JOB_ID``, ``ORCA_REDIS_URL``,
``ORCA_STORE_URL``, ``ORCA_POOL``, ``ORCA_WORKER_ID``, ``ORCA_ENGINE_KIND``,
``ORCA_ENGINE_URL``, ``ORCA_ENGINE_API_KEY_ENV``, ``ORCA_MODEL``, ``ORCA_MODEL_PATH``,
``ORCA_TP``, ``ORCA_PP``, ``ORCA_MAX_MODEL_LEN``, ``ORCA_GPU_MEMORY_UTILIZATION``,
``ORCA_BURST`` (1/true), ``ORCA_MAX_CONCURRENCY``, ``ORCA_FAKE_SLOTS``,
``ORCA_FAKE_LATENCY_S``. A command-line option wins over its variable.
Timings and limits come from ``orca.settings`` (``ORCA_WORKER__...``, ``ORCA_QUEUE__...``).

Exit codes:
  0  the job finished, the queue was empty (--burst), the pool was drained, or
     SIGTERM/SIGINT stopped it (unfinished chunks released, no attempt charged)
  1  unexpected error
  2  bad arguments or configuration
  3  the engine did not start, crashed more than max_restarts times, or hung
  4  Redis or the object store could not be reached
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from orca.settings import Settings
from orca.worker.engines import ENGINE_KINDS, EngineSpec
from orca.worker.runner import WorkerConfig, run_worker
from orca.worker.worker import ExitCode


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _flag(name: str) -> bool:
    return (_env(name, "") or "").lower() in ("1", "true", "yes", "on")


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orca.worker", description="Run one orca worker.",
                                epilog="exit codes: 0 finished/empty/drained/stopped, 1 error, 2 usage, "
                                       "3 engine failed, 4 Redis or store unreachable")
    p.add_argument("--job", default=_env("ORCA_JOB_ID"), help="job id [ORCA_JOB_ID]")
    p.add_argument("--redis-url", default=_env("ORCA_REDIS_URL", settings.redis_url), help="[ORCA_REDIS_URL]")
    p.add_argument("--store-url", default=_env("ORCA_STORE_URL", settings.store_url), help="[ORCA_STORE_URL]")
    p.add_argument("--pool", default=_env("ORCA_POOL", "local"), help="pool this worker claims for [ORCA_POOL]")
    p.add_argument("--worker-id", default=_env("ORCA_WORKER_ID", f"{socket.gethostname()}-{os.getpid()}"),
                   help="[ORCA_WORKER_ID]")
    p.add_argument("--engine", default=_env("ORCA_ENGINE_KIND", "llamacpp"), choices=ENGINE_KINDS,
                   help="[ORCA_ENGINE_KIND] (not ORCA_ENGINE: that name is the engine settings section)")
    p.add_argument("--engine-url", default=_env("ORCA_ENGINE_URL"), help="external engine root URL [ORCA_ENGINE_URL]")
    p.add_argument("--engine-api-key-env", default=_env("ORCA_ENGINE_API_KEY_ENV"),
                   help="name of the env var holding the external engine's bearer token [ORCA_ENGINE_API_KEY_ENV]")
    p.add_argument("--model", default=_env("ORCA_MODEL", "smollm2"),
                   help="model name the engine answers to (the job's model) [ORCA_MODEL]")
    p.add_argument("--model-path", default=_env("ORCA_MODEL_PATH"),
                   help="weights: HF id/dir for vLLM, .gguf for llama.cpp (default: the model name / packaged SmolLM2) "
                        "[ORCA_MODEL_PATH]")
    p.add_argument("--tp", type=int, default=int(_env("ORCA_TP", "1")), help="[ORCA_TP]")
    p.add_argument("--pp", type=int, default=int(_env("ORCA_PP", "1")), help="[ORCA_PP]")
    mml = _env("ORCA_MAX_MODEL_LEN")
    p.add_argument("--max-model-len", type=int, default=int(mml) if mml else None, help="[ORCA_MAX_MODEL_LEN]")
    gmu = _env("ORCA_GPU_MEMORY_UTILIZATION")
    p.add_argument("--gpu-memory-utilization", type=float, default=float(gmu) if gmu else None,
                   help="[ORCA_GPU_MEMORY_UTILIZATION]")
    p.add_argument("--burst", action="store_true", default=_flag("ORCA_BURST"),
                   help="exit when nothing is pending and nothing is leased by this worker [ORCA_BURST]")
    mc = _env("ORCA_MAX_CONCURRENCY")
    p.add_argument("--max-concurrency", type=int, default=int(mc) if mc else None,
                   help="requests in flight (default: sized to the engine) [ORCA_MAX_CONCURRENCY]")
    p.add_argument("--fake-slots", type=int, default=int(_env("ORCA_FAKE_SLOTS", "64")),
                   help="fake engine: requests served at once [ORCA_FAKE_SLOTS]")
    p.add_argument("--fake-latency-s", type=float, default=float(_env("ORCA_FAKE_LATENCY_S", "0")),
                   help="fake engine: seconds per request [ORCA_FAKE_LATENCY_S]")
    return p


def parse_config(argv: list[str] | None, settings: Settings) -> WorkerConfig:
    parser = build_parser(settings)
    a = parser.parse_args(argv)
    store_url = a.store_url or f"file://{(settings.home / 'store').resolve()}"
    missing = [name for name, value in (("--job", a.job), ("--redis-url", a.redis_url)) if not value]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or their ORCA_* variables)")
    if a.engine == "external" and not a.engine_url:
        parser.error("--engine external needs --engine-url")
    spec = EngineSpec(kind=a.engine, model=a.model, model_path=a.model_path, url=a.engine_url,
                      api_key_env=a.engine_api_key_env, tp=a.tp, pp=a.pp, max_model_len=a.max_model_len,
                      gpu_memory_utilization=a.gpu_memory_utilization, fake_slots=a.fake_slots,
                      fake_latency_s=a.fake_latency_s)
    return WorkerConfig(job_id=a.job, redis_url=a.redis_url, store_url=store_url, pool=a.pool,
                        worker_id=a.worker_id, engine=spec, burst=a.burst, max_concurrency=a.max_concurrency)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("ORCA_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    settings = Settings()
    try:
        config = parse_config(argv, settings)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0) and ExitCode.USAGE
    code, _ = run_worker(config, settings)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
