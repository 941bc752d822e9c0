"""Text and files of the users and token commands (``orca users ...``, ``orca token rotate``). No typer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orca.settings import Settings

#: ``orca users me``: the usage figure that each quota limits.
_USAGE_OF_QUOTA = {"max_active_jobs": "active_jobs", "max_queued_requests": "queued_requests", "max_usd_per_day": "usd_last_day"}


def user_line(user: dict) -> str:
    """One user: name, admin flag and quota overrides."""
    overrides = ", ".join(f"{k}={v:g}" for k, v in sorted(user.get("quota_overrides", {}).items()))
    return f"{user['name']}{' (admin)' if user.get('admin') else ''}{'  quota: ' + overrides if overrides else ''}"


def added_user_notice(user: dict) -> str:
    return (f"orca: added {user_line(user)}; give them this token (it is not shown again): "
            "ORCA_API_URL=... ORCA_API_TOKEN=<token> orca submit ...")


def quota_changes(values: dict[str, float | None], clear: bool) -> dict[str, float | None]:
    """The quota overrides to send: all None with ``clear``, else the ones given; ValueError when none is."""
    if clear:
        return {k: None for k in values}
    quotas = {k: v for k, v in values.items() if v is not None}
    if not quotas:
        raise ValueError("give at least one of --max-active-jobs, --max-queued-requests, --max-usd-per-day, or --clear")
    return quotas


def me_lines(me: dict[str, Any]) -> list[str]:
    """``orca users me``: who the token is, then each quota with what is used of it."""
    lines = [f"{me['name']}{' (admin)' if me['admin'] else ''}"]
    for field, limit in me["quotas"].items():
        used = _USAGE_OF_QUOTA[field]
        lines.append(f"  {field}: {me['usage'][used]:g} used of {'unlimited' if not limit else f'{limit:g}'}")
    return lines


def replace_token_file(settings: "Settings", old_token: str | None, new_token: str) -> Path | None:
    """After a rotation: write the new token into the embedded stack's token file (mode 0600) when the old one
    came from there (no ORCA_API_TOKEN, the file holds the old token); returns the file, or None if not updated."""
    path = settings.home / "token"
    if settings.api_token is not None or not path.exists() or path.read_text().strip() != old_token:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_token + "\n")
    os.chmod(path, 0o600)  # O_CREAT's mode applies only to a new file
    return path
