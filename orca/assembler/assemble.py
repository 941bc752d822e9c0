"""Merge per-chunk outputs into the job's ``output.jsonl`` and ``errors.jsonl``.

Exactly one line per input request, ordered by input line: a heap merge over one stream per
chunk, keyed by input line number (each chunk's lines ascend), so memory holds one read
buffer per chunk, never the outputs. A committed chunk's lines are copied verbatim; each is
checked against the chunk data object (same count, same custom_id, else AssemblyError) and
routed by decoding only ``custom_id``, ``response.status_code`` and ``error`` (the response
body is skipped, not parsed). Requests of dead chunks get an error line with code
``chunk_failed``; requests of chunks that are neither committed nor dead get an
``unfinished_code`` error line if one is given, are left out of a partial (``final=False``)
assembly, and make a final assembly fail. Nothing time- or random-dependent is generated,
so assembling twice gives byte-identical files.
"""

from __future__ import annotations

import heapq
import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import BinaryIO

import msgspec

from orca.errors import AssemblyError, ObjectNotFoundError
from orca.ingest.ingest import iter_manifests
from orca.models import ChunkManifest
from orca.storage.base import ObjectStore
from orca.storage.layout import JobLayout
from orca.worker.output import output_id

READ_BUFFER = 32 * 1024  # per open chunk stream: 1,000 chunks x 2 streams stay near 64 MB
WRITE_BATCH = 4096  # lines joined per write call: fewer calls, a few MB at most held


class _Response(msgspec.Struct):
    status_code: object = None


class _OutputLine(msgspec.Struct):
    custom_id: object = None
    response: _Response | None = None
    error: object = None  # small when present; null for a success


class _InputLine(msgspec.Struct):
    custom_id: object = None


_out_decoder = msgspec.json.Decoder(_OutputLine)
_in_decoder = msgspec.json.Decoder(_InputLine)
_encoder = msgspec.json.Encoder()


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
             unfinished_code: str | None = None) -> AssembleResult:
    """Write the job's output and error files (default keys: ``JobLayout.output``/``errors``).

    ``committed``: chunk id -> committed generation; ``dead``: chunk id -> last error.
    ``manifests`` defaults to the job's stored manifests.
    """
    layout = JobLayout(job_id)
    output_key = output_key or layout.output
    errors_key = errors_key or layout.errors
    manifests = iter_manifests(store, job_id) if manifests is None else manifests
    total = missing = completed = failed = 0
    known: set[str] = set()
    with ExitStack() as stack:
        tmp: list[str] = []  # temp dir for stores without local files, made on first need

        def local(key: str) -> BinaryIO:
            return stack.enter_context(_open_local(store, key, tmp, stack))

        streams: list[Iterator[tuple[int, bool, bytes]]] = []
        for m in manifests:
            known.add(m.chunk_id)
            lines = array("I", m.lines)
            total += len(lines)
            chunk_key = layout.chunk(m.chunk_id)
            if m.chunk_id in committed:
                out_key = layout.chunk_output(m.chunk_id, committed[m.chunk_id])
                streams.append(_committed(m.chunk_id, lines, local(out_key), local(chunk_key), out_key))
            elif m.chunk_id in dead:
                streams.append(_error_lines(job_id, m.chunk_id, lines, local(chunk_key), "chunk_failed",
                                            f"chunk {m.chunk_id} failed after retries: {dead[m.chunk_id]}"))
            else:
                missing += len(lines)
                if unfinished_code is not None:
                    streams.append(_error_lines(job_id, m.chunk_id, lines, local(chunk_key), unfinished_code,
                                                "the request was not run before the batch ended"))
                elif final:
                    raise AssemblyError("chunk is neither committed nor dead; a final assembly needs every chunk settled",
                                        job_id=job_id, chunk_id=m.chunk_id)
        unknown = sorted(set(committed) - known)
        if unknown:
            raise AssemblyError("committed chunks missing from the job's manifests", job_id=job_id, chunks=unknown[:5])
        with store.open_write(output_key) as out, store.open_write(errors_key) as err:
            ok_lines: list[bytes] = []
            err_lines: list[bytes] = []
            for _, ok, line in heapq.merge(*streams):
                (ok_lines if ok else err_lines).append(line)
                if len(ok_lines) >= WRITE_BATCH:
                    completed += len(ok_lines)
                    out.write(b"".join(ok_lines))
                    ok_lines.clear()
                if len(err_lines) >= WRITE_BATCH:
                    failed += len(err_lines)
                    err.write(b"".join(err_lines))
                    err_lines.clear()
            completed += len(ok_lines)
            failed += len(err_lines)
            out.write(b"".join(ok_lines))
            err.write(b"".join(err_lines))
    return AssembleResult(total=total, completed=completed, failed=failed, missing=missing)


def _committed(chunk_id: str, lines: array, out_f: BinaryIO, in_f: BinaryIO, out_key: str) -> Iterator[tuple[int, bool, bytes]]:
    """(input line, goes to output?, output line) for one committed chunk, checked against its input."""
    decode_out, decode_in = _out_decoder.decode, _in_decoder.decode
    i = 0
    for i, (n, line, request) in enumerate(zip(lines, out_f, in_f), 1):
        try:
            rec = decode_out(line)
        except msgspec.DecodeError as exc:
            raise AssemblyError("chunk output line is not a valid output record", chunk=chunk_id, key=out_key,
                                line=i, detail=str(exc)) from None
        expected = decode_in(request).custom_id
        if rec.custom_id != expected:
            raise AssemblyError("chunk output custom_id does not match the chunk's input", chunk=chunk_id, key=out_key,
                                line=i, expected=expected, got=rec.custom_id)
        resp = rec.response
        if line[-1:] != b"\n":
            line += b"\n"
        yield n, rec.error is None and resp is not None and resp.status_code == 200, line
    if i < len(lines):
        raise AssemblyError("chunk output has fewer lines than the chunk", chunk=chunk_id, key=out_key,
                            expected=len(lines), got=i)
    extra = sum(1 for x in out_f if x.strip())
    if extra:
        raise AssemblyError("chunk output has more lines than the chunk", chunk=chunk_id, key=out_key,
                            expected=len(lines), got=len(lines) + extra)


def _error_lines(job_id: str, chunk_id: str, lines: array, in_f: BinaryIO, code: str, message: str) -> Iterator[tuple[int, bool, bytes]]:
    """An error line for every request of a chunk that has no output (custom_id from the chunk data object)."""
    for index, (n, request) in enumerate(zip(lines, in_f)):
        record = {"id": output_id(job_id, chunk_id, index), "custom_id": _in_decoder.decode(request).custom_id,
                  "response": None, "error": {"code": code, "message": message}}
        yield n, False, _encoder.encode(record) + b"\n"


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
