"""``orca dashboard``'s work: where to sign in and opening the URL in a graphical browser. No typer."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orca.settings import Settings


def open_in_browser(url: str) -> bool:
    """Open ``url`` in a graphical browser if this session has one (never a console browser in the terminal)."""
    import webbrowser

    if sys.platform not in ("darwin", "win32") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def token_file(settings: "Settings") -> Path | None:
    """The embedded stack's token file (the dashboard's sign-in), or None for a control plane elsewhere."""
    return settings.home / "token" if settings.api_url is None else None


def sign_in_notice(token_file: Path | None, opened: bool) -> str:
    where = f"the token in {token_file}" if token_file else "your API token (ORCA_API_TOKEN)"
    return f"orca: sign in with {where}" + ("; opened in your browser" if opened else "")
