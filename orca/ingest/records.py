"""The shapes an input line is decoded into (msgspec): a strict one for the fast path, a loose one to diagnose.

Prompt fields are kept as raw JSON bytes (``msgspec.Raw``): the splitter needs only their
size and a hash of their first bytes, so the bulk of each line is never turned into Python objects.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, Raw, UnsetType

Url = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]

# The body field that carries the prompt for each endpoint (chat: a non-empty array; responses:
# a non-empty string or a non-empty array of input items).
PROMPT_FIELD: dict[str, str] = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
    "/v1/responses": "input",
}

#: The Responses endpoint caps output with ``max_output_tokens``; the others with ``max_tokens``
#: (chat also ``max_completion_tokens``).
RESPONSES = "/v1/responses"


class StrictBody(msgspec.Struct):
    model: str | UnsetType = UNSET
    messages: Raw | UnsetType = UNSET
    prompt: Raw | UnsetType = UNSET
    input: Raw | UnsetType = UNSET
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    max_output_tokens: int | None = None


class StrictLine(msgspec.Struct):
    """A well-formed request line (unknown keys are ignored, as OpenAI does)."""

    custom_id: str
    method: Literal["POST"]
    url: Url
    body: StrictBody


class LooseBody(msgspec.Struct):
    model: object = UNSET
    messages: Raw | UnsetType = UNSET
    prompt: Raw | UnsetType = UNSET
    input: Raw | UnsetType = UNSET
    max_tokens: object = None
    max_completion_tokens: object = None
    max_output_tokens: object = None


class LooseLine(msgspec.Struct):
    """Any JSON object: used to say precisely what is wrong with a line the strict shape refused."""

    custom_id: object = UNSET
    method: object = UNSET
    url: object = UNSET
    body: Raw | UnsetType = UNSET


class IdOnly(msgspec.Struct):
    custom_id: object = UNSET


strict_decoder = msgspec.json.Decoder(StrictLine)
loose_decoder = msgspec.json.Decoder(LooseLine)
loose_body_decoder = msgspec.json.Decoder(LooseBody)
id_decoder = msgspec.json.Decoder(IdOnly)
DecodeError = msgspec.DecodeError
ValidationError = msgspec.ValidationError
