"""Bounded-memory line reading: blocks of whole lines, over-long lines skipped, never buffered."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class Block:
    """Whole lines starting at byte ``offset``; every line ends with a newline except possibly the file's last."""

    offset: int
    data: bytes


@dataclass(frozen=True)
class LongLine:
    """A line longer than the limit, skipped without being held in memory (``length`` includes its newline)."""

    offset: int
    length: int


def read_blocks(f: BinaryIO, block_size: int, max_line: int) -> Iterator[Block | LongLine]:
    """Cut a stream into blocks of whole lines; memory stays below about ``block_size + max_line``.

    A line longer than ``max_line`` bytes (newline excluded) comes back as a LongLine.
    """
    offset = 0              # file offset of the first byte not yet yielded
    parts: list[bytes] = []  # an unfinished line, still within the limit
    pending = 0             # its length (or the length seen so far of a line being skipped)
    skipping = False
    while True:
        buf = f.read(block_size)
        if not buf:
            break
        start = 0
        if skipping or parts:
            nl = buf.find(b"\n")
            if nl < 0:
                pending += len(buf)
                if not skipping and pending > max_line:
                    skipping, parts = True, []
                elif not skipping:
                    parts.append(buf)
                continue
            pending += nl + 1
            if skipping or pending - 1 > max_line:
                yield LongLine(offset, pending)
            else:
                parts.append(buf[: nl + 1])
                yield Block(offset, b"".join(parts))
            offset += pending
            parts, pending, skipping = [], 0, False
            start = nl + 1
        last = buf.rfind(b"\n")
        if last >= start:
            yield Block(offset, buf[start: last + 1] if start or last + 1 < len(buf) else buf)
            offset += last + 1 - start
            start = last + 1
        if start < len(buf):
            pending = len(buf) - start
            if pending > max_line:
                skipping = True
            else:
                parts = [buf[start:]]
    if skipping:
        yield LongLine(offset, pending)
    elif parts:
        yield Block(offset, b"".join(parts))
