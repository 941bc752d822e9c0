"""Every Redis key orca uses, in one place.

All of a job's keys share the hash tag ``{job_id}`` so they live in one Redis
Cluster slot and a Lua script may touch them together.
"""

from __future__ import annotations

PREFIX = "orca"

#: Set of every job id known to the control plane; a restarted server re-adopts these.
JOBS = f"{PREFIX}:jobs"
#: Hash token -> user name for API auth.
TOKENS = f"{PREFIX}:tokens"
#: Hash user name -> JSON user record (role, quota overrides, current token hash).
USERS = f"{PREFIX}:users"
#: Hash user name -> unix s of its revoke: names whose jobs and files outlive their user. A new user
#: gets such a name only when the admin says the old jobs go with it.
RETIRED_USERS = f"{PREFIX}:users:retired"
#: Hash file_id -> JSON file record (OpenAI /v1/files).
FILES = f"{PREFIX}:files"
#: Sorted set file_id -> expires_at (unix s) of files that expire: the retention step's worklist.
FILES_EXPIRY = f"{PREFIX}:files:expiry"
#: Sorted set of controller heartbeats (member: controller id, score: unix ms): a call marked by a
#: controller that stopped beating is orphaned and taken over.
CONTROLLERS = f"{PREFIX}:controllers"
#: Name of the RQ queue that runs the control plane's long steps (RQ derives its own keys from it).
RQ_QUEUE = f"{PREFIX}-control"


def user_jobs(user: str) -> str:
    """Sorted set job id -> created_at: one user's jobs, for newest-first listing."""
    return f"{PREFIX}:user:{user}:jobs"


def session(session_hash: str) -> str:
    """String with a TTL: a dashboard sign-in (JSON {user, created_at}); named by the SHA-256 of the cookie value."""
    return f"{PREFIX}:session:{session_hash}"


def user_files(user: str) -> str:
    """Sorted set file id -> created_at: one user's uploaded and result files."""
    return f"{PREFIX}:user:{user}:files"


def _job(job_id: str, suffix: str) -> str:
    return f"{PREFIX}:{{{job_id}}}:{suffix}"


def job_meta(job_id: str) -> str:
    """Hash: the job record (spec, status, timestamps, plan, swap history)."""
    return _job(job_id, "meta")


def job_pending(job_id: str) -> str:
    """List of chunk ids waiting to be claimed (claims pop from the left)."""
    return _job(job_id, "pending")


def job_leases(job_id: str) -> str:
    """Sorted set chunk id -> lease expiry (ms, Redis TIME)."""
    return _job(job_id, "leases")


def job_done(job_id: str) -> str:
    """Hash chunk id -> committed generation, for chunks whose completion was accepted."""
    return _job(job_id, "done")


def job_dead(job_id: str) -> str:
    """Hash chunk id -> last error of dead-lettered chunks."""
    return _job(job_id, "dead")


def job_counts(job_id: str) -> str:
    """Hash of counters: pending, leased, done, dead, total."""
    return _job(job_id, "counts")


def job_chunks(job_id: str) -> str:
    """Hash chunk id -> JSON record {state, attempts, gen, owner, pool, committed, error}.

    One hash for all chunks (not one key per chunk) so that claim and reap, which
    find their chunk ids inside the script, still touch only keys passed in KEYS.
    """
    return _job(job_id, "chunks")


def job_splits(job_id: str) -> str:
    """Hash chunk id -> tag of its accepted partial commit (the chunk was replaced by two children)."""
    return _job(job_id, "splits")


def job_prefix(job_id: str) -> str:
    """Prefix shared by every key of a job (for SCAN on deletion)."""
    return _job(job_id, "")


def job_draining(job_id: str) -> str:
    """Set of pool names that may not claim (drained by swap or scale-down)."""
    return _job(job_id, "draining")


def job_standby(job_id: str) -> str:
    """Set of pool names whose burst workers wait for work instead of exiting while chunks are
    leased elsewhere (a swap's new pool, until the old pool has handed its chunks over)."""
    return _job(job_id, "standby")


def job_workers(job_id: str) -> str:
    """Sorted set worker id -> last metrics report (unix ms)."""
    return _job(job_id, "workers")


def job_worker_metrics(job_id: str, worker_id: str) -> str:
    """Hash of one worker's metrics (requests/s, tokens/s, busy fraction, pool, ...)."""
    return _job(job_id, f"worker:{worker_id}")


def job_pool_completions(job_id: str) -> str:
    """Hash pool -> number of chunks that pool completed (swap waits on the new pool's first)."""
    return _job(job_id, "pool_completions")


def job_usage(job_id: str) -> str:
    """Hash "{chunk id}:{generation}" -> JSON token usage of that chunk output (only committed generations count)."""
    return _job(job_id, "usage")


def job_replicas(job_id: str) -> str:
    """Hash replica id -> JSON replica record (launcher, pool, gpu, market, state, cost)."""
    return _job(job_id, "replicas")


def job_events(job_id: str) -> str:
    """Capped list of JSON log events for `orca logs`."""
    return _job(job_id, "events")


def job_series(job_id: str) -> str:
    """Capped list of JSON progress/cost samples for the dashboard's charts (taken by the controller)."""
    return _job(job_id, "series")


def job_lock(job_id: str) -> str:
    """String with a TTL: the controller that holds it may act on the job during one tick."""
    return _job(job_id, "lock")


def job_keys(job_id: str) -> list[str]:
    """Every fixed key of a job (worker metrics hashes are found by prefix)."""
    return [
        job_meta(job_id), job_pending(job_id), job_leases(job_id), job_done(job_id),
        job_dead(job_id), job_counts(job_id), job_chunks(job_id), job_draining(job_id), job_standby(job_id),
        job_workers(job_id), job_pool_completions(job_id), job_replicas(job_id), job_events(job_id), job_usage(job_id),
        job_series(job_id), job_splits(job_id),
    ]
