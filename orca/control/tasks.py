"""The control plane's long steps, run as RQ jobs (``orca.queue.background``): ingest and assembly.

Each step takes the enqueuer's settings as JSON plus a job id, rebuilds its context in the
RQ worker, and is idempotent: a retried or repeated step reads the job's status first and
does only what is still missing, so RQ may run it again after a crash.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orca.control.assembly import assemble_into
from orca.control.pools import pool_for_plan
from orca.control.service import OrcaService
from orca.control.transitions import move
from orca.control.retention import output_expires_at
from orca.errors import InputValidationError, JobStateError, PlanInfeasibleError
from orca.models import JobStatus, ValidationIssue
from orca.queue.jobs import FileRecord, JobRecord
from orca.settings import Settings
from orca.storage.layout import JobLayout

S = JobStatus


@contextmanager
def _service(settings_json: str) -> Iterator[OrcaService]:
    service = OrcaService.from_settings(Settings.model_validate_json(settings_json))
    try:
        yield service
    finally:
        service.close()


# -- ingest and planning ---------------------------------------------------
def plan_dict(plan) -> dict:
    """A planner ``Plan`` as a PlanOut-shaped dict plus its pool key, throughput and start-up time."""
    return {
        "key": plan.key, "gpu": plan.gpu, "gpus_per_replica": plan.gpus_per_replica, "tp": plan.tp, "pp": plan.pp,
        "market": plan.market, "region": plan.region, "replicas": plan.replicas,
        "expected_finish_s": plan.expected_finish_s, "expected_cost_usd": plan.expected_cost_usd, "risk": plan.risk,
        "price_per_replica_hour": plan.price_per_replica_hour, "instance_type": plan.instance_type,
        "replica_tokens_per_s": plan.replica_tokens_per_s, "startup_s": plan.startup_s,
    }


def candidate_plans(stats, deadline_s: float, record: JobRecord, settings: Settings) -> list:
    """The planner's plans for this job's launcher and constraints, cheapest first (PlanInfeasibleError if none)."""
    from orca.planner.catalog import load_catalog
    from orca.planner.planning import plan as make_plans
    from orca.planner.types import Constraints

    spec = record.spec
    launcher = record.launcher or settings.control.default_launcher
    gpus = (spec["gpu"],) if spec.get("gpu") else ()
    if launcher == "local":
        constraints = Constraints(markets=("local",), gpus=gpus, max_replicas=settings.launcher.local_max_workers)
    else:
        markets = tuple(m for m in (spec.get("markets") or ()) if m != "local") or Constraints().markets
        constraints = Constraints(markets=markets, gpus=gpus)
    plans = make_plans(stats, deadline_s, constraints, load_catalog(), settings)
    if not plans:
        raise PlanInfeasibleError()
    return plans


def planned_replica_rate(record: JobRecord, settings: Settings) -> Callable[[object], float | None]:
    """For ingest: the output tokens/s of the best plan's replica for the validated job, so chunks
    hold about ``target_chunk_s`` of its work; None (the reference rate) when nothing is feasible."""
    def rate(stats) -> float | None:
        try:
            plans = candidate_plans(stats, max(1.0, record.deadline_at - time.time()), record, settings)
        except PlanInfeasibleError:
            return None  # the planning step says why
        return plans[0].replica_tokens_per_s
    return rate


def choose_plan(stats, deadline_s: float, record: JobRecord, settings: Settings,
                n_chunks: int) -> tuple[dict, list[dict], dict | None]:
    """(the cheapest plan that meets the deadline, the options the runtime policy may use: the cheapest plan of
    each market, of spot one per region up to ``planner.spot_zones``, each with its replica cap, and the
    deadline quote: expected cost and P(deadline met) from simulated runs, ``orca.sim.quote``).

    The local launcher plans over the local market only and runs min(chunks, local_max_workers)
    replicas: local workers cost nothing, so the fastest finish is also the cheapest (no quote).
    """
    plans = candidate_plans(stats, deadline_s, record, settings)
    best = plans[0]
    launcher = record.launcher or settings.control.default_launcher
    if launcher == "local":
        from orca.planner.planning import with_replicas

        replicas = max(1, min(n_chunks, settings.launcher.local_max_workers))
        return plan_dict(with_replicas(best, stats, replicas, deadline_s, settings)), [], None
    from orca.planner.policy import options_from_plans
    from orca.sim.quote import quote

    by_key = {p.key: p for p in plans}
    options = [{**plan_dict(by_key[o.key]), "max_replicas": o.max_replicas} for o in options_from_plans(plans, settings)]
    q = quote(plans, stats, deadline_s, settings)
    return plan_dict(best), options, q.to_dict() if q is not None else None


def ingest_job(settings_json: str, job_id: str) -> None:
    """Validate and split the stored input, plan the job, enqueue its chunks: validating -> planning -> in_progress.

    A job cancelled or expired meanwhile keeps its new status: the step stops there.
    """
    with _service(settings_json) as svc:
        try:
            _ingest_and_plan(svc, job_id)
        except JobStateError as exc:
            svc.registry.add_event(job_id, "ingest_stopped", f"job changed while ingesting: {exc.message}")


def _ingest_and_plan(svc, job_id: str) -> None:
    reg, settings = svc.registry, svc.settings
    record = reg.get(job_id)
    if record.status is S.VALIDATING:
        from orca.ingest import ingest

        try:
            result = ingest(svc.store, job_id, model=record.model, settings=settings.ingest,
                            allow_multiple_models=bool(record.spec.get("allow_multiple_models")),
                            replica_rate=planned_replica_rate(record, settings))
        except InputValidationError as exc:
            issues = [ValidationIssue.model_validate(e if isinstance(e, dict) else e.model_dump()) for e in exc.errors]
            shown = issues[: settings.ingest.max_errors_reported]
            count = int(exc.context.get("error_count", len(issues)))
            move(reg, job_id, S.FAILED, f"validation failed with {count} error(s)",
                 message=f"input validation failed: {exc.message}",
                 validation_errors=[i.model_dump() for i in shown], validation_error_count=count, settled=True)
            return
        stats = result.stats
        reg.update(job_id, n_requests=stats.n_requests, chunks_total=len(result.chunk_ids),
                   model=stats.model, endpoint=stats.endpoint, est_output_tokens=stats.max_output_tokens,
                   stats=dataclasses.asdict(stats))
        svc.queue(job_id).enqueue_many(list(result.chunk_ids))
        sized = (f"cut for {settings.ingest.target_chunk_s:.0f} s of work each on a replica making {result.sized_for_tokens_per_s:.0f} output tokens/s"
                 if result.sized_for_tokens_per_s else
                 f"sized for the reference {settings.ingest.reference_tokens_per_s:.0f} tokens/s: no feasible plan yet")
        record = move(reg, job_id, S.PLANNING, f"{stats.n_requests} requests in {len(result.chunk_ids)} chunks ({sized})",
                      kind="validated")
    if record.status is S.PLANNING:
        from orca.planner.types import JobStats

        stats = JobStats(**record.stats)
        deadline_s = max(1.0, record.deadline_at - time.time())
        try:
            chosen, options, quote = choose_plan(stats, deadline_s, record, settings, record.chunks_total)
        except PlanInfeasibleError as exc:
            move(reg, job_id, S.FAILED, str(exc), message=f"planning failed: {exc}")
            return
        launcher = record.launcher or settings.control.default_launcher
        move(reg, job_id, S.IN_PROGRESS, f"{chosen['replicas']} x {chosen['gpu']} ({chosen['market']}, {launcher})",
             kind="planned", plan=chosen, pools=[pool_for_plan(chosen, launcher, settings)], options=options, quote=quote)


# -- assembly --------------------------------------------------------------
def assemble_job(settings_json: str, job_id: str) -> None:
    """Assemble the final output and error files; a finalizing job becomes completed, a cancelling one cancelled.

    Expired, failed and cancelled jobs get their partial results: requests never run get an error line.
    """
    with _service(settings_json) as svc:
        reg = svc.registry
        record = reg.get(job_id)
        if not record.output_available and record.chunks_total:
            counts = assemble_into(svc.store, record, svc.queue(job_id), partial=False)
            layout = JobLayout(job_id)
            now = time.time()
            stem = job_id.removeprefix("batch_")
            files = [
                reg.put_file(FileRecord(id=f"file-{stem}-{kind}", user=record.user, bytes=svc.store.size(key), created_at=now,
                                        filename=f"{kind}.jsonl", purpose="batch_output", store_key=key, job_id=job_id,
                                        expires_at=output_expires_at(record, now, svc.settings.retention)))
                for kind, key in (("output", layout.output), ("errors", layout.errors))
            ]
            reg.update(job_id, output_available=True, output_file_id=files[0].id, error_file_id=files[1].id,
                       final_counts=counts, final_usage=svc.usage(record).model_dump())
            reg.add_event(job_id, "assembled", f"{counts['completed']} output lines, {counts['failed']} error lines")
        record = reg.get(job_id)
        if record.status is S.FINALIZING:
            move(reg, job_id, S.COMPLETED, "job completed")
        elif record.status is S.CANCELLING:
            counts = record.final_counts or {}
            move(reg, job_id, S.CANCELLED, "job cancelled; partial results kept",
                 message=f"cancelled: {counts.get('completed', 0)} requests answered, {counts.get('not_run', 0)} not run "
                         "(batch_cancelled lines in the error file)")
