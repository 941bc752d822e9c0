"""Checks of a job's and a swap's launcher fields, before anything is stored or launched.

A submit or swap naming a launcher, GPU, market or TP/PP layout that orca cannot run is
refused with ``InputValidationError`` (HTTP 400), one issue per bad field with its ``param``
and what would be accepted. Known values come from the launcher registry
(``orca.launchers.registry.LAUNCHERS``), the planner's catalog (GPUs, serverless offers), the
planner's markets and parallel layouts, and for local swaps the configured engine profiles
(``launcher.local_swap_profiles``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orca.errors import InputValidationError
from orca.launchers.registry import LAUNCHERS
from orca.models import ValidationIssue
from orca.settings import Settings

SERVERLESS_LAUNCHERS = ("modal", "runpod")
#: Markets a swap may name (serverless and local follow from the launcher).
SWAP_MARKETS = ("spot", "on_demand")


def _known(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


def _issue(param: str, code: str, message: str) -> ValidationIssue:
    return ValidationIssue(code=code, message=message, param=param)


def _raise(issues: list[ValidationIssue], what: str) -> None:
    if issues:
        raise InputValidationError(f"invalid {what}: " + "; ".join(i.message for i in issues), errors=issues,
                                   error_count=len(issues))


def _launcher_issue(name: str | None) -> ValidationIssue | None:
    if name is not None and name not in LAUNCHERS:
        return _issue("launcher", "unknown_launcher", f"unknown launcher {name!r} (known: {_known(LAUNCHERS)})")
    return None


def check_job_create(spec: Any, settings: Settings, catalog: Any = None) -> None:
    """Refuse a submit whose launcher, GPU or markets orca cannot run (``spec``: a ``JobCreate``)."""
    from orca.planner.types import MARKETS

    launcher = spec.launcher or settings.control.default_launcher
    issues = [i for i in (_launcher_issue(spec.launcher),) if i]
    for market in spec.markets or ():
        if market not in MARKETS:
            issues.append(_issue("markets", "unknown_market", f"unknown market {market!r} (known: {_known(MARKETS)})"))
    if spec.gpu is not None:
        catalog = catalog or _catalog()
        gpus = _gpus_for(launcher, catalog, settings, swap=False)
        if spec.gpu not in gpus:
            issues.append(_issue("gpu", "unknown_gpu", f"GPU {spec.gpu!r} is not offered to the {launcher} launcher "
                                 f"(known: {_known(gpus)})"))
    _raise(issues, "job")


def check_swap(request: Any, job_launcher: str, settings: Settings, catalog: Any = None) -> None:
    """Refuse a swap (a ``SwapRequest``) to a launcher, GPU, market or layout orca cannot run."""
    if request.cancel:
        return
    from orca.planner.planning import PARALLEL_LAYOUTS

    issues = [i for i in (_launcher_issue(request.launcher),) if i]
    if issues:
        _raise(issues, "swap")
    launcher = request.launcher or job_launcher
    catalog = catalog or _catalog()
    gpus = _gpus_for(launcher, catalog, settings, swap=True)
    if request.gpu not in gpus:
        issues.append(_issue("gpu", "unknown_gpu", f"GPU {request.gpu!r} is not offered to the {launcher} launcher "
                             f"(known: {_known(gpus)})"))
    layouts = [(1, 1)] if launcher == "local" or launcher in SERVERLESS_LAUNCHERS else list(PARALLEL_LAYOUTS)
    if (request.tp, request.pp) not in layouts:
        shown = ", ".join(f"tp={t} pp={p}" for t, p in layouts)
        issues.append(_issue("tp", "unsupported_layout",
                             f"tp={request.tp} pp={request.pp} is not a layout the {launcher} launcher runs (known: {shown})"))
    if launcher != "local" and launcher not in SERVERLESS_LAUNCHERS and request.market not in SWAP_MARKETS:
        issues.append(_issue("market", "unknown_market",
                             f"unknown market {request.market!r} for {launcher} (known: {_known(SWAP_MARKETS)})"))
    _raise(issues, "swap")


def _catalog() -> Any:
    from orca.planner.catalog import load_catalog

    return load_catalog()


def _gpus_for(launcher: str, catalog: Any, settings: Settings, swap: bool) -> set[str]:
    """GPU names ``launcher`` can run: the local pseudo-GPU (and, for a swap, the local engine
    profiles), a serverless provider's offers, or every catalog GPU a cloud VM has."""
    if launcher == "local":
        return {catalog.local_gpu} | (set(settings.launcher.local_swap_profiles) if swap else set())
    if launcher in SERVERLESS_LAUNCHERS:
        return {gpu for offer in catalog.serverless if offer.provider == launcher for gpu in offer.gpu_hour}
    return {inst.gpu for inst in catalog.instances}
