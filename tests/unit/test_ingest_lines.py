"""read_blocks: whole lines only, offsets exact, lines over the limit that span reads skipped, any block size."""

from __future__ import annotations

import io

from hypothesis import given, settings, strategies as st

from orca.ingest.lines import Block, LongLine, read_blocks


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x")), min_size=1, max_size=30),
       st.booleans(), st.integers(1, 64), st.integers(0, 30))
def test_blocks_reassemble_the_stream(lines, final_newline, block_size, max_line):
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    got_lines, offset = [], 0
    for item in read_blocks(io.BytesIO(data), block_size, max_line):
        assert item.offset == offset
        if isinstance(item, LongLine):
            text = data[offset: offset + item.length]
            assert len(text.rstrip(b"\n")) > max_line
            got_lines.append(None)
            offset += item.length
        else:
            assert isinstance(item, Block)
            parts = item.data.split(b"\n")
            if item.data.endswith(b"\n"):
                parts.pop()
            got_lines.extend(parts)  # a line within one read block may exceed max_line: the scanner checks those
            offset += len(item.data)
    assert offset == len(data)
    expected = data.split(b"\n") if data else []
    if data.endswith(b"\n"):
        expected.pop()  # a final newline ends the last line; it does not start another
    assert len(got_lines) == len(expected)
    for got, exp in zip(got_lines, expected):
        if got is None:
            assert len(exp) > max_line
        else:
            assert got == exp
