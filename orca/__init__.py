"""orca: batch LLM inference job orchestrator.

``orca.Client`` is imported on first use, so ``import orca`` (and ``orca plan``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from orca.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from orca.client import Client

        return Client
    raise AttributeError(f"module 'orca' has no attribute {name!r}")
