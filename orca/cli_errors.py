"""How the CLI reports failures: an OrcaError as stderr lines and as ``--json``, a bad ``ORCA_*`` setting as one
ConfigError, any other exception as one line. No typer: the CLI prints these and picks the exit code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orca.errors import ConfigError, InputValidationError, OrcaError

if TYPE_CHECKING:
    from pydantic import ValidationError


def error_lines(exc: OrcaError) -> list[str]:
    """One ``orca: error:`` line, then the validation problems by line, if any."""
    from orca.cli_format import issue_lines

    listed = isinstance(exc, InputValidationError) and bool(exc.errors)
    lines = [f"orca: error: {exc.message if listed else exc}"]
    if listed:
        lines += issue_lines(exc.errors, total=exc.context.get("error_count"))
    return lines


def error_dict(exc: OrcaError) -> dict[str, Any]:
    """An OrcaError for ``--json``: its class, message and context; validation problems by line."""
    body: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message, **exc.context}
    if isinstance(exc, InputValidationError):
        body["errors"] = [e.model_dump() for e in exc.errors]
    return body


def unexpected_error(exc: Exception) -> OrcaError:
    """Any other failure as one line (its first), pointing at ``ORCA_DEBUG=1`` for the traceback."""
    return OrcaError(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                     "(ORCA_DEBUG=1 shows the traceback)".replace(":  (", " ("))


def setting_error(exc: "ValidationError") -> ConfigError:
    """The first problem of the settings model as a ConfigError naming its ``ORCA_*`` variable."""
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    section, rest = (loc[0], loc[1:]) if loc else ("", [])
    env = "ORCA_" + "__".join(x.upper() for x in [section, *rest[:1]] if x)
    inner = ".".join(rest[1:])
    return ConfigError(f"invalid setting {env}: {(inner + ': ') if inner else ''}{first.get('msg', 'invalid value')}")
