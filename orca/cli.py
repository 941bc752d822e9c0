"""The ``orca`` command line (typer). The only module that imports typer.

Commands talk to the control plane through ``orca.Client`` (``ORCA_API_URL``, or the embedded
stack under ``ORCA_HOME``; ``orca submit`` starts it when it is not running). ``orca plan``
runs locally, without a server: it validates the file with ``orca.ingest`` and calls the
planner's pure functions, importing nothing heavy (no FastAPI, uvicorn, boto3, redis).

Output: human text on stdout, notices and progress on stderr; ``--json`` prints one JSON
object on stdout instead (for an orca error, ``{"error": {...}}``). Exit codes: 0 ok; 1 an orca error (one line on stderr; validation
errors listed by line) or a waited-for job that did not complete; 2 bad usage; 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

from orca.errors import InputValidationError, OrcaError

if TYPE_CHECKING:
    from orca.client import Client
    from orca.control.schemas import Job
    from orca.settings import Settings

app = typer.Typer(
    name="orca", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Batch LLM inference: OpenAI Batch JSONL in, deadline-aware GPU workers, one output line per request out.",
)

EXIT_FAILED = 1
#: click's exception base (typer may vendor click): usage errors pass through to exit 2.
_CLICK_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
EXIT_INTERRUPTED = 130

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (for scripts).")]
JobArg = Annotated[str, typer.Argument(help="Job id (batch_...).")]
DeadlineOpt = Annotated[str, typer.Option("--deadline", "-d", help="Time from now to finish by: 90m, 2h, 1d, 1h30m or seconds.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model to run (overrides the model named in the requests).")]
GpuOpt = Annotated[Optional[str], typer.Option("--gpu", help="Restrict the planner to one GPU type (e.g. H100, L4, cpu).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")]
MarketOpt = Annotated[Optional[list[str]], typer.Option("--market", help="Allowed market (repeatable): spot, on_demand, serverless, local.")]


def _err(line: str) -> None:
    typer.echo(line, err=True)


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _fail(exc: OrcaError, json_out: bool = False) -> None:
    """One line on stderr (plus the validation errors by line, if any); with --json also the error as JSON on stdout; exit 1."""
    from orca.cli_errors import error_dict, error_lines

    for line in error_lines(exc):
        _err(line)
    if json_out:
        _print_json({"error": error_dict(exc)})
    raise typer.Exit(EXIT_FAILED)


def _command(*names: str, on: typer.Typer | None = None, **kwargs: Any) -> Callable[[Callable], Callable]:
    """``app.command`` (or ``on.command``) that turns OrcaError into one stderr line and exit 1, Ctrl-C into
    exit 130, and any other failure into one line too (``ORCA_DEBUG=1`` shows its traceback)."""
    def register(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except OrcaError as exc:
                _fail(exc, json_out=bool(kw.get("json_out")))
            except KeyboardInterrupt:
                _err("orca: interrupted")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except (typer.Exit, typer.Abort, SystemExit, *_CLICK_ERRORS):  # click's own: usage errors exit 2
                raise
            except Exception as exc:
                import os

                if os.environ.get("ORCA_DEBUG"):
                    raise
                from orca.cli_errors import unexpected_error

                _fail(unexpected_error(exc), json_out=bool(kw.get("json_out")))

        (on or app).command(*names, **kwargs)(run)
        return fn
    return register


# -- seams (tests replace these) ------------------------------------------------
def get_settings() -> "Settings":
    """The settings from the environment; a bad ``ORCA_*`` value is one ConfigError line naming the variable."""
    from pydantic import ValidationError

    from orca.settings import get_settings as settings

    try:
        return settings()
    except ValidationError as exc:
        from orca.cli_errors import setting_error

        raise setting_error(exc) from None


def make_client(start: bool = False) -> "Client":
    """The client for this invocation; ``start`` starts the embedded stack when no server is configured."""
    from orca.client import Client

    return Client(settings=get_settings(), start=start, notice=_err)


# -- local validation (plan, submit) -----------------------------------------------------
def local_stats(path: Path, model: str | None, allow_multiple_models: bool = False):
    """Validate ``path`` here with ``orca.ingest`` and return its ``JobStats``; InputValidationError lists problems by line."""
    from orca.ingest import validate

    if not path.is_file():
        raise InputValidationError(f"no such file: {path}")
    result = validate(str(path), settings=get_settings().ingest, allow_multiple_models=allow_multiple_models, model=model)
    if not result.ok:
        raise InputValidationError(f"{path} is not a valid batch file ({result.error_count} error(s))",
                                   errors=result.errors, error_count=result.error_count)
    return result.stats


def _deadline_s(deadline: str) -> float:
    from orca.durations import parse_duration

    try:
        seconds = parse_duration(deadline)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--deadline") from None
    longest = get_settings().control.max_deadline_s
    if seconds > longest:
        from orca.durations import format_duration

        raise typer.BadParameter(f"{deadline!r} is beyond the longest deadline, {format_duration(longest)} "
                                 "(ORCA_CONTROL__MAX_DEADLINE_S)", param_hint="--deadline")
    return seconds


# -- commands ---------------------------------------------------------------------------
@_command("plan")
def plan_cmd(
    file: Annotated[Path, typer.Argument(help="Batch input (OpenAI Batch JSONL).")],
    deadline: DeadlineOpt = "24h",
    model: ModelOpt = None,
    gpu: GpuOpt = None,
    market: MarketOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the plans (GPU, TP/PP, market, replicas, ETA, cost) for a file without launching anything."""
    from orca.cli_plan import plan_lines, plan_report, plans_and_quote

    deadline_s = _deadline_s(deadline)
    stats = local_stats(file, model)
    plans, q = plans_and_quote(stats, deadline_s, model, gpu, market, get_settings())
    if json_out:
        _print_json(plan_report(plans, q, stats, model, deadline_s))
        return
    for line in plan_lines(plans, q, stats, model, deadline):
        typer.echo(line)


@_command("submit")
def submit_cmd(
    file: Annotated[Path, typer.Argument(help="Batch input (OpenAI Batch JSONL).")],
    deadline: DeadlineOpt = "24h",
    model: ModelOpt = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the job with a progress bar until it ends.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="With --wait: write the results here when the job completes.")] = None,
    launcher: Annotated[Optional[str], typer.Option("--launcher", help="local, skypilot, modal or runpod (default: the server's).")] = None,
    gpu: GpuOpt = None,
    market: MarketOpt = None,
    metadata: Annotated[Optional[list[str]], typer.Option("--metadata", help="KEY=VALUE to attach to the job (repeatable).")] = None,
    allow_multiple_models: Annotated[bool, typer.Option("--allow-multiple-models", help="Accept requests naming different models.")] = False,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Validate the file here before uploading (fails fast, launches nothing).")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Submit a batch file; with --wait, follow it to the end (exit 1 unless it completed)."""
    deadline_s = _deadline_s(deadline)
    from orca.cli_submit import parse_metadata

    try:
        meta = parse_metadata(metadata or [], get_settings().control)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--metadata") from None
    if output is not None and not wait:
        raise typer.BadParameter("--output needs --wait (or use `orca results JOB -o FILE`)", param_hint="--output")
    if validate:
        stats = local_stats(file, model, allow_multiple_models)
        if not json_out:
            _err(f"orca: {file}: {stats.n_requests} valid requests to {model or stats.model}")
        settings = get_settings()
        if settings.api_url is None and (launcher or settings.control.default_launcher) == "local":
            from orca.cli_submit import check_local_plan

            # The embedded stack plans over this machine's workers: say now if that cannot work, before uploading.
            check_local_plan(stats, deadline_s, model, launcher, gpu, market, settings)
        elif not json_out and not wait:  # with --wait the server's quote is shown once it has planned
            from orca.cli_submit import local_quote

            _err(f"orca: {local_quote(stats, deadline_s, model, gpu, market, settings)}")
    client = make_client(start=True)
    handle = client.submit(file, deadline=deadline, model=model, launcher=launcher, gpu=gpu, markets=market,
                           metadata=meta, allow_multiple_models=allow_multiple_models)
    job = handle.job
    if not wait:
        if json_out:
            _print_json(job.model_dump(mode="json"))
        else:
            typer.echo(job.id)
            _err(f"orca: submitted {job.id} (deadline {deadline}); follow it with `orca status {job.id}`")
        return
    if not json_out:
        _err(f"orca: submitted {job.id} (deadline {deadline}); waiting (Ctrl-C stops waiting, not the job)")
    from orca.cli_wait import announce_plan

    _wait_and_report(client, job.id, output, json_out, on_update=None if json_out else announce_plan())


def _wait_and_report(client: "Client", job_id: str, output: Path | None, json_out: bool,
                     on_update: Callable[["Job"], None] | None = None) -> None:
    from orca.cli_wait import final_summary, save_results, stopped_waiting_line

    try:
        job = client.wait(job_id, progress=True, on_update=on_update)
    except KeyboardInterrupt:
        _err(stopped_waiting_line(job_id))
        raise typer.Exit(EXIT_INTERRUPTED) from None
    written = save_results(client, job, output)
    if json_out:
        _print_json(job.model_dump(mode="json"))
    else:
        for line in final_summary(job, written):
            typer.echo(line)
    if job.status.value != "completed":
        raise typer.Exit(EXIT_FAILED)


@_command("status")
def status_cmd(
    job_id: Annotated[Optional[str], typer.Argument(help="Job id; without it, your latest jobs.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a job (progress, ETA, cost, plan, pools) or, without JOB, your latest jobs."""
    from orca.cli_format import job_detail

    client = make_client()
    if job_id is None:
        _show_jobs(client.list_jobs(limit=get_settings().control.list_limit), json_out)
        return
    job = client.get_job(job_id)
    if json_out:
        _print_json(job.model_dump(mode="json"))
    else:
        typer.echo(job_detail(job))


@_command("list")
def list_cmd(
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Most jobs to show (default from settings).")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user's jobs (needs an admin token).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List your jobs (with --all, everyone's), newest first."""
    _show_jobs(make_client().list_jobs(limit=limit or get_settings().control.list_limit, all_users=all_users), json_out)


def _show_jobs(jobs: list["Job"], json_out: bool) -> None:
    """A list of jobs (``status`` without JOB, ``list``): a table, or a JSON list object."""
    from orca.cli_format import jobs_table

    if json_out:
        _print_json({"object": "list", "data": [j.model_dump(mode="json") for j in jobs]})
    else:
        typer.echo(jobs_table(jobs) if jobs else "no jobs yet: orca submit FILE --deadline 2h")


def _download(job_id: str, kind: str, output: Path | None, json_out: bool) -> None:
    client = make_client()
    job = client.get_job(job_id)
    partial = not job.output_available and not job.status.terminal
    if partial:
        c = job.request_counts
        _err(f"orca: {job_id} is {job.status.value}: these are partial {kind} "
             f"(about {c.completed + c.failed}/{c.total} requests done so far)")
    if output is None:
        if json_out:
            raise typer.BadParameter("--json needs --output (the file content itself goes to stdout otherwise)", param_hint="--json")
        n = client.download(job_id, sys.stdout.buffer, kind, partial=partial)
        sys.stdout.flush()
    else:
        with open(output, "wb") as f:
            n = client.download(job_id, f, kind, partial=partial)
    if json_out:
        _print_json({"job": job_id, "kind": kind, "path": str(output), "lines": n, "partial": partial,
                     "status": job.status.value})
    elif output is not None:
        _err(f"orca: wrote {n} {kind} lines to {output}" + (" (partial)" if partial else ""))


@_command("results")
def results_cmd(
    job_id: JobArg,
    output: OutputOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Download a job's output.jsonl (partial results while it runs)."""
    _download(job_id, "results", output, json_out)


@_command("errors")
def errors_cmd(
    job_id: JobArg,
    output: OutputOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Download a job's errors.jsonl (failed requests, or the input's validation errors)."""
    _download(job_id, "errors", output, json_out)


@_command("cancel")
def cancel_cmd(job_id: JobArg, json_out: JsonOpt = False) -> None:
    """Cancel a job: workers stop, results so far are kept."""
    job = make_client().cancel(job_id)
    if json_out:
        _print_json(job.model_dump(mode="json"))
    else:
        typer.echo(f"{job.id} {job.status.value}")


@_command("logs")
def logs_cmd(job_id: JobArg, json_out: JsonOpt = False) -> None:
    """Show a job's events (created, validated, planned, workers, swaps, assembly)."""
    from orca.cli_format import event_lines

    events = make_client().logs(job_id)
    if json_out:
        _print_json({"object": "list", "job": job_id, "data": events})
    else:
        for line in event_lines(events):
            typer.echo(line)


@_command("swap")
def swap_cmd(
    job_id: JobArg,
    gpu: Annotated[str, typer.Option("--gpu", help="GPU type to move the job to (e.g. H100).")],
    tp: Annotated[int, typer.Option("--tp", min=1, help="Tensor parallel degree.")] = 1,
    pp: Annotated[int, typer.Option("--pp", min=1, help="Pipeline parallel degree.")] = 1,
    market: Annotated[str, typer.Option("--market", help="spot, on_demand or serverless.")] = "spot",
    launcher: Annotated[Optional[str], typer.Option("--launcher", help="Launcher of the new pool (default: the job's).")] = None,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel the swap in flight instead.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Move a running job to another GPU type: the new pool starts, then the old one drains."""
    from orca.control.schemas import SwapRequest

    job = make_client().swap(job_id, SwapRequest(gpu=gpu, tp=tp, pp=pp, market=market, launcher=launcher, cancel=cancel))
    if json_out:
        _print_json(job.model_dump(mode="json"))
        return
    swap = job.swaps[-1] if job.swaps else None
    if swap is None:
        typer.echo(f"{job.id}: swap requested")
    else:
        typer.echo(f"{job.id}: swap {swap.from_pool} -> {swap.to_pool} {swap.state}")


@_command("up")
def up_cmd(json_out: JsonOpt = False) -> None:
    """Start the embedded stack (Redis, local object store, control plane, local workers) under ORCA_HOME."""
    from orca.control import embedded

    status = embedded.up(get_settings())
    if json_out:
        _print_json(status.to_dict())
    else:
        typer.echo(f"orca is up: API {status.api_url}, home {status.home}, token in {status.token_file}")


@_command("down")
def down_cmd(json_out: JsonOpt = False) -> None:
    """Stop the embedded stack (workers, control plane, Redis). Jobs stay in ORCA_HOME and resume on `orca up`."""
    from orca.control import embedded

    settings = get_settings()
    embedded.down(settings)
    if json_out:
        _print_json({"down": True, "home": str(settings.home)})
    else:
        typer.echo(f"orca is down (state kept in {settings.home})")


@_command("dashboard")
def dashboard_cmd(
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the dashboard in a browser when one is available.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Print the web dashboard's URL (starting the embedded stack if needed) and open it in a browser."""
    from orca.cli_dashboard import open_in_browser, sign_in_notice, token_file

    client = make_client(start=True)
    url = client.api_url + "/"
    tokens = token_file(get_settings())
    opened = open_browser and open_in_browser(url)
    if json_out:
        _print_json({"url": url, "opened": opened, "token_file": str(tokens) if tokens else None})
        return
    typer.echo(url)
    _err(sign_in_notice(tokens, opened))


@_command("config")
def config_cmd(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the README's configuration reference (defaults) instead.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show every setting: its environment variable, current value and why it has that default."""
    from orca.cli_format import settings_markdown, settings_reference, table

    rows = settings_reference(get_settings())
    if markdown:
        typer.echo(settings_markdown(rows), nl=False)
    elif json_out:
        _print_json({"object": "list", "data": rows})
    else:
        typer.echo(table(("VARIABLE", "VALUE"), [(r["env"], "unset" if r["value"] is None else r["value"]) for r in rows]))


@_command("server")
def server_cmd(
    host: Annotated[Optional[str], typer.Option("--host", help="Bind address (default ORCA_CONTROL__HOST).")] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="Port (default ORCA_CONTROL__PORT).")] = None,
    no_controller: Annotated[bool, typer.Option("--no-controller", help="Serve the API only; another process runs the controller.")] = False,
    rq_worker: Annotated[bool, typer.Option("--rq-worker", help="Also run a worker for the long background steps (ingest, assembly) as a child process.")] = False,
    controller_only: Annotated[bool, typer.Option("--controller-only", help="Run only the controller loop, no API (several may share one Redis).")] = False,
) -> None:
    """Run the control plane in the foreground (needs ORCA_REDIS_URL)."""
    from orca.control import server_main

    argv = []
    if host:
        argv += ["--host", host]
    if port:
        argv += ["--port", str(port)]
    if no_controller:
        argv.append("--no-controller")
    if rq_worker:
        argv.append("--rq-worker")
    if controller_only:
        argv.append("--controller-only")
    server_main.main(argv)


# -- users of a shared control plane ------------------------------------------------------
users_app = typer.Typer(name="users", no_args_is_help=True, help="Users of a shared control plane (admins only, except `me`).")
token_app = typer.Typer(name="token", no_args_is_help=True, help="Your own API token.")
app.add_typer(users_app)
app.add_typer(token_app)
NameArg = Annotated[str, typer.Argument(help="User name (letters, digits, '.', '_', '-').")]


@_command("add", on=users_app)
def users_add_cmd(name: NameArg, admin: Annotated[bool, typer.Option("--admin", help="May manage users and see every job.")] = False,
                  reclaim_jobs: Annotated[bool, typer.Option("--reclaim-jobs", help="Reuse a revoked user's name: its old jobs and files go to the new user.")] = False,
                  json_out: JsonOpt = False) -> None:
    """Add a user and print their token (once: only its hash is stored)."""
    made = make_client().add_user(name, admin=admin, reclaim_jobs=reclaim_jobs)
    if json_out:
        _print_json(made)
        return
    from orca.cli_users import added_user_notice

    typer.echo(made["token"])
    _err(added_user_notice(made["user"]))


@_command("list", on=users_app)
def users_list_cmd(json_out: JsonOpt = False) -> None:
    """List the users."""
    users = make_client().users()
    if json_out:
        _print_json({"object": "list", "data": users})
    else:
        from orca.cli_users import user_line

        for user in users:
            typer.echo(user_line(user))


@_command("revoke", on=users_app)
def users_revoke_cmd(name: NameArg, json_out: JsonOpt = False) -> None:
    """Remove a user: their tokens stop working at once (their jobs keep running)."""
    user = make_client().revoke_user(name)
    if json_out:
        _print_json({"revoked": True, "user": user})
    else:
        typer.echo(f"revoked {user['name']}")


@_command("rotate", on=users_app)
def users_rotate_cmd(name: NameArg, json_out: JsonOpt = False) -> None:
    """Give a user a new token (printed once); their old one stops working at once."""
    made = make_client().rotate_token(name)
    if json_out:
        _print_json(made)
    else:
        typer.echo(made["token"])


@_command("quota", on=users_app)
def users_quota_cmd(
    name: NameArg,
    max_active_jobs: Annotated[Optional[float], typer.Option("--max-active-jobs", min=0, help="Unfinished jobs at once (0 = unlimited).")] = None,
    max_queued_requests: Annotated[Optional[float], typer.Option("--max-queued-requests", min=0, help="Requests across unfinished jobs (0 = unlimited).")] = None,
    max_usd_per_day: Annotated[Optional[float], typer.Option("--max-usd-per-day", min=0, help="Dollars over the last 24 hours (0 = unlimited).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Drop this user's overrides: the ORCA_QUOTA__* settings apply.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Set a user's quota overrides (the rest keep the server's ORCA_QUOTA__* settings)."""
    from orca.cli_users import quota_changes, user_line

    values = {"max_active_jobs": max_active_jobs, "max_queued_requests": max_queued_requests, "max_usd_per_day": max_usd_per_day}
    try:
        quotas = quota_changes(values, clear)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    user = make_client().set_quota(name, **quotas)
    if json_out:
        _print_json(user)
    else:
        typer.echo(user_line(user))


@_command("me", on=users_app)
def users_me_cmd(json_out: JsonOpt = False) -> None:
    """Who your token is, the quotas that apply to you and what you use of them."""
    me = make_client().me()
    if json_out:
        _print_json(me)
        return
    from orca.cli_users import me_lines

    for line in me_lines(me):
        typer.echo(line)


@_command("rotate", on=token_app)
def token_rotate_cmd(json_out: JsonOpt = False) -> None:
    """Replace your own token; the old one stops working at once. The embedded stack's token file is updated."""
    from orca.cli_users import replace_token_file

    client = make_client()
    settings = get_settings()
    made = client.rotate_token()
    path = replace_token_file(settings, client.token, made["token"])
    if json_out:
        _print_json({**made, "token_file": str(path) if path else None})
    elif path:
        typer.echo(f"rotated the token of {made['user']['name']}; the new one is in {path}")
    else:
        typer.echo(made["token"])
        _err("orca: the old token no longer works; set ORCA_API_TOKEN to this one")


def main() -> None:
    """Console entry point (``orca``)."""
    app(prog_name="orca")


if __name__ == "__main__":
    main()
