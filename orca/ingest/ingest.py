"""Ingest a job: store the input, validate it, split it into chunk data objects and manifests.

Two passes over a local copy of the input: pass 1 (``orca.ingest.scan``) validates and
collects per-request estimates and byte offsets; pass 2 writes each chunk's lines, verbatim
and in ascending line order, with positional reads of the file. The manifests object is
written last: it is the commit point of a successful ingest. A failed validation writes
``JobLayout.validation_errors`` instead and no chunks. Re-running ingest on the same input
rewrites the same objects (chunk ids and contents are deterministic).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import msgspec
import numpy as np

from orca.errors import InputValidationError
from orca.ingest.scan import ScanResult, scan_file
from orca.ingest.split import split_chunks
from orca.models import ChunkManifest, ValidationIssue
from orca.planner.types import JobStats
from orca.settings import IngestSettings
from orca.storage.base import ObjectStore
from orca.storage.layout import JobLayout

COPY_BUFFER = 4 * 1024 * 1024
WRITE_THREADS = 4  # chunk writes in flight: enough to overlap fsyncs, few enough to bound memory


@dataclass
class IngestResult:
    """Outcome of validating (and, for ``ingest``, splitting) one batch input file."""

    ok: bool
    errors: list[ValidationIssue]
    error_count: int                  # all errors, also those beyond the reported cap
    n_requests: int
    model: str | None                 # the file's model (or the override); None if several
    endpoint: str | None              # the single url; None if mixed
    prompt_tokens: int                # estimated, whole file
    max_output_tokens: int            # sum of max_tokens (or the default), whole file
    size: int = 0
    models: dict[str, int] = field(default_factory=dict)  # requests per model when several are allowed
    manifests: list[ChunkManifest] = field(default_factory=list)
    sized_for_tokens_per_s: float | None = None  # the planned replica's output tokens/s the chunks were cut for (None: reference rate)

    @property
    def chunk_ids(self) -> list[str]:
        return [m.chunk_id for m in self.manifests]

    @property
    def stats(self) -> JobStats:
        """The planner's view of the job."""
        model = self.model or (max(self.models, key=self.models.__getitem__) if self.models else "")
        return JobStats(n_requests=self.n_requests, prompt_tokens=self.prompt_tokens,
                        max_output_tokens=self.max_output_tokens, model=model,
                        endpoint=self.endpoint or "/v1/chat/completions")


def _result(scan: ScanResult) -> IngestResult:
    multi = len(scan.models) > 1
    mixed = len(scan.endpoints) > 1
    return IngestResult(
        ok=scan.ok, errors=scan.errors, error_count=scan.error_count, n_requests=scan.n_requests if scan.ok else 0,
        model=None if multi else scan.model, endpoint=None if mixed else scan.endpoint,
        prompt_tokens=int(scan.prompt_tokens.sum()), max_output_tokens=int(scan.output_tokens.sum()),
        size=scan.size, models=dict(scan.models) if multi else {},
    )


def validate(path: str, settings: IngestSettings | None = None, allow_multiple_models: bool = False,
             model: str | None = None, endpoint: str | None = None) -> IngestResult:
    """Validate a local batch file without a store (e.g. before upload). Never raises for bad input."""
    return _result(scan_file(path, settings or IngestSettings(), model, allow_multiple_models, endpoint))


def chunk_budget(settings: IngestSettings, stats: JobStats | None = None, replica_tokens_per_s: float | None = None) -> int:
    """Tokens (prompt plus output estimates) one chunk should hold: about ``target_chunk_s`` of one replica's work.

    With the output tokens/s of the replica expected to run the job (the planner's estimate),
    a chunk holds ``target_chunk_s`` of those output tokens, scaled to prompt plus output tokens
    by the job's own ratio. Without it, ``reference_tokens_per_s`` (prompt plus output) is assumed.
    """
    if stats is None or not replica_tokens_per_s or replica_tokens_per_s <= 0:
        return max(1, int(settings.target_chunk_s * settings.reference_tokens_per_s))
    per_output_token = (stats.prompt_tokens + stats.max_output_tokens) / max(1, stats.max_output_tokens)
    return max(1, int(settings.target_chunk_s * replica_tokens_per_s * per_output_token))


def chunk_id(index: int) -> str:
    return f"chunk-{index:06d}"


def ingest(store: ObjectStore, job_id: str, source: str | None = None, settings: IngestSettings | None = None,
           allow_multiple_models: bool = False, model: str | None = None, endpoint: str | None = None,
           raise_on_invalid: bool = True, replica_rate: Callable[[JobStats], float | None] | None = None) -> IngestResult:
    """Validate and split a job's input.

    ``source``: a local file path or another store key to copy into ``JobLayout.input``
    first; None means the input is already there. ``model`` overrides the requests' model
    (then requests need not name one); ``endpoint`` pins the url every line must use.
    ``replica_rate``: given the validated job's stats, the output tokens/s of the replica
    expected to run it (or None), which sizes the chunks (``chunk_budget``).
    An invalid file writes ``JobLayout.validation_errors`` and raises InputValidationError
    (``errors``: the reported issues, ``error_count`` in its context, ``result`` attribute),
    or with ``raise_on_invalid=False`` returns the result with ``ok=False``.
    """
    settings = settings or IngestSettings()
    layout = JobLayout(job_id)
    if source is not None and os.path.isfile(source):
        scan = scan_file(source, settings, model, allow_multiple_models, endpoint)
        store.put_file(layout.input, source)
        local = source
        result = _finish(store, layout, scan, local, settings, replica_rate)
    else:
        if source is not None and source != layout.input:
            with store.open_read(source) as src, store.open_write(layout.input) as dst:
                _copy(src, dst)
        with _local_copy(store, layout.input) as local:
            scan = scan_file(local, settings, model, allow_multiple_models, endpoint)
            result = _finish(store, layout, scan, local, settings, replica_rate)
    if not result.ok and raise_on_invalid:
        exc = InputValidationError(f"{result.error_count} validation error(s)", errors=result.errors,
                                   error_count=result.error_count)
        exc.result = result  # type: ignore[attr-defined]
        raise exc
    return result


def _finish(store: ObjectStore, layout: JobLayout, scan: ScanResult, local: str, settings: IngestSettings,
            replica_rate: Callable[[JobStats], float | None] | None) -> IngestResult:
    result = _result(scan)
    if not scan.ok:
        store.put_bytes(layout.validation_errors, msgspec.json.encode(
            {"error_count": scan.error_count, "errors": [e.model_dump() for e in scan.errors]}))
        return result
    store.delete(layout.validation_errors)
    tokens = scan.prompt_tokens.astype(np.int64) + scan.output_tokens
    rate = replica_rate(result.stats) if replica_rate is not None else None
    result.sized_for_tokens_per_s = rate if rate and rate > 0 else None
    chunks = split_chunks(tokens, scan.prefixes, chunk_budget(settings, result.stats, rate), settings.min_chunk_requests,
                          settings.max_chunk_requests, settings.balance_slack)
    starts = np.concatenate(([0], scan.ends[:-1]))
    encoder = msgspec.json.Encoder()
    with open(local, "rb") as f, ThreadPoolExecutor(WRITE_THREADS) as pool:
        # Chunk objects are written (and, on the local store, fsynced) by a few threads so disk
        # flushes overlap; the manifests object goes last, once every chunk is in place.
        futures = [pool.submit(_write_chunk, store, layout.chunk(chunk_id(i)), f.fileno(), starts, scan.ends, idx)
                   for i, idx in enumerate(chunks)]
        for fut in futures:
            fut.result()
    with store.open_write(layout.manifests) as manifests:
        for i, idx in enumerate(chunks):
            cid = chunk_id(i)
            lines = scan.lines[idx].tolist()
            est = int(tokens[idx].sum())
            manifests.write(encoder.encode({"job_id": layout.job_id, "chunk_id": cid, "lines": lines, "est_tokens": est}))
            manifests.write(b"\n")
            result.manifests.append(ChunkManifest.model_construct(job_id=layout.job_id, chunk_id=cid, lines=lines, est_tokens=est))
    return result


def _write_chunk(store: ObjectStore, key: str, fd: int, starts: np.ndarray, ends: np.ndarray, idx: np.ndarray) -> None:
    """Write the chunk's lines in index order, one slice per run of consecutive lines; every line ends with a newline."""
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    run_first = idx[np.concatenate(([0], breaks))]
    run_last = idx[np.concatenate((breaks - 1, [len(idx) - 1]))]
    pread = os.pread
    data = [pread(fd, b - a, a) for a, b in zip(starts[run_first].tolist(), ends[run_last].tolist())]
    if data[-1][-1:] != b"\n":
        data.append(b"\n")  # the file's last line had no newline
    store.put_bytes(key, b"".join(data))


def _copy(src, dst) -> None:
    while block := src.read(COPY_BUFFER):
        dst.write(block)


@contextmanager
def _local_copy(store: ObjectStore, key: str) -> Iterator[str]:
    """A local file with the object's bytes: the store's own file if it has one, else a temp download."""
    path = store.local_path(key)
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="orca-ingest-") as tmp:
        path = os.path.join(tmp, "input.jsonl")
        with store.open_read(key) as src, open(path, "wb") as dst:
            _copy(src, dst)
        yield path


def iter_manifests(store: ObjectStore, job_id: str) -> Iterator[ChunkManifest]:
    """Stream a job's chunk manifests back, in chunk order."""
    decoder = msgspec.json.Decoder()
    with store.open_read(JobLayout(job_id).manifests) as f:
        for line in f:
            if line.strip():
                d = decoder.decode(line)
                yield ChunkManifest.model_construct(**d)
