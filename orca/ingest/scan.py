"""Pass 1 of ingest: validate every line of a local JSONL file and collect compact per-request estimates.

Streaming and memory-lean: the file is read in blocks of whole lines (``orca.ingest.lines``),
each valid request leaves 28 bytes behind (end offset, prompt and output token estimates,
prefix hash, custom_id hash), and lines are decoded with msgspec into a strict shape whose
prompt fields stay raw bytes. A line the strict shape refuses is decoded again loosely to
say exactly what is wrong. custom_id uniqueness is checked at the end by sorting the 64-bit
id hashes; the few lines that collide are read again to confirm and report them.

Choices (OpenAI rejects these too):
- a blank (or whitespace-only) line anywhere is ``invalid_json_line`` with its line number;
  only the file's final newline is optional;
- non-UTF-8 bytes are ``invalid_encoding`` for the line that holds them;
- a line over ``max_line_mb`` is ``too_large`` and is skipped without being buffered;
- unknown top-level keys are ignored; a duplicate key keeps its last value;
- a request whose estimated prompt tokens plus max_tokens exceed its model's context length
  (``context_length``, by default the catalog's) is ``context_length_exceeded``.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from orca.ingest import records as R
from orca.ingest.lines import Block, LongLine, read_blocks
from orca.models import ENDPOINTS, ValidationIssue
from orca.settings import IngestSettings

MB = 1024 * 1024
BLOCK_SIZE = 4 * MB  # read size: large enough to amortise per-read overhead, small next to the line limit


@dataclass
class ScanResult:
    """What pass 1 learned. Arrays hold one entry per valid request, in input order."""

    size: int = 0
    n_lines: int = 0
    errors: list[ValidationIssue] = field(default_factory=list)
    error_count: int = 0
    endpoint: str | None = None
    model: str | None = None
    models: dict[str, int] = field(default_factory=dict)
    endpoints: dict[str, int] = field(default_factory=dict)
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))       # 1-based line numbers
    ends: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))         # byte offset after each line
    prompt_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    output_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    prefixes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))    # crc32 of the prompt's first bytes

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    @property
    def n_requests(self) -> int:
        return len(self.ends)


ContextLookup = Callable[[str], "int | None"]


def catalog_context_length(model: str) -> int | None:
    """The model's context length from the bundled catalog (None: unknown model, not checked)."""
    from orca.planner.catalog import context_length

    return context_length(model)


class _Scanner:
    def __init__(self, settings: IngestSettings, model: str | None, allow_multiple_models: bool, endpoint: str | None,
                 context_of: ContextLookup | None = None) -> None:
        self.s = settings
        self.context_of = context_of
        self.model_override = model
        self.allow_multi = allow_multiple_models
        self.result = ScanResult(endpoint=endpoint)
        self.fixed_endpoint = endpoint is not None
        self.line_no = 0
        self.inv_cpt = 1.0 / settings.chars_per_token
        self.prefix = settings.prefix_chars
        self.default_out = settings.default_max_tokens
        self.stop = False
        self.blank = 0
        # Per-request columns, appended as we go (array('…') is compact and cheap to append to).
        self.lines = array("I")
        self.ends = array("q")
        self.ptok = array("I")
        self.otok = array("I")
        self.prefixes = array("I")
        self.ids = array("q")

    # -- errors -----------------------------------------------------------
    def error(self, code: str, line: int | None, message: str, param: str | None = None) -> None:
        r = self.result
        r.error_count += 1
        if len(r.errors) < self.s.max_errors_reported:
            r.errors.append(ValidationIssue(code=code, line=line, message=message, param=param))

    # -- blocks -----------------------------------------------------------
    def long_line(self, item: LongLine) -> None:
        self.line_no += 1
        self.error("too_large", self.line_no,
                   f"line is {item.length} bytes; the limit is {self.s.max_line_mb} MB per request")

    def block(self, block: Block) -> None:
        data = block.data
        utf8_ok = True
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                utf8_ok = False
        lines = data.split(b"\n")
        if not lines[-1]:
            lines.pop()  # the block ends with a newline
        end = block.offset
        decode = R.strict_decoder.decode
        max_requests = self.s.max_requests
        max_line = self.s.max_line_mb * MB
        r = self.result
        # Fast path: a valid line like the ones before it, recorded inline; anything else goes to accept()/diagnose().
        fast = r.error_count == 0 and not self.allow_multi and r.endpoint is not None
        endpoint, model_ref = r.endpoint, (self.model_override or r.model)
        field_name = R.PROMPT_FIELD.get(r.endpoint or "", "")
        chat = field_name == "messages"
        resp = r.endpoint == R.RESPONSES
        default_out = 0 if r.endpoint == "/v1/embeddings" else self.default_out
        inv_cpt, prefix, unset = self.inv_cpt, self.prefix, R.UNSET
        lines_app, ends_app, ptok_app = self.lines.append, self.ends.append, self.ptok.append
        otok_app, pre_app, ids_app = self.otok.append, self.prefixes.append, self.ids.append
        crc32 = zlib.crc32
        n = self.line_no
        for line in lines:
            n += 1
            end += len(line) + 1
            if n > max_requests:
                self.line_no = n
                self.error("too_large", n, f"more than {max_requests} requests in one file")
                self.stop = True
                return
            if len(line) > max_line:  # a long line inside one read block (limit below the block size)
                self.line_no = n
                self.error("too_large", n, f"line is {len(line)} bytes; the limit is {self.s.max_line_mb} MB per request")
                fast = False
                continue
            if utf8_ok:
                try:
                    rec = decode(line)
                except R.DecodeError:
                    pass
                else:
                    b = rec.body
                    if fast and rec.url == endpoint and rec.custom_id and (b.model == model_ref or self.model_override):
                        raw = getattr(b, field_name)
                        out = (b.max_output_tokens if resp else
                               b.max_tokens if b.max_tokens is not None else b.max_completion_tokens)
                        if raw is not unset and (out is None or out >= 0):
                            prompt = memoryview(raw)
                            if ((not chat or (prompt[0] == 0x5B and len(prompt) > 2))
                                    and (not resp or (prompt[0] in (0x5B, 0x22) and len(prompt) > 2))):
                                lines_app(n)
                                ends_app(end)
                                ptok_app(int(len(prompt) * inv_cpt) + 1)
                                otok_app(default_out if out is None else min(out, 0xFFFFFFFF))
                                pre_app(crc32(prompt[:prefix]))
                                ids_app(hash(rec.custom_id))
                                continue
                    self.line_no = n
                    self.accept(end, rec.custom_id, rec.url, b.model, b)
                    fast = r.error_count == 0 and not self.allow_multi and r.endpoint is not None
                    endpoint, model_ref = r.endpoint, (self.model_override or r.model)
                    field_name = R.PROMPT_FIELD.get(r.endpoint or "", "")
                    chat = field_name == "messages"
                    resp = r.endpoint == R.RESPONSES
                    default_out = 0 if r.endpoint == "/v1/embeddings" else self.default_out
                    continue
            self.line_no = n
            self.diagnose(line, end, utf8_ok)
            fast = False
        self.line_no = n

    # -- one line ---------------------------------------------------------
    def accept(self, end: int, custom_id: str, url: str, model, body) -> None:
        """Checks the strict shape cannot express, then record the request's estimates."""
        n = self.line_no
        r = self.result
        if not custom_id:
            return self.error("invalid_custom_id", n, "custom_id must be a non-empty string", "custom_id")
        if url != r.endpoint:
            if r.endpoint is None:
                r.endpoint = url
            elif not self.allow_multi or self.fixed_endpoint:
                return self.error("url_mismatch", n, f"url {url!r} differs from the batch's endpoint {r.endpoint!r}", "url")
        field_name = R.PROMPT_FIELD[url]
        raw = getattr(body, field_name)
        if raw is R.UNSET:
            return self.error("missing_required_parameter", n, f"body.{field_name} is required for {url}", f"body.{field_name}")
        prompt = memoryview(raw)
        if field_name == "messages" and (prompt[0] != 0x5B or len(prompt) < 3):  # a non-empty JSON array
            return self.error("invalid_body", n, "body.messages must be a non-empty array", "body.messages")
        if url == R.RESPONSES and (prompt[0] not in (0x5B, 0x22) or len(prompt) < 3):
            return self.error("invalid_body", n, "body.input must be a non-empty string or a non-empty array of input items",
                              "body.input")
        if self.model_override is None:
            if model is R.UNSET:
                return self.error("missing_required_parameter", n, "body.model is required", "body.model")
            if model != r.model:
                if not isinstance(model, str) or not model:
                    return self.error("invalid_body", n, "body.model must be a non-empty string", "body.model")
                if r.model is None:
                    r.model = model
                elif not self.allow_multi:
                    return self.error("model_mismatch", n, f"model {model!r} differs from the file's model {r.model!r}; "
                                      "one model per file unless multiple models are allowed", "body.model")
        if url == R.RESPONSES:
            out, name = body.max_output_tokens, "max_output_tokens"
        elif body.max_tokens is not None:
            out, name = body.max_tokens, "max_tokens"
        else:
            out, name = body.max_completion_tokens, "max_completion_tokens"
        if out is None:
            out = 0 if url == "/v1/embeddings" else self.default_out
        elif type(out) is not int or out < 0:
            return self.error("invalid_body", n, f"body.{name} must be a non-negative integer", f"body.{name}")
        used = self.model_override or model
        if self.allow_multi and isinstance(used, str):  # a one-model file is checked at once in finish()
            self.check_context(n, used, int(len(prompt) * self.inv_cpt) + 1, out)
        if r.error_count:
            # The file is already invalid: keep only what duplicate detection needs.
            self.lines.append(n)
            self.ids.append(hash(custom_id))
            return
        if self.allow_multi:
            r.endpoints[url] = r.endpoints.get(url, 0) + 1
            if model is not R.UNSET:
                r.models[model] = r.models.get(model, 0) + 1
        self.lines.append(n)
        self.ends.append(end)
        self.ptok.append(int(len(prompt) * self.inv_cpt) + 1)
        self.otok.append(min(out, 0xFFFFFFFF))
        self.prefixes.append(zlib.crc32(prompt[: self.prefix]))
        self.ids.append(hash(custom_id))

    def diagnose(self, line: bytes, end: int, utf8_ok: bool) -> None:
        """Say precisely why a line the strict shape refused is invalid (or accept it: the strict shape is narrow)."""
        n = self.line_no
        if not line.strip():
            self.blank += 1
            return self.error("invalid_json_line", n, "blank line: every line must be one JSON request "
                              "(only a single final newline is allowed)")
        if not utf8_ok:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return self.error("invalid_encoding", n, f"line is not valid UTF-8 (byte {exc.start} of the line)")
        try:
            rec = R.loose_decoder.decode(line)
        except R.ValidationError:
            return self.error("invalid_json_line", n, "line is not a JSON object")
        except R.DecodeError as exc:
            return self.error("invalid_json_line", n, f"line is not valid JSON: {exc}")
        for name in ("custom_id", "method", "url", "body"):
            if getattr(rec, name) is R.UNSET:
                return self.error("missing_required_parameter", n, f"{name} is required", name)
        if not isinstance(rec.custom_id, str):
            return self.error("invalid_custom_id", n, "custom_id must be a non-empty string", "custom_id")
        if rec.method != "POST":
            return self.error("invalid_method", n, f"method must be 'POST', got {rec.method!r}", "method")
        if rec.url not in ENDPOINTS:
            return self.error("invalid_url", n, f"url must be one of {', '.join(ENDPOINTS)}, got {rec.url!r}", "url")
        try:
            body = R.loose_body_decoder.decode(rec.body)
        except R.DecodeError:
            return self.error("invalid_body", n, "body must be a JSON object", "body")
        self.accept(end, rec.custom_id, rec.url, body.model, body)

    def check_context(self, line: int, model: str, prompt_tokens: int, max_tokens: int) -> None:
        limit = self.context_of(model) if self.context_of is not None else None
        if limit and prompt_tokens + max_tokens > limit:
            self.error("context_length_exceeded", line,
                       f"about {prompt_tokens} prompt tokens (estimated at {self.s.chars_per_token:g} characters per token) "
                       f"plus max_tokens {max_tokens} is {prompt_tokens + max_tokens}, over {model}'s context length of {limit}",
                       "body")

    def check_contexts(self, lines: np.ndarray, ptok: np.ndarray, otok: np.ndarray) -> None:
        """Every request of a one-model file against the model's context length, vectorised."""
        model = self.model_override or self.result.model
        limit = self.context_of(model) if self.context_of is not None and model else None
        if not limit or not len(ptok):
            return
        over = np.flatnonzero(ptok.astype(np.int64) + otok > limit)
        shown = over[: self.s.max_errors_reported]
        for i in shown.tolist():
            self.check_context(int(lines[i]), model, int(ptok[i]), int(otok[i]))
        self.result.error_count += len(over) - len(shown)

    # -- end of file --------------------------------------------------------
    def finish(self, path: str, size: int) -> ScanResult:
        r = self.result
        r.size, r.n_lines = size, self.line_no
        if self.line_no == self.blank:  # nothing but blank lines
            r.errors, r.error_count = [], 0
            self.error("empty_file", None, "the file has no requests")
        lines = np.frombuffer(self.lines, np.uint32).copy()
        ids = np.frombuffer(self.ids, np.int64).copy()
        self.lines = self.ids = None  # type: ignore[assignment]
        self.check_duplicates(path, lines, ids)
        ptok = np.frombuffer(self.ptok, np.uint32).copy()
        otok = np.frombuffer(self.otok, np.uint32).copy()
        if r.ok and not self.allow_multi:
            self.check_contexts(lines, ptok, otok)
        r.errors.sort(key=lambda e: (e.line or 0))
        if r.ok:
            ends = np.frombuffer(self.ends, np.int64).copy()
            if len(ends):
                ends[-1] = min(ends[-1], size)  # the last line may lack its newline
            r.lines, r.ends = lines, ends
            r.prompt_tokens = ptok
            r.output_tokens = otok
            r.prefixes = np.frombuffer(self.prefixes, np.uint32).copy()
        return r

    def check_duplicates(self, path: str, lines: np.ndarray, ids: np.ndarray) -> None:
        if len(ids) < 2:
            return
        order = np.argsort(ids, kind="stable")  # stable: within equal hashes, input order
        sids = ids[order]
        dup = np.flatnonzero(sids[1:] == sids[:-1]) + 1  # positions (in sorted order) of repeats
        if not len(dup):
            return
        # The earliest line of each repeated hash, for the message.
        run_start = np.flatnonzero(np.concatenate(([True], sids[1:] != sids[:-1])))
        first_pos = run_start[np.searchsorted(run_start, dup, side="right") - 1]
        repeat_lines = lines[order[dup]]
        first_lines = lines[order[first_pos]]
        shown = np.argsort(repeat_lines, kind="stable")[: self.s.max_errors_reported]
        wanted = {int(repeat_lines[i]) for i in shown} | {int(first_lines[i]) for i in shown}
        found = _read_custom_ids(path, wanted, self.s)
        collisions = 0
        for i in shown:
            line, first = int(repeat_lines[i]), int(first_lines[i])
            cid = found.get(line)
            if cid is None or cid != found.get(first):
                collisions += 1  # 64-bit hash collision of two different ids: not a duplicate
                continue
            self.result.error_count += 1
            if len(self.result.errors) < self.s.max_errors_reported:
                self.result.errors.append(ValidationIssue(
                    code="duplicate_custom_id", line=line, param="custom_id",
                    message=f"custom_id {cid!r} duplicates line {first}; custom_id must be unique in the file"))
        # Repeats beyond the reported ones are counted; collisions among them are vanishingly unlikely.
        self.result.error_count += max(0, len(dup) - len(shown))


def _read_custom_ids(path: str, wanted: set[int], settings: IngestSettings) -> dict[int, str]:
    """custom_id of the given lines (a third, rare pass: only when duplicates are suspected)."""
    found: dict[int, str] = {}
    line_no = 0
    with open(path, "rb") as f:
        for item in read_blocks(f, BLOCK_SIZE, settings.max_line_mb * MB):
            if isinstance(item, LongLine):
                line_no += 1
                continue
            lines = item.data.split(b"\n")
            if not lines[-1]:
                lines.pop()
            for line in lines:
                line_no += 1
                if line_no in wanted:
                    found[line_no] = R.id_decoder.decode(line).custom_id
            if len(found) == len(wanted):
                break
    return found


def scan_file(path: str, settings: IngestSettings | None = None, model: str | None = None,
              allow_multiple_models: bool = False, endpoint: str | None = None,
              context_length: ContextLookup | None = catalog_context_length) -> ScanResult:
    """Validate a local JSONL batch file and collect per-request estimates (pass 1).

    ``context_length``: model -> its context length (None: not checked); the catalog's by default.
    """
    settings = settings or IngestSettings()
    scanner = _Scanner(settings, model, allow_multiple_models, endpoint, context_length)
    with open(path, "rb", buffering=0) as f:
        size = f.seek(0, 2)
        f.seek(0)
        if size > settings.max_file_mb * MB:
            scanner.error("too_large", None, f"file is {size} bytes; the limit is {settings.max_file_mb} MB")
            scanner.result.size = size
            return scanner.result
        if size == 0:
            scanner.error("empty_file", None, "the file is empty")
            return scanner.result
        for item in read_blocks(f, BLOCK_SIZE, settings.max_line_mb * MB):
            if isinstance(item, LongLine):
                scanner.long_line(item)
            else:
                scanner.block(item)
            if scanner.stop:
                break
    if model is not None:
        scanner.result.model = model
    return scanner.finish(path, size)
