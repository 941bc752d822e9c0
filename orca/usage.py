"""Token usage: one request's engine-reported ``usage`` read the same way whatever the endpoint, and sums of it.

Chat, completions and embeddings report ``prompt_tokens``/``completion_tokens`` (details under
``prompt_tokens_details.cached_tokens`` and ``completion_tokens_details.reasoning_tokens``);
Responses reports ``input_tokens``/``output_tokens`` (``input_tokens_details``/``output_tokens_details``).
A batch's ``usage`` (OpenAI's Batch object) is the sum over its committed successful requests, in
Responses naming.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


def _int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def of(cls, usage: Any) -> "TokenUsage":
        """A response body's ``usage`` in either naming (missing or malformed counts are 0)."""
        if not isinstance(usage, dict):
            return cls()
        inp = _int(usage.get("input_tokens", usage.get("prompt_tokens")))
        out = _int(usage.get("output_tokens", usage.get("completion_tokens")))
        in_details = usage.get("input_tokens_details") or usage.get("prompt_tokens_details")
        out_details = usage.get("output_tokens_details") or usage.get("completion_tokens_details")
        return cls(
            input_tokens=inp, output_tokens=out, total_tokens=_int(usage.get("total_tokens")) or inp + out,
            cached_tokens=_int(in_details.get("cached_tokens")) if isinstance(in_details, dict) else 0,
            reasoning_tokens=_int(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0,
        )

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        return TokenUsage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TokenUsage":
        return cls(**{f.name: _int(data.get(f.name)) for f in fields(cls)})

    def openai(self) -> dict:
        """OpenAI's Batch ``usage`` object."""
        return {"input_tokens": self.input_tokens, "input_tokens_details": {"cached_tokens": self.cached_tokens},
                "output_tokens": self.output_tokens, "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
                "total_tokens": self.total_tokens}


def lines_usage(lines: list[dict]) -> TokenUsage:
    """Summed usage of a chunk's output lines: only requests answered 200 without an error count."""
    total = TokenUsage()
    for line in lines:
        response = line.get("response")
        if line.get("error") is None and isinstance(response, dict) and response.get("status_code") == 200:
            body = response.get("body")
            if isinstance(body, dict):
                total = total + TokenUsage.of(body.get("usage"))
    return total
