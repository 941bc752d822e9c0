"""Which launcher runs a pool: ``launcher_for(pool, settings)`` (or by name: ``launcher_named``).

``PoolSpec.launcher`` names it: ``local``, ``skypilot``, ``modal`` or ``runpod``. One job may
mix them (a spot pool plus a serverless burst pool); the controller never needs to know
which is which. Instances are shared per (launcher, settings object): the cloud launchers
keep in-memory state about the replicas they launched (pending request ids, retry
timers), so every caller polling or tearing down a replica must reach the same instance.
Launcher modules are imported lazily: a deployment without SkyPilot, Modal or RunPod
installed still runs local pools.
"""

from __future__ import annotations

import importlib
import threading

from orca.errors import ConfigError
from orca.launchers.base import Launcher, PoolSpec
from orca.settings import Settings, get_settings

#: launcher name -> "module:class"
LAUNCHERS: dict[str, str] = {
    "local": "orca.launchers.local:LocalLauncher",
    "skypilot": "orca.launchers.skypilot:SkyPilotLauncher",
    "modal": "orca.launchers.modal:ModalLauncher",
    "runpod": "orca.launchers.runpod:RunPodLauncher",
}

_instances: dict[tuple[str, int], tuple[Settings, Launcher]] = {}
_lock = threading.Lock()


def launcher_class(name: str) -> type[Launcher]:
    try:
        module_name, class_name = LAUNCHERS[name].split(":")
    except KeyError:
        raise ConfigError("unknown launcher", launcher=name, known=sorted(LAUNCHERS)) from None
    return getattr(importlib.import_module(module_name), class_name)


def launcher_for(pool: PoolSpec, settings: Settings | None = None) -> Launcher:
    """The (shared) launcher instance that runs ``pool``."""
    return launcher_named(pool.launcher, settings)


def launcher_named(name: str, settings: Settings | None = None) -> Launcher:
    """The (shared) launcher instance called ``name`` (ConfigError if there is none)."""
    settings = settings or get_settings()
    key = (name, id(settings))
    with _lock:
        held = _instances.get(key)
        if held is None:
            cls = launcher_class(name)
            # The local launcher reads several sections; the cloud launchers only their own.
            launcher = cls(settings) if name == "local" else cls(settings.launcher)
            held = _instances[key] = (settings, launcher)  # keeps settings alive, so its id stays unique
        return held[1]
