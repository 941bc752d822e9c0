"""Manifests of partially committed chunks: a split chunk is replaced by its two children.

A worker that stops holding a chunk commits the answered requests as one child and hands the
rest back as another (``ChunkQueue.split``); the ``ChunkSplit`` record it wrote first says
which positions of the parent each child holds. Expanding the job's manifests through the
queue's ``splits()`` map (recursively: a rest child may be split again) gives manifests in
which every request is in exactly one chunk, so the assembler's one-line-per-request merge
needs nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from orca.errors import AssemblyError, ObjectNotFoundError
from orca.models import ChunkManifest, ChunkSplit
from orca.storage.base import ObjectStore
from orca.storage.layout import JobLayout


def read_split(store: ObjectStore, job_id: str, chunk_id: str, tag: str) -> ChunkSplit:
    try:
        return ChunkSplit.model_validate_json(store.get_bytes(JobLayout(job_id).split(chunk_id, tag)))
    except ObjectNotFoundError:
        raise AssemblyError("a split chunk's record is missing from the store", chunk=chunk_id, tag=tag) from None


def expand_splits(store: ObjectStore, job_id: str, manifests: Iterable[ChunkManifest],
                  splits: dict[str, str]) -> Iterator[ChunkManifest]:
    """``manifests`` with every split chunk replaced by its children (``splits``: chunk id -> tag)."""
    for manifest in manifests:
        todo = [manifest]
        while todo:
            m = todo.pop()
            tag = splits.get(m.chunk_id)
            if tag is None:
                yield m
                continue
            record = read_split(store, job_id, m.chunk_id, tag)
            positions = record.answered.positions + record.rest.positions
            if sorted(positions) != list(range(len(m.lines))):
                raise AssemblyError("a split record does not cover its chunk exactly once", chunk=m.chunk_id, tag=tag)
            for part in (record.answered, record.rest):
                lines = [m.lines[i] for i in part.positions]
                todo.append(ChunkManifest(job_id=m.job_id, chunk_id=part.chunk_id, lines=lines,
                                          est_tokens=m.est_tokens * len(lines) // max(1, len(m.lines))))
