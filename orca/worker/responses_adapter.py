"""Serve ``/v1/responses`` requests on an engine that only speaks chat completions (llama.cpp, the fake engine).

Pure translation, both ways; the forwarder calls it for engines whose ``serves_responses`` is False
(vLLM serves ``/v1/responses`` itself and gets the raw body).

Request (Responses -> chat completions):
- ``input``: a string (one user message) or a list of messages ``{"role", "content"}`` (optionally
  ``"type": "message"``) whose content is a string or a list of ``input_text``/``output_text`` parts;
  the ``developer`` role becomes ``system``;
- ``instructions``: a system message first;
- ``max_output_tokens`` -> ``max_tokens``; ``temperature``, ``top_p`` as they are;
- ``text.format`` of type ``text`` (anything else cannot be expressed);
- fields that change nothing for one stateless text generation (``metadata``, ``store``, ``user``,
  ``service_tier``, ``stream: false``, empty ``tools``, ...) are dropped; fields the Responses API
  does not define (engine extras such as ``seed`` or ``top_k``) pass through verbatim, as for the
  other endpoints.
Anything else (tools, images, files, reasoning, ``previous_response_id``, ...) raises
``Untranslatable`` with a code and the field's path, which the worker turns into that request's error line.

Response (chat completion -> Response object): the first choice's text as one ``message`` output item
with one ``output_text`` part; ``status`` ``incomplete`` (reason ``max_output_tokens``) when the engine
stopped at the token limit; ``usage`` renamed to input/output tokens with cached and reasoning details.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

RESPONSES = "/v1/responses"
CHAT = "/v1/chat/completions"

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = {"input_text", "output_text"}
# Responses fields with no effect on one stateless text answer: dropped (with the values that keep it so).
_DROPPED = {"metadata", "store", "user", "service_tier", "safety_identifier", "prompt_cache_key",
            "parallel_tool_calls", "background", "stream", "tool_choice", "tools", "truncation", "include"}
_NEUTRAL: dict[str, tuple] = {
    "background": (False, None), "stream": (False, None), "tools": ([], None), "include": ([], None),
    "tool_choice": ("auto", "none", None), "truncation": ("disabled", None),
}
# Responses fields the chat engine cannot honour.
_UNSUPPORTED = {"previous_response_id", "conversation", "reasoning", "prompt", "max_tool_calls", "top_logprobs",
                "stream_options"}


class Untranslatable(ValueError):
    """A Responses request the chat adapter cannot express; ``param`` names the field (e.g. ``input[1].content[0].type``)."""

    def __init__(self, code: str, param: str, message: str) -> None:
        super().__init__(message)
        self.code, self.param, self.message = code, param, message


def _unsupported(param: str, what: str) -> Untranslatable:
    return Untranslatable("unsupported_parameter", param,
                          f"{param}: {what} is not supported by this engine's /v1/responses adapter (text in, text out)")


def _text_of(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Untranslatable("invalid_value", param, f"{param} must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise _unsupported(f"{where}.type", f"content part {kind!r}")
        text = part.get("text")
        if not isinstance(text, str):
            raise Untranslatable("invalid_value", f"{where}.text", f"{where}.text must be a string")
        texts.append(text)
    return "".join(texts)


def _messages(body: dict) -> list[dict]:
    messages = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _unsupported("instructions", "non-string instructions")
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        return messages + [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise Untranslatable("invalid_value", "input", "input must be a string or a non-empty list of messages")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise Untranslatable("invalid_value", where, f"{where} must be an object")
        if item.get("type", "message") != "message":
            raise _unsupported(f"{where}.type", f"input item {item.get('type')!r}")
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise Untranslatable("invalid_value", f"{where}.role", f"{where}.role must be one of {', '.join(_ROLES)}")
        messages.append({"role": role, "content": _text_of(item.get("content"), f"{where}.content")})
    return messages


def to_chat(body: dict) -> dict:
    """The chat completions body for a Responses request body; raises Untranslatable."""
    chat: dict[str, Any] = {}
    for name, value in body.items():
        if name in _UNSUPPORTED:
            if value is not None:
                raise _unsupported(name, name)
        elif name in _DROPPED:
            if name in _NEUTRAL and value not in _NEUTRAL[name]:
                raise _unsupported(name, f"{name}={value!r}")
        elif name == "text":
            fmt = (value or {}).get("format") if isinstance(value, dict) else None
            if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
                kind = fmt.get("type") if isinstance(fmt, dict) else fmt
                raise _unsupported("text.format", f"output format {kind!r}")
            if isinstance(value, dict) and set(value) - {"format"}:
                raise _unsupported(f"text.{sorted(set(value) - {'format'})[0]}", "this text option")
        elif name == "max_output_tokens":
            if value is not None:
                chat["max_tokens"] = value
        elif name not in ("input", "instructions"):
            chat[name] = value  # model, temperature, top_p, and engine extras
    chat["messages"] = _messages(body)
    return chat


def _usage(chat_usage: Any) -> dict | None:
    if not isinstance(chat_usage, dict):
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": int(cached), "cache_write_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": int(reasoning)},
            "total_tokens": int(chat_usage.get("total_tokens") or prompt + completion)}


def from_chat(chat: dict, request: dict, response_id: str) -> dict:
    """The Response object for a chat completion answering ``request`` (a Responses body).

    ``response_id`` is stable per request line (``resp_...``), so a retried chunk writes the same ids.
    """
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content") or ""
    truncated = choice.get("finish_reason") == "length"
    status = "incomplete" if truncated else "completed"
    msg_id = "msg_" + hashlib.sha256(response_id.encode()).hexdigest()[:32]
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(chat.get("created") or time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": chat.get("model") or request.get("model"),
        "output": [{
            "type": "message", "id": msg_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": bool(request.get("store", False)),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation") or "disabled",
        "usage": _usage(chat.get("usage")),
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }
