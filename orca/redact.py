"""Secrets kept out of what orca prints, logs and stores in plain files: a URL's password becomes ``***``."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]*@")


def redact_url(url: str) -> str:
    """``redis://:pw@host:6379/0`` -> ``redis://:***@host:6379/0``; a URL without a password is unchanged."""
    return _URL_PASSWORD.sub(r"\1***@", url)
