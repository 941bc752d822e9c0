"""Per-chunk line sources for the assembler: a chunk's result lines, taken in batches in input order.

A source knows its chunk's input line numbers (ascending, from the manifest) and hands out the
result line of the next ``k`` of them with ``take(k)``, plus for each whether it belongs in the
output file (a 200 response with no error) or the error file. Work is per batch, not per line:
lines come off the buffered files with ``islice`` and are decoded in one comprehension.

* ``CommittedSource``: the worker's committed output, copied verbatim. Each line is checked
  against the chunk data object (same count, same custom_id, else AssemblyError) and routed by
  decoding only ``custom_id``, ``response.status_code`` and ``error`` (the body is skipped).
* ``ErrorSource``: an error line per request, for a chunk with no output (dead, or unfinished
  when the batch ended), with custom_ids from the chunk data object and deterministic ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from itertools import islice
from typing import BinaryIO

import msgspec
import numpy as np

from orca.errors import AssemblyError
from orca.worker.output import output_id


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


class ChunkSource(ABC):
    """The result lines of one chunk, in input order (``lines``: its input line numbers, ascending;
    ``in_f``: the chunk data object, one request per line)."""

    def __init__(self, chunk_id: str, lines: np.ndarray, in_f: BinaryIO) -> None:
        self.chunk_id = chunk_id
        self.lines = lines
        self.in_f = in_f
        self.taken = 0  # lines handed out so far

    def _requests(self, k: int) -> list[bytes]:
        """The next ``k`` lines of the chunk data object."""
        requests = list(islice(self.in_f, k))
        if len(requests) < k:
            raise AssemblyError("chunk data object has fewer lines than its manifest", chunk=self.chunk_id,
                                expected=len(self.lines), got=self.taken + len(requests))
        return requests

    @abstractmethod
    def take(self, k: int) -> tuple[list[bytes], list[bool]]:
        """The next ``k`` result lines (each ending with a newline) and, per line, whether it is a success."""

    def finish(self) -> None:
        """Checks once every line was taken (default: none)."""


class CommittedSource(ChunkSource):
    """A committed chunk: the worker's output lines, checked against the chunk's input."""

    def __init__(self, chunk_id: str, lines: np.ndarray, out_f: BinaryIO, in_f: BinaryIO, out_key: str) -> None:
        super().__init__(chunk_id, lines, in_f)
        self.out_f, self.out_key = out_f, out_key

    def _error(self, message: str, **context) -> AssemblyError:
        return AssemblyError(message, chunk=self.chunk_id, key=self.out_key, **context)

    def take(self, k: int) -> tuple[list[bytes], list[bool]]:
        requests = self._requests(k)
        outs = list(islice(self.out_f, k))
        first = self.taken
        if len(outs) < k:
            raise self._error("chunk output has fewer lines than the chunk", expected=len(self.lines), got=first + len(outs))
        decode = _out_decoder.decode
        try:
            records = [decode(line) for line in outs]
        except msgspec.DecodeError:
            for j, line in enumerate(outs):  # the rare bad batch: find the line and say why
                try:
                    decode(line)
                except msgspec.DecodeError as exc:
                    raise self._error("chunk output line is not a valid output record", line=first + j + 1,
                                      detail=str(exc)) from None
            raise
        decode_in = _in_decoder.decode
        expected = [decode_in(line).custom_id for line in requests]
        got = [r.custom_id for r in records]
        if got != expected:
            j = next(j for j, (a, b) in enumerate(zip(got, expected)) if a != b)
            raise self._error("chunk output custom_id does not match the chunk's input", line=first + j + 1,
                              expected=expected[j], got=got[j])
        ok = [r.error is None and r.response is not None and r.response.status_code == 200 for r in records]
        if outs[-1][-1:] != b"\n":  # only the object's last line can lack its newline
            outs[-1] += b"\n"
        self.taken += k
        return outs, ok

    def finish(self) -> None:
        extra = sum(1 for line in self.out_f if line.strip())
        if extra:
            raise self._error("chunk output has more lines than the chunk", expected=len(self.lines),
                              got=len(self.lines) + extra)


class ErrorSource(ChunkSource):
    """A chunk with no output: one error line with ``code`` and ``message`` per request."""

    def __init__(self, job_id: str, chunk_id: str, lines: np.ndarray, in_f: BinaryIO, code: str, message: str) -> None:
        super().__init__(chunk_id, lines, in_f)
        self.job_id = job_id
        self.error = {"code": code, "message": message}

    def take(self, k: int) -> tuple[list[bytes], list[bool]]:
        out = []
        for index, request in enumerate(self._requests(k), self.taken):
            record = {"id": output_id(self.job_id, self.chunk_id, index), "custom_id": _in_decoder.decode(request).custom_id,
                      "response": None, "error": self.error}
            out.append(_encoder.encode(record) + b"\n")
        self.taken += k
        return out, [False] * k
