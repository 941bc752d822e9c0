"""Chunk input lines in, OpenAI batch output lines out (the format in ARCHITECTURE.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestLine:
    """One request of a chunk: its position in the chunk and its OpenAI batch fields."""

    index: int
    custom_id: str
    method: str
    url: str
    body: dict


def parse_chunk(data: bytes) -> list[RequestLine]:
    """The requests of a chunk data object (validated at ingest; a broken line raises ValueError)."""
    out = []
    for index, raw in enumerate(data.splitlines()):
        if not raw.strip():
            continue
        rec = json.loads(raw)
        out.append(RequestLine(index, rec["custom_id"], rec.get("method", "POST"), rec["url"], rec["body"]))
    return out


def output_id(job_id: str, chunk_id: str, index: int) -> str:
    """Deterministic output line id: the same request gets the same id on every attempt."""
    digest = hashlib.sha256(f"{job_id}\x00{chunk_id}\x00{index}".encode()).hexdigest()[:32]
    return f"batch_req_{digest}"


def success_line(line_id: str, custom_id: str, status: int, request_id: str, body: Any) -> dict:
    return {"id": line_id, "custom_id": custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body}, "error": None}


def error_line(line_id: str, custom_id: str, code: str, message: str,
               status: int | None = None, request_id: str | None = None, body: Any = None) -> dict:
    """A request that failed for good; ``status`` set means the engine answered (its response is kept)."""
    response = None if status is None else {"status_code": status, "request_id": request_id, "body": body}
    return {"id": line_id, "custom_id": custom_id, "response": response, "error": {"code": code, "message": message}}


def encode_lines(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)
