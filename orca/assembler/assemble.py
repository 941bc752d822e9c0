"""Merge per-chunk outputs into the job's ``output.jsonl`` and ``errors.jsonl``.

Exactly one line per input request, ordered by input line. The merge walks the input in
windows of ``WINDOW_LINES`` line numbers: a heap of chunk sources keyed by their next input
line says which chunks have lines in the window; each hands over exactly those lines in one
batch (``orca.assembler.sources``), they are placed by line number into the window, and the
window is written out as two joined writes. So the work per line is a few C-level steps, and
memory holds one window of lines plus one read buffer per open chunk stream, never the outputs.
Requests of dead chunks get an error line with code ``chunk_failed``; requests of chunks that
are neither committed nor dead get an ``unfinished_code`` error line if one is given, are left
out of a partial (``final=False``) assembly, and make a final assembly fail. Nothing time- or
random-dependent is generated, so assembling twice gives byte-identical files.
"""

from __future__ import annotations

import heapq
import os
import tempfile
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from orca.assembler.sources import ChunkSource, CommittedSource, ErrorSource
from orca.assembler.splits import expand_splits
from orca.errors import AssemblyError, ObjectNotFoundError
from orca.ingest.ingest import iter_manifests
from orca.models import ChunkManifest
from orca.storage.base import ObjectStore
from orca.storage.layout import JobLayout

READ_BUFFER = 32 * 1024  # per open chunk stream: 1,000 chunks x 2 streams stay near 64 MB
WINDOW_LINES = 4096  # input lines merged per step: batches amortise per-chunk work; a few MB of lines held


@dataclass(frozen=True)
class AssembleResult:
    total: int       # requests in the job
    completed: int   # lines in the output file
    failed: int      # lines in the error file
    missing: int     # requests of chunks neither committed nor dead (left out, or unfinished_code lines)

    @property
    def n_output(self) -> int:
        return self.completed

    @property
    def n_errors(self) -> int:
        return self.failed


def assemble(store: ObjectStore, job_id: str, committed: dict[str, int], dead: dict[str, str],
             manifests: Iterable[ChunkManifest] | None = None, final: bool = True, *,
             output_key: str | None = None, errors_key: str | None = None,
             unfinished_code: str | None = None, window_lines: int = WINDOW_LINES,
             splits: dict[str, str] | None = None) -> AssembleResult:
    """Write the job's output and error files (default keys: ``JobLayout.output``/``errors``).

    ``committed``: chunk id -> committed generation; ``dead``: chunk id -> last error.
    ``manifests`` defaults to the job's stored manifests. ``splits`` (chunk id -> tag, from
    ``ChunkQueue.splits``): partially committed chunks, replaced by their children.
    """
    layout = JobLayout(job_id)
    output_key = output_key or layout.output
    errors_key = errors_key or layout.errors
    manifests = iter_manifests(store, job_id) if manifests is None else manifests
    if splits:
        manifests = expand_splits(store, job_id, manifests, splits)
    total = missing = 0
    known: set[str] = set()
    with ExitStack() as stack:
        tmp: list[str] = []  # temp dir for stores without local files, made on first need

        def local(key: str) -> BinaryIO:
            return stack.enter_context(_open_local(store, key, tmp, stack))

        sources: list[ChunkSource] = []
        for m in manifests:
            known.add(m.chunk_id)
            lines = np.array(m.lines, np.int64)
            total += len(lines)
            chunk_key = layout.chunk(m.chunk_id)
            if m.chunk_id in committed:
                out_key = layout.chunk_output(m.chunk_id, committed[m.chunk_id])
                sources.append(CommittedSource(m.chunk_id, lines, local(out_key), local(chunk_key), out_key))
            elif m.chunk_id in dead:
                sources.append(ErrorSource(job_id, m.chunk_id, lines, local(chunk_key), "chunk_failed",
                                           f"chunk {m.chunk_id} failed after retries: {dead[m.chunk_id]}"))
            else:
                missing += len(lines)
                if unfinished_code is not None:
                    sources.append(ErrorSource(job_id, m.chunk_id, lines, local(chunk_key), unfinished_code,
                                               "the request was not run before the batch ended"))
                elif final:
                    raise AssemblyError("chunk is neither committed nor dead; a final assembly needs every chunk settled",
                                        job_id=job_id, chunk_id=m.chunk_id)
        unknown = sorted(set(committed) - known)
        if unknown:
            raise AssemblyError("committed chunks missing from the job's manifests", job_id=job_id, chunks=unknown[:5])
        with store.open_write(output_key) as out, store.open_write(errors_key) as err:
            completed, failed = _merge(sources, out, err, window_lines)
    return AssembleResult(total=total, completed=completed, failed=failed, missing=missing)


def _merge(sources: list[ChunkSource], out: BinaryIO, err: BinaryIO, window: int) -> tuple[int, int]:
    """Write every source's lines in input-line order, successes to ``out``, the rest to ``err``."""
    heap = [(int(src.lines[0]), i) for i, src in enumerate(sources) if len(src.lines)]
    heapq.heapify(heap)
    completed = failed = 0
    while heap:
        low = heap[0][0]
        high = low + window
        slots = np.empty(window, object)
        ok = np.zeros(window, bool)
        filled = np.zeros(window, bool)
        while heap and heap[0][0] < high:
            _, i = heapq.heappop(heap)
            src = sources[i]
            first = src.taken
            end = int(np.searchsorted(src.lines, high))
            at = src.lines[first:end] - low
            if filled[at].any():
                line = int(src.lines[first + int(np.flatnonzero(filled[at])[0])])
                raise AssemblyError("two chunks hold the same input line", chunk=src.chunk_id, line=line)
            lines, flags = src.take(end - first)
            slots[at] = lines
            ok[at] = flags
            filled[at] = True
            if end < len(src.lines):
                heapq.heappush(heap, (int(src.lines[end]), i))
            else:
                src.finish()
        good, bad = slots[filled & ok].tolist(), slots[filled & ~ok].tolist()
        out.write(b"".join(good))
        err.write(b"".join(bad))
        completed += len(good)
        failed += len(bad)
    return completed, failed


def _open_local(store: ObjectStore, key: str, tmp: list[str], stack: ExitStack):
    """A buffered local file with the object's bytes (the store's own file, or a download into a temp dir)."""
    path = store.local_path(key)
    if path is None:
        if not tmp:
            tmp.append(stack.enter_context(tempfile.TemporaryDirectory(prefix="orca-assemble-")))
        path = os.path.join(tmp[0], key.replace("/", "_"))
        try:
            with store.open_read(key) as src, open(path, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        except ObjectNotFoundError:
            raise AssemblyError("a chunk object is missing from the store", key=key) from None
    try:
        return open(path, "rb", buffering=READ_BUFFER)
    except FileNotFoundError:
        raise AssemblyError("a chunk object is missing from the store", key=key) from None
