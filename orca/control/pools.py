"""A job's pools: building them (from a plan, or for a swap) and finding the launcher that runs them.

Pools are :class:`orca.fleet.Pool` records in ``JobRecord.pools``. The ingest step opens the
first one from the chosen plan (:func:`pool_for_plan`), the controller opens more when the
runtime policy picks another market, and a swap adds the pool it moves to (:func:`swap_pool`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from orca.fleet import Pool, PoolPhase
from orca.launchers.base import Launcher
from orca.settings import Settings

#: launcher name -> the Launcher that acts for it (the controller's, so one instance sees every replica).
LauncherLookup = Callable[[str], Launcher]


def pool_key(gpu: str, tp: int, pp: int, market: str, region: str | None = None) -> str:
    """Same shape as ``Plan.key``."""
    return f"{gpu}-tp{tp}-pp{pp}-{market}" + (f"-{region}" if region else "")


def pool_for_plan(plan: dict, launcher: str, settings: Settings) -> Pool:
    """The pool that runs a chosen plan (a ``plan_dict``): engine kind and arguments come from the launcher."""
    local = launcher == "local"
    return Pool(
        key=plan["key"], launcher=launcher, gpu=plan["gpu"], gpus_per_replica=plan["gpus_per_replica"],
        tp=plan["tp"], pp=plan["pp"], market=plan["market"], region=plan.get("region"),
        price_per_replica_hour=plan["price_per_replica_hour"],
        engine=settings.launcher.local_engine if local else "vllm",
        engine_args=dict(settings.launcher.local_engine_args) if local else {},
    )


def catalog_price(catalog: Any, launcher: str, gpu: str, gpus: int, market: str, region: str | None) -> float:
    """Price per replica-hour of ``gpus`` x ``gpu`` in ``market`` from the planner's catalog (0 when unknown)."""
    if launcher == "local" or market == "local":
        return 0.0
    if market == "serverless":
        offers = [o for o in catalog.serverless if o.provider == launcher and gpu in o.gpu_hour]
        return min((o.gpu_hour[gpu] * gpus for o in offers), default=0.0)
    best = None
    for inst in catalog.instances:
        if inst.gpu != gpu or inst.gpus != gpus:
            continue
        for price in inst.prices:
            value = price.spot if market == "spot" else price.on_demand
            if value is not None and (region is None or price.region == region):
                best = value if best is None else min(best, value)
    return best or 0.0


def swap_market(launcher: str, market: str) -> str:
    """The market a swap pool runs in: local and serverless launchers have only one."""
    return "local" if launcher == "local" else ("serverless" if launcher in ("modal", "runpod") else market)


def swap_pool(old: Pool, gpu: str, tp: int, pp: int, market: str, launcher: str | None, settings: Settings,
              catalog: Any = None) -> Pool:
    """The pool a swap away from ``old`` moves to (active, same target as ``old``)."""
    launcher = launcher or old.launcher
    market = swap_market(launcher, market)
    engine_args = dict(old.engine_args or {})
    if launcher == "local":
        engine_args.update(settings.launcher.local_swap_profiles.get(gpu, {}))
    if catalog is None and launcher != "local":
        from orca.planner.catalog import load_catalog

        catalog = load_catalog()
    price = catalog_price(catalog, launcher, gpu, tp * pp, market, None) if catalog is not None else 0.0
    return Pool(key=pool_key(gpu, tp, pp, market), launcher=launcher, gpu=gpu, gpus_per_replica=tp * pp, tp=tp,
                pp=pp, market=market, region=None, price_per_replica_hour=price, engine=old.engine,
                engine_args=engine_args, state=PoolPhase.ACTIVE, target=old.target)


def find(pools: Iterable[Pool], key: str) -> Pool | None:
    return next((p for p in pools if p.key == key), None)


def with_changes(pools: Iterable[Pool], key: str, **changes: Any) -> list[Pool]:
    """``pools`` with the one named ``key`` changed (state, target)."""
    return [dataclasses.replace(p, **changes) if p.key == key else p for p in pools]


class Launchers:
    """Launcher instances by name for one control-plane process.

    Local workers are polled with their own metrics reports (read through ``registry``); the
    cloud launchers come from ``orca.launchers.registry`` (one shared instance per settings).
    ``overrides`` replace a launcher by name (benchmarks and tests inject fakes here).
    """

    def __init__(self, settings: Settings, registry: Any, overrides: dict[str, Launcher] | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self._instances: dict[str, Launcher] = dict(overrides or {})

    def __call__(self, name: str) -> Launcher:
        launcher = self._instances.get(name)
        if launcher is None:
            if name == "local":
                from orca.launchers.local import LocalLauncher

                registry = self.registry
                launcher = LocalLauncher(self.settings, report=lambda job_id, worker_id: registry.worker_metrics(job_id, worker_id) or None)
            else:
                from orca.launchers.registry import launcher_named

                launcher = launcher_named(name, self.settings)
            self._instances[name] = launcher
        return launcher
