"""Merging a job's committed chunk outputs into its result files (final, or partial while it runs)."""

from __future__ import annotations

from orca.models import JobStatus
from orca.queue import ChunkQueue
from orca.queue.jobs import JobRecord
from orca.storage.base import ObjectStore
from orca.storage.layout import JobLayout

S = JobStatus


def partial_key(layout: JobLayout, errors: bool) -> str:
    """Where a partial assembly (results of a running job) is written; the final files stay untouched."""
    return f"{layout.root}partial/{'errors' if errors else 'output'}.jsonl"


def unfinished_code(status: JobStatus) -> str | None:
    """Error code for requests never run, by why the job ended (None: a completed job has none)."""
    return {S.EXPIRED: "batch_expired", S.CANCELLED: "batch_cancelled", S.CANCELLING: "batch_cancelled",
            S.FAILED: "batch_failed"}.get(status)


def assemble_into(store: ObjectStore, record: JobRecord, queue: ChunkQueue, partial: bool) -> dict:
    """Merge the committed chunk outputs of a job; returns {"completed": n, "failed": n, "not_run": n}
    (``not_run``: requests of chunks neither committed nor dead, among the failed in a final assembly).

    ``partial``: what is done so far, into the partial keys (unfinished requests left out; the
    final files are untouched). Otherwise the final files, one line per request: requests never
    run get an error line coded by why the job ended.
    """
    from orca.assembler import assemble

    layout = JobLayout(record.id)
    if partial:
        result = assemble(store, record.id, queue.committed_generations(), queue.dead_chunks(), final=False,
                          output_key=partial_key(layout, False), errors_key=partial_key(layout, True),
                          splits=queue.splits())
    else:
        result = assemble(store, record.id, queue.committed_generations(), queue.dead_chunks(), final=True,
                          unfinished_code=unfinished_code(record.status), splits=queue.splits())
    return {"completed": result.n_output, "failed": result.n_errors, "not_run": result.missing}
