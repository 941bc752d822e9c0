"""Text the CLI prints: job tables, the job detail view, validation error lists. Pure: models in, strings out."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

from orca.control.schemas import Job
from orca.durations import format_duration


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, no trailing blanks."""
    cells = [[str(c) for c in header]] + [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def progress_text(job: Job) -> str:
    c = job.request_counts
    if not c.total:
        return "-"
    text = f"{c.completed + c.failed}/{c.total}"
    notes = [f"{c.failed} failed"] if c.failed else []
    if job.progress.requests_uncommitted and not job.status.terminal:
        notes.append(f"+{job.progress.requests_uncommitted} answered in running chunks")
    return text + (f" ({', '.join(notes)})" if notes else "")


def cost_text(job: Job) -> str:
    text = f"${job.cost_usd:,.2f}"
    if job.projected_cost_usd is not None and not job.status.terminal:
        text += f" (projected ${job.projected_cost_usd:,.2f})"
    return text


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    delta = ts - now
    rel = f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"
    return f"{stamp} ({rel})"


def jobs_table(jobs: Sequence[Job], now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = [
        (j.id, j.status.value, j.model or "-", progress_text(j),
         format_duration(j.eta_s) if not j.status.terminal else "-", f"${j.cost_usd:,.2f}",
         format_duration(now - j.created_at) + " ago")
        for j in jobs
    ]
    return table(("ID", "STATUS", "MODEL", "REQUESTS", "ETA", "COST", "CREATED"), rows)


def plan_text(pl: Any) -> str:
    """One line for a job's plan: '2 x 1xL4 tp1/pp1 spot us-east-1, ETA 1h 10m, $3.20'."""
    return (f"{pl.replicas} x {pl.gpus_per_replica}x{pl.gpu} tp{pl.tp}/pp{pl.pp} {pl.market}"
            + (f" {pl.region}" if pl.region else "")
            + f", ETA {format_duration(pl.expected_finish_s)}, ${pl.expected_cost_usd:,.2f}")


def quote_text(job: Job) -> str:
    """The deadline quote made at planning, with the actual figures beside it once the job has ended."""
    q = job.quote
    text = (f"expected ${q.expected_cost_usd:,.2f}, P(deadline met) {q.p_deadline_met:.2f} "
            f"({q.runs} simulated runs)")
    if job.status.terminal:
        end = job.completed_at or job.failed_at or job.cancelled_at or job.expired_at
        met = job.completed_at is not None and job.completed_at <= job.deadline_at
        text += f"; actual ${job.cost_usd:,.2f}, deadline {'met' if met else 'missed'}" + (
            f" ({format_duration(end - job.created_at)})" if end else "")
    return text


def job_detail(job: Job, now: float | None = None) -> str:
    """The `orca status JOB` view: status, progress, ETA, deadline, cost, plan, pools, swaps."""
    now = time.time() if now is None else now
    p = job.progress
    lines = [
        ("job", job.id),
        ("status", job.status.value),
        ("model", f"{job.model or '-'}" + (f" ({job.endpoint})" if job.endpoint else "")),
        ("requests", progress_text(job)),
        ("chunks", f"{p.chunks_done}/{p.chunks_total} done, {p.chunks_leased} running, {p.chunks_pending} queued"
                   + (f", {p.chunks_dead} failed" if p.chunks_dead else "") if p.chunks_total else "-"),
        ("eta", format_duration(job.eta_s) if not job.status.terminal else "-"),
        ("created", _when(job.created_at, now)),
        ("deadline", _when(job.deadline_at, now)),
        ("cost", cost_text(job)),
    ]
    u = job.usage
    if u.total_tokens:
        lines.append(("tokens", f"{u.input_tokens:,} in ({u.cached_tokens:,} cached), {u.output_tokens:,} out "
                                "(committed requests)"))
    if job.plan is not None:
        lines.append(("plan", plan_text(job.plan)))
    if job.quote is not None:
        lines.append(("quote", quote_text(job)))
    if job.message:
        lines.append(("message", job.message))
    if job.validation_error_count:
        lines.append(("errors", f"{job.validation_error_count} validation error(s): orca errors {job.id}"))
    if job.output_available:
        lines.append(("results", f"orca results {job.id} -o output.jsonl"))
    width = max(len(k) for k, _ in lines)
    out = "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)
    if job.pools:
        rows = [(pool.key, pool.gpu, pool.market, pool.launcher, pool.state,
                 ", ".join(f"{n} {s}" for s, n in sorted(pool.replicas.items())) or "-",
                 pool.chunks_completed, f"${pool.cost_usd:,.2f}") for pool in job.pools]
        out += "\n\npools\n" + table(("POOL", "GPU", "MARKET", "LAUNCHER", "STATE", "REPLICAS", "CHUNKS", "COST"), rows)
    if job.swaps:
        rows = [(s.from_pool, s.to_pool, s.state, _when(s.started_at, now)) for s in job.swaps]
        out += "\n\nswaps\n" + table(("FROM", "TO", "STATE", "STARTED"), rows)
    return out


def issue_lines(issues: Iterable[Any], total: int | None = None, limit: int = 50) -> list[str]:
    """'line 3: invalid_json: ...' per validation issue (dicts or models), at most ``limit``."""
    out = []
    items = list(issues)
    for issue in items[:limit]:
        d = issue if isinstance(issue, dict) else issue.model_dump()
        where = f"line {d['line']}" if d.get("line") is not None else "file"
        param = f" [{d['param']}]" if d.get("param") else ""
        out.append(f"  {where}: {d.get('code', 'invalid')}{param}: {d.get('message', '')}")
    shown = min(len(items), limit)
    total = max(total or 0, len(items))
    if total > shown:
        out.append(f"  ... and {total - shown} more")
    return out


def event_lines(events: Iterable[dict]) -> list[str]:
    out = []
    for e in events:
        t = e.get("t")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, (int, float)) else "-"
        out.append(f"{stamp}  {e.get('kind', '-'):<12} {e.get('message', '')}")
    return out


def settings_reference(settings: Any) -> list[dict[str, Any]]:
    """Every setting as {env, section, field, value, default, description}: ``ORCA_<FIELD>`` or ``ORCA_<SECTION>__<FIELD>``."""
    from pydantic import BaseModel

    rows: list[dict[str, Any]] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for sub, subfield in type(value).model_fields.items():
                rows.append({"env": f"ORCA_{name.upper()}__{sub.upper()}", "section": name, "field": sub,
                             "value": getattr(value, sub), "default": subfield.get_default(call_default_factory=True),
                             "description": subfield.description or ""})
        else:
            rows.append({"env": f"ORCA_{name.upper()}", "section": "", "field": name, "value": _masked(name, value),
                         "default": field.get_default(call_default_factory=True), "description": field.description or ""})
    return rows


def _masked(name: str, value: Any) -> Any:
    """Secrets never printed: the token is hidden, a password in a URL is starred out."""
    if value is None:
        return None
    if name == "api_token":
        return "(set)"
    if isinstance(value, str):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", value)
    return value


def settings_markdown(rows: list[dict[str, Any]]) -> str:
    """The README's configuration reference: one table per section, defaults as in code."""
    out: list[str] = []
    section = None
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            out += ["", f"#### {section or 'top level'}", "", "| variable | default | what it is for |", "|---|---|---|"]
        default = row["default"]
        if row["env"] == "ORCA_HOME":
            default = "~/.orca"
        shown = "unset" if default is None else f"`{json.dumps(default) if isinstance(default, (dict, list)) else default}`"
        out.append(f"| `{row['env']}` | {shown} | {row['description'].replace('|', '/')} |")
    return "\n".join(out[1:]) + "\n"
