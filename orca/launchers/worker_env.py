"""What a cloud worker is told, split into plain settings and secrets passed by name.

Every cloud launcher (SkyPilot, Modal, RunPod) gives its workers the same environment
variables. Values that are credentials never go into a rendered template or an
invocation payload: they travel as *secret names*, and the value comes from the
launcher's own environment (SkyPilot ``secrets`` overrides) or from a secret the user
configured on the platform (a Modal secret, RunPod endpoint environment).

A Redis or store URL that embeds a user or password (``redis://:pw@host:6379/0``) is
itself a credential, so it becomes a secret; a URL without one is plain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from orca.errors import ConfigError
from orca.launchers.base import PoolSpec, WorkerEnv

JOB_ID = "ORCA_JOB_ID"
REDIS_URL = "ORCA_REDIS_URL"
STORE_URL = "ORCA_STORE_URL"
POOL = "ORCA_POOL"
WORKER_ID = "ORCA_WORKER_ID"
MODEL = "ORCA_MODEL"


def has_credentials(url: str) -> bool:
    """Whether ``url`` embeds a user name or password."""
    parts = urlsplit(url)
    return bool(parts.username or parts.password)


def worker_environment(env: WorkerEnv, pool: PoolSpec, replica_id: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """``(plain variables, secret names)`` for one replica's worker."""
    plain = {JOB_ID: env.job_id, POOL: pool.key, WORKER_ID: replica_id, MODEL: env.model}
    secrets = list(env.secret_env_names)
    for name, url in ((REDIS_URL, env.redis_url), (STORE_URL, env.store_url)):
        if has_credentials(url):
            secrets.append(name)
        else:
            plain[name] = url
    return plain, tuple(dict.fromkeys(secrets))


def secret_values(env: WorkerEnv, names: tuple[str, ...], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values of the secret ``names`` from the launcher's side: URLs from ``env``, the rest from its environment.

    Raises ConfigError naming a secret that is not set: a worker without its credentials
    would only fail later, on a GPU that is already billing.
    """
    environ = os.environ if environ is None else environ
    known = {REDIS_URL: env.redis_url, STORE_URL: env.store_url}
    values: dict[str, str] = {}
    missing = []
    for name in names:
        value = known.get(name, environ.get(name))
        if value is None:
            missing.append(name)
        else:
            values[name] = value
    if missing:
        raise ConfigError("worker secrets are not set in the launcher's environment", names=missing)
    return values
