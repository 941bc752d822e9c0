"""Every timing and limit orca uses, in one model, each with the reason for its value.

Values come from the environment (``ORCA_<SECTION>__<FIELD>``, e.g.
``ORCA_QUEUE__LEASE_S=60``) or from code (``Settings(queue=QueueSettings(lease_s=5))``).
Nothing else in orca hard-codes a timeout, a retry count or a size limit.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class QueueSettings(BaseModel):
    lease_s: float = Field(60.0, description="Lease length: long enough for several missed heartbeats, short enough that a dead worker's chunk returns within a minute.")
    renew_every_s: float = Field(10.0, description="Heartbeat period: six renewals fit in one lease, so a slow Redis round trip never costs a live worker its lease.")
    max_attempts: int = Field(3, description="Charged attempts before a chunk is dead-lettered: one transient failure plus one preemption still finish.")
    prefetch: int = Field(1, description="Chunks claimed beyond the running one, so the engine never drains between chunks; claimed only once the held chunks have at most one engine round of requests left to send, so idle workers are not starved.")
    reap_every_s: float = Field(5.0, description="Controller reap period: expired leases come back within lease_s + this.")
    socket_timeout_s: float = Field(10.0, description="Redis socket timeout: a partitioned Redis surfaces as an error instead of a hang.")
    connect_retries: int = Field(5, description="Redis connection attempts (tenacity, exponential backoff) before QueueUnavailableError.")
    retry_backoff_s: float = Field(0.2, description="First backoff between Redis attempts (doubles; the first retry is immediate): five attempts span about 1.5 s, enough for a local redis-server restart.")
    retry_max_wait_s: float = Field(5.0, description="Longest single backoff between Redis attempts.")
    max_claim: int = Field(32, description="Most chunks one claim may take: a worker with a large prefetch cannot hoard the queue.")
    enqueue_batch: int = Field(1000, description="Chunk ids per enqueue script call: keeps each Lua call short so Redis never blocks other clients for long.")
    reap_batch: int = Field(1000, description="Expired leases handled per reap script call, for the same reason.")
    max_error_chars: int = Field(2000, description="Longest last-error text stored per chunk: a huge traceback cannot bloat Redis.")


class EmbeddedRedisSettings(BaseModel):
    start_timeout_s: float = Field(15.0, description="Time for a fresh redis-server to accept PING, AOF replay of a large data dir included.")
    stop_timeout_s: float = Field(10.0, description="Time SHUTDOWN gets to flush the AOF before the process is killed.")
    appendfsync: str = Field("everysec", description="AOF fsync policy: at most one second of acknowledged writes can be lost on a crash.")


class StoreSettings(BaseModel):
    multipart_threshold_mb: int = Field(64, description="Objects above this size upload in parts: one failed part is retried, not the whole object.")
    multipart_part_mb: int = Field(16, description="S3 part size: above S3's 5 MiB minimum, small enough to keep memory flat while streaming.")
    max_retries: int = Field(6, description="S3 throttling/5xx retries (tenacity, exponential backoff): rides out a minute of SlowDown.")
    retry_max_wait_s: float = Field(20.0, description="Longest single backoff between S3 retries.")
    retry_backoff_s: float = Field(0.5, description="First backoff between S3 retries (doubles each time): six retries span about half a minute.")
    connect_timeout_s: float = Field(10.0, description="S3 connection timeout: an unreachable endpoint fails over to a retry instead of hanging.")
    read_timeout_s: float = Field(60.0, description="S3 socket read timeout: a stalled transfer is retried (resuming reads at the byte reached).")
    read_buffer_kb: int = Field(1024, description="Read size for streaming objects: large reads amortise per-call overhead.")
    local_fsync: bool = Field(True, description="Local store fsyncs each object before the rename: a committed chunk output survives a machine crash.")


class IngestSettings(BaseModel):
    max_file_mb: int = Field(200_000, description="Largest input file accepted (too_large); bigger batches should be split by the user.")
    max_line_mb: int = Field(64, description="Largest single request line; a 50 MB request must still get a clear answer, not an OOM.")
    max_requests: int = Field(50_000_000, description="Most requests in one job (too_large).")
    max_errors_reported: int = Field(100, description="Validation errors returned per file; the rest are counted, not listed.")
    target_chunk_s: float = Field(120.0, description="Target work per chunk on the planned replica (GPU or local CPU): a lost chunk costs at most about two minutes of work.")
    min_chunk_requests: int = Field(16, description="Smallest chunk: fewer requests cannot keep an engine's batch full.")
    max_chunk_requests: int = Field(2_000, description="Largest chunk: bounds the work redone after a preemption.")
    default_max_tokens: int = Field(256, description="Output tokens assumed for requests that do not set max_tokens, for chunk balancing and planning.")
    chars_per_token: float = Field(4.0, description="Prompt characters per token for estimates (English average for BPE tokenizers).")
    prefix_chars: int = Field(512, description="Leading prompt characters that define a shared-prefix group for chunk packing.")
    reference_tokens_per_s: float = Field(5000.0, description="Prompt plus output tokens per second of one replica assumed when sizing chunks if the planner has no feasible plan for the job: a mid-size GPU serving an 8B model.")
    balance_slack: float = Field(0.1, description="How far (fraction of the target) a chunk cut may move to keep a shared-prefix group whole.")


class WorkerSettings(BaseModel):
    max_concurrency: int = Field(64, description="Requests in flight per engine: enough to fill a vLLM batch without queueing unboundedly.")
    request_timeout_s: float = Field(600.0, description="One request's wall time limit: long generations on slow GPUs finish, hung ones do not hold a chunk.")
    request_retries: int = Field(3, description="Retries of transient engine errors (connection, 429, 5xx) per request before an error line.")
    retry_backoff_s: float = Field(0.5, description="First backoff between request retries (doubles each time).")
    progress_stall_s: float = Field(300.0, description="Engine without any completed request for this long with requests in flight is hung: the worker gives up its lease.")
    drain_grace_s: float = Field(30.0, description="On SIGTERM/spot notice, time to finish in-flight chunks before releasing them (AWS gives 120 s).")
    idle_poll_s: float = Field(1.0, description="Sleep between claims when the queue is empty and the worker is not in burst mode.")
    metrics_every_s: float = Field(5.0, description="Worker metrics report period to the control plane.")
    connections_per_client: int = Field(8, description="HTTP connections per pooled client: httpcore scans its whole pool on every event, so many small pools beat one big one.")
    retry_after_max_s: float = Field(30.0, description="Longest Retry-After from an engine the worker honours before retrying a 429/503.")
    tick_s: float = Field(0.2, description="Heartbeat thread wake-up period: renewals, stall checks and metrics run on this grid.")
    preemption_notices: str = Field("off", description="Cloud preemption notices the worker watches: off, aws, gcp, or auto (whichever metadata server answers); SkyPilot spot workers get auto.")
    preemption_poll_s: float = Field(5.0, description="Notice poll period: AWS's recommended 5 s leaves 115 of its 120 s notice (GCP gives 30 s).")
    aws_metadata_url: str = Field("http://169.254.169.254", description="AWS instance metadata base URL (IMDSv2); tests point it at a local fake.")
    gcp_metadata_url: str = Field("http://metadata.google.internal", description="GCP metadata server base URL; tests point it at a local fake.")
    metadata_timeout_s: float = Field(2.0, description="Metadata request timeout: link-local servers answer in milliseconds, and off-cloud the probe must not stall start-up.")
    gcp_notice_s: float = Field(30.0, description="Time GCP leaves between setting `preempted` and stopping the VM.")
    notice_margin_s: float = Field(10.0, description="Time kept before an announced termination for the partial commit's writes and a clean exit.")
    redis_outage_s: float = Field(120.0, description="How long a worker rides out an unreachable Redis with its leases held (a local redis-server restart takes seconds) before it gives up.")


class EngineSettings(BaseModel):
    start_timeout_s: float = Field(900.0, description="Engine health wait: vLLM loading a 70B model from disk takes minutes.")
    health_poll_s: float = Field(0.5, description="Health probe period while an engine starts.")
    max_restarts: int = Field(3, description="Engine crash restarts before the worker gives up and releases its chunks.")
    stop_timeout_s: float = Field(20.0, description="SIGTERM-to-SIGKILL time when stopping an engine.")
    llamacpp_ctx: int = Field(2048, description="Context window of the CPU engine: SmolLM2's trained context.")
    llamacpp_parallel: int = Field(4, description="Requests in flight to the CPU engine: llama-cpp-python's server runs one at a time, a few queued hide HTTP gaps.")
    llamacpp_threads: int = Field(-1, description="CPU threads of the CPU engine (-1: every core, split evenly between the local launcher's workers); its own default of 1 wastes the machine.")
    llamacpp_pooling_override: str = Field("llama.pooling_type=int:1", description="GGUF metadata override that mean-pools /v1/embeddings into one vector per input (prefix: the model's architecture).")


class PlannerSettings(BaseModel):
    provision_s: float = Field(300.0, description="Spot/on-demand VM boot plus image pull plus model load (reference facts: about 5 minutes).")
    serverless_cold_start_s: float = Field(60.0, description="Serverless cold start (reference facts: 30-90 s).")
    preemption_loss: float = Field(0.10, description="Expected fraction of spot throughput lost to preemptions and redone chunks.")
    safety_margin: float = Field(0.10, description="Fraction of the deadline kept in reserve for estimate error.")
    max_replicas: int = Field(64, description="Most replicas one plan may ask for.")
    replan_every_s: float = Field(30.0, description="Controller re-plan period while a job runs.")
    top_plans: int = Field(10, description="Plans returned by plan().")
    weight_bytes: float = Field(2.0, description="Bytes per weight and KV-cache element in the throughput model: BF16 serving (1.0 for FP8 checkpoints).")
    model_load_gb_per_s: float = Field(1.0, description="Weight loading speed beyond the 16 GB that provision_s already covers (a 72B model loads in ~128 s on p4d).")
    local_start_s: float = Field(20.0, description="Local worker start plus llama.cpp model load on a small CPU machine.")
    serverless_max_replicas: int = Field(16, description="Concurrent serverless replicas: providers' default GPU concurrency quotas.")
    spot_aim: float = Field(0.7, description="Spot pools may be sized to finish the remaining work in this fraction of the usable time, while their start-ups stay within startup_share: the rest is slack for outages (bench: 1.0 cost 3% more without serverless, 0.5 about the same).")
    startup_share: float = Field(0.1, description="Start-ups may take this share of the remaining work: caps spot replicas beyond what the deadline needs, and sizes the fallback pool an outage is waited out for (small jobs: one spot replica, waits of minutes; bench: 0.05 and 0.15 cost more).")
    wait_reserve: float = Field(0.5, description="A spot outage is waited out only while the fallback, started later, would still finish with this share of its time to spare and this headroom under its replica cap (survives a throughput misestimate found only once it runs).")
    unmeasured_reserve: float = Field(0.5, description="Until some pool has run, a wait assumes the fallback only reaches 1/(1+this) of its estimated tokens/s: survives a catalog estimate 1.4x too high (bench: throughput x0.7).")
    scale_down_hysteresis: float = Field(0.25, description="Fallback replicas are dropped only while the rest keeps this much spare rate, so pools do not flap.")
    availability_backoff_s: float = Field(60.0, description="A zone/market that gave a capacity error or a preemption is avoided this long before it is probed again (doubles per further failure, up to the max): a refused launch costs nothing, so asking again after a minute finds returning capacity early (bench: 120 s cost 0.3% more).")
    availability_backoff_max_s: float = Field(240.0, description="Longest wait before re-probing a failing zone: a refused probe costs nothing, and a returning zone found within 4 minutes is worth its work (bench: 1800 s found it up to half an hour late).")
    availability_short_life_factor: float = Field(2.5, description="Spot capacity that went within this many start-ups of coming up could not repay its start-up (a spot replica at 0.6 of the fallback's price needs about 2.5): the zone is avoided for availability_short_backoff_s.")
    availability_short_backoff_s: float = Field(900.0, description="How long a zone whose capacity went soon after coming up is avoided (doubling while it keeps happening): outlasts its short windows (bench: 600-1200 s alike).")
    availability_probation_factor: float = Field(2.0, description="After short-lived capacity a zone gets one spot replica, not a pool, until its capacity has lasted this many short lives.")
    availability_stuck_factor: float = Field(3.0, description="A launch still provisioning after this many times its expected start-up counts as a capacity failure of its zone.")
    quote_runs: int = Field(8, description="Simulated runs behind a deadline quote (orca plan/submit): one per bundled-trace window, a few hundred ms in all.")
    quote_max_ticks: int = Field(150, description="Controller ticks per quoted run at most (the tick grows with the deadline): keeps a quote fast for day-long jobs.")
    quote_max_chunks: int = Field(200, description="Chunks per quoted run at most (bigger chunks for big jobs): the simulated workers' events stay few.")
    spot_zones: int = Field(3, description="Spot zones (regions) a job's runtime policy may spread spot replicas over: one zone's outage then takes a third of them.")


class ControlSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Control plane bind address: loopback unless the user opens it.")
    port: int = Field(8765, description="Control plane port.")
    tick_s: float = Field(2.0, description="Controller loop period: progress, scaling and assembly checks.")
    http_timeout_s: float = Field(30.0, description="Client-side HTTP timeout for API calls.")
    default_launcher: str = Field("local", description="Launcher for jobs that name none: the embedded default runs workers on this machine.")
    default_user: str = Field("local", description="User the embedded stack creates a token for on first start.")
    lock_ttl_s: float = Field(3.0, description="A controller's hold on a batch of jobs during their ticks (extended while a slow batch runs): a job's tick only reads Redis and submits calls (milliseconds), and a killed controller's jobs are free again within two ticks.")
    lock_batch: int = Field(20, description="Jobs a controller locks and reads in one Redis round trip per tick: the tick costs a few round trips per batch instead of per job, and the locks are held for the milliseconds the batch takes.")
    call_workers: int = Field(64, description="Threads per control-plane process running launcher calls off the tick: cloud APIs answer in 0.2-5 s, so 64 keep a few hundred replicas polled every few seconds.")
    calls_per_job: int = Field(32, description="Launcher calls one job may have outstanding: a job whose cloud hangs can hold at most this many of the call threads.")
    call_timeout_s: float = Field(900.0, description="A launcher call running longer is reported failed and its late result dropped: a SkyPilot teardown takes minutes, not a quarter hour.")
    poll_every_s: float = Field(2.0, description="Least time between two state polls of one replica by one controller: a crash or preemption shows within a tick or two.")
    max_tick_failures: int = Field(5, description="Controller ticks in a row that may raise on one job before the job fails with that error: rides out a blip, never stalls forever.")
    controller_ttl_s: float = Field(10.0, description="A controller silent this long (five ticks) is gone: the launcher calls it had in flight are taken over by the others; a late result of the old controller is dropped, and what a late launch made is torn down.")
    task_retries: int = Field(3, description="RQ retries of a long step (ingest, assembly): rides out a Redis or store blip.")
    task_retry_backoff_s: int = Field(5, description="Wait between RQ retries of a long step.")
    task_timeout_s: int = Field(6 * 3600, description="Longest run of one long step: ingesting or assembling a 200 GB file takes hours.")
    max_events: int = Field(1000, description="Log events kept per job (oldest dropped): `orca logs` stays bounded.")
    stack_start_timeout_s: float = Field(30.0, description="Time `up` waits for each embedded process (server, RQ worker) to come up.")
    stack_stop_timeout_s: float = Field(15.0, description="SIGTERM-to-SIGKILL time for embedded processes on `down`.")
    upload_progress_min_mb: float = Field(32.0, description="Smallest input file `submit` shows an upload progress bar for: smaller ones upload in seconds even to a remote server.")
    wait_poll_s: float = Field(1.0, description="Status poll period of `orca submit --wait` and Job.wait(): progress looks live, one cheap GET a second.")
    list_limit: int = Field(20, description="Jobs shown by `orca list` and `orca status` without a job id (OpenAI's default page size).")
    openai_max_page: int = Field(100, description="Largest `limit` of the OpenAI-compatible batch list (OpenAI's own maximum).")
    openai_max_file_page: int = Field(10_000, description="Largest `limit` (and the default) of the OpenAI-compatible file list (OpenAI's own).")
    metadata_max_keys: int = Field(16, description="Most metadata pairs on a job or batch (OpenAI's limit).")
    metadata_max_key_chars: int = Field(64, description="Longest metadata key (OpenAI's limit).")
    metadata_max_value_chars: int = Field(512, description="Longest metadata value (OpenAI's limit).")
    max_upload_mb: int = Field(200_000, description="Largest request body the API reads (413 beyond it, checked as bytes arrive): the same bound as ingest.max_file_mb; a shared server lowers it.")
    max_deadline_s: float = Field(30 * 86400.0, description="Longest deadline a job may ask for: a month covers any batch; beyond it a typo (99999w) would hold quota and replicas for ever.")
    tls_certfile: str | None = Field(None, description="TLS certificate for `orca server` (with tls_keyfile): tokens and data are encrypted on the wire.")
    tls_keyfile: str | None = Field(None, description="TLS private key for `orca server`.")
    behind_tls_proxy: bool = Field(False, description="A TLS-terminating proxy fronts `orca server`: silences the warning about serving beyond loopback without TLS.")
    supervise_every_s: float = Field(1.0, description="Embedded supervisor check period: a killed redis-server, server or RQ worker is restarted within about this plus its start time.")
    reconnect_backoff_max_s: float = Field(2.0, description="Longest wait between the RQ worker's Redis reconnect attempts: a restarted local Redis is back in use within seconds.")
    reconnect_max_s: float = Field(600.0, description="How long the RQ worker keeps reconnecting to a lost Redis before it exits (the supervisor then starts a fresh one).")
    unavailable_log_every_s: float = Field(10.0, description="The API logs an unreachable Redis or store at most this often, one line each, instead of a traceback per request.")


class RetentionSettings(BaseModel):
    every_s: float = Field(60.0, description="Period of the retention step the controller queues: expired files go within a minute of their expires_at.")
    batch_file_s: int = Field(30 * 86400, description="Default expiry of uploaded batch input files (OpenAI's: 30 days); 0 keeps them until deleted.")
    output_file_s: int = Field(30 * 86400, description="Default expiry of batch output and error files, so the local store does not grow without bound (OpenAI keeps them until deleted); 0 keeps them.")
    min_expires_after_s: int = Field(3600, description="Shortest expires_after/output_expires_after a user may ask for (OpenAI's bound: 1 hour); tests lower it.")
    max_expires_after_s: int = Field(2_592_000, description="Longest expires_after/output_expires_after a user may ask for (OpenAI's bound: 30 days).")
    batch_size: int = Field(1000, description="Expired files deleted per retention step: one step stays short even after a long outage.")


class RetrySettings(BaseModel):
    attempts: int = Field(5, description="Tries of one cloud API call before it fails: a leaked GPU cluster is the most expensive bug, so teardowns get several.")
    backoff_s: float = Field(5.0, description="First wait between tries (doubles each time): rides out an API server hiccup.")
    max_wait_s: float = Field(60.0, description="Longest single wait between tries.")


class QuotaSettings(BaseModel):
    """Per-user limits on a shared control plane (0 = unlimited); `orca users quota NAME` overrides them per user."""

    max_active_jobs: int = Field(0, description="Jobs one user may have unfinished at once: one user cannot fill the fleet with jobs.")
    max_queued_requests: int = Field(0, description="Requests across one user's unfinished jobs (the new file's lines included): bounds the backlog one user can queue.")
    max_usd_per_day: float = Field(0.0, description="Dollars one user's jobs may have spent over the last 24 hours (cost ledger of their replicas) before new jobs are refused.")


class LauncherSettings(BaseModel):
    launch_retries: int = Field(5, description="Capacity-error retries per cluster launch before trying the next region or market.")
    launch_backoff_s: float = Field(30.0, description="First backoff after a capacity error (doubles each time).")
    skypilot_retry: RetrySettings = Field(RetrySettings(), description="Retry policy of SkyPilot calls that must succeed (teardown), run off the controller tick.")
    modal_retry: RetrySettings = Field(RetrySettings(), description="Retry policy of Modal calls that must succeed (cancelling a call).")
    runpod_retry: RetrySettings = Field(RetrySettings(), description="Retry policy of RunPod calls that must succeed (cancelling a job).")
    local_max_workers: int = Field(2, description="Most local worker processes: one per CPU core on the reference 2-core machine.")
    local_engine: str = Field("llamacpp", description="Engine of local workers: the CPU engine by default; tests set `fake` for speed.")
    local_engine_args: dict[str, str] = Field(default_factory=dict, description="Extra `--name value` worker arguments for the local engine (e.g. model path).")
    local_stop_grace_s: float = Field(40.0, description="SIGTERM-to-SIGKILL time for a local worker: the worker's drain grace plus a margin.")
    max_replica_failures: int = Field(10, description="Crashed replicas per job before the controller stops replacing them and fails the job.")
    swap_grace_s: float = Field(60.0, description="Old pool's in-flight chunks get this long to finish after a swap before they are released.")
    serverless_budget_s: float = Field(600.0, description="Time budget per serverless invocation (platform limits are 10-60 minutes).")
    launch_backoff_max_s: float = Field(600.0, description="Longest wait between capacity retries: spot capacity often returns within minutes, not hours.")
    sky_poll_every_s: float = Field(15.0, description="Least time between SkyPilot status queries of one replica: the controller ticks every few seconds, but each query is an API-server request (AUTO refresh also a cloud call); a preemption still shows well within one lease.")
    sky_status_refresh: str = Field("AUTO", description="sky.status refresh mode when polling (NONE|AUTO|FORCE): AUTO asks the cloud about spot clusters, which is how unmanaged spot preemptions show up.")
    sky_autodown_idle_minutes: int = Field(10, description="A cluster whose worker exited is torn down by SkyPilot itself after this idle time, even if orca's control plane is gone.")
    sky_disk_size_gb: int = Field(256, description="Worker disk: model weights of a 70B model plus the vLLM wheel cache fit.")
    worker_package: str = Field("orca[vllm]", description="pip requirement installed on cloud workers (a wheel URL or git+https URL for unreleased builds).")
    modal_app_name: str = Field("orca-worker", description="Name of the deployed Modal app (`modal deploy -m orca.launchers.modal_app`).")
    modal_secret_name: str = Field("orca-worker", description="Modal secret holding the workers' credentials (store keys, Redis URL with password, HF token), attached by name.")
    modal_gpus: list[str] = Field(["H100:1", "H100:2", "A100-80GB:1", "L40S:1", "A10G:1"], description="GPU shapes the Modal app deploys one function for (Modal fixes a function's GPU at deploy time).")
    modal_timeout_margin_s: float = Field(120.0, description="Modal function timeout beyond serverless_budget_s: the worker's own release at the budget always runs before Modal kills it.")
    swap_max_failures: int = Field(3, description="New-pool replicas that may fail before a swap backs out on its own (the old pool keeps the job going).")
    swap_lock_wait_s: float = Field(10.0, description="How long a swap request waits for the job's controller lock (a tick holds it briefly).")
    local_swap_profiles: dict[str, dict[str, str]] = Field(default_factory=dict, description="Engine arguments per GPU name for local pools, so `orca swap --gpu NAME` on the local launcher switches engine profile (model file, threads, fake latency).")
    runpod_endpoints: dict[str, str] = Field(default_factory=dict, description="GPU name -> RunPod serverless endpoint id running orca.launchers.runpod_handler (one endpoint per GPU type).")


class DashboardSettings(BaseModel):
    session_ttl_s: float = Field(8 * 3600.0, description="A dashboard sign-in lasts a working day; a stolen session cookie is worthless after that (log out ends it at once).")
    poll_s: float = Field(2.0, description="Live page refresh period: one small GET per open page every 2 s looks live and costs the server little.")
    request_timeout_s: float = Field(15.0, description="A page's read of the API that has not answered in this long is abandoned and retried on the next poll: one hung request never freezes a live page.")
    sample_every_s: float = Field(5.0, description="Least time between two progress/cost samples of a job for the charts (the controller takes them).")
    series_max_points: int = Field(720, description="Samples kept per job: the gap between samples grows with the deadline so a whole job fits (a 24 h job: one per 2 min).")
    at_risk_fraction: float = Field(0.8, description="A running job whose ETA uses more than this share of the time left to its deadline is shown 'at risk'.")
    events_shown: int = Field(200, description="Latest events on a job's page: the log stays readable and the page small.")
    jobs_shown: int = Field(100, description="Newest jobs on the jobs page (the status filter applies within them): each costs a few Redis reads per refresh.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCA_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path.home() / ".orca", description="State dir of the embedded stack: Redis data, local object store, logs.")
    redis_url: str | None = Field(None, description="Redis URL; unset means the embedded redis-server under home.")
    store_url: str | None = Field(None, description="Object store URL (file:///dir or s3://bucket/prefix); unset means home/store.")
    api_url: str | None = Field(None, description="Control plane URL; unset means the embedded server.")
    api_token: str | None = Field(None, description="Bearer token for the control plane.")

    queue: QueueSettings = QueueSettings()
    embedded_redis: EmbeddedRedisSettings = EmbeddedRedisSettings()
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    worker: WorkerSettings = WorkerSettings()
    engine: EngineSettings = EngineSettings()
    planner: PlannerSettings = PlannerSettings()
    control: ControlSettings = ControlSettings()
    quota: QuotaSettings = QuotaSettings()
    launcher: LauncherSettings = LauncherSettings()
    retention: RetentionSettings = RetentionSettings()
    dashboard: DashboardSettings = DashboardSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings read once from the environment."""
    return Settings()
