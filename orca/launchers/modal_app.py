"""The Modal app that runs orca's serverless worker (deploy: ``modal deploy -m orca.launchers.modal_app``).

One function per GPU shape in ``settings.launcher.modal_gpus`` (Modal fixes a function's
GPU when it is deployed), named by ``orca.launchers.modal.function_name``. Each call runs
``orca.launchers.serverless_call.run_invocation`` (a burst worker on the job's queue) for
at most ``serverless_budget_s``; the function's timeout adds ``modal_timeout_margin_s`` so
the worker's own release at the budget always comes first. Credentials come from the
Modal secret ``modal_secret_name``; the image installs ``worker_package``.

Imported only by Modal's deploy and its containers; nothing in orca imports it.
"""

from __future__ import annotations

import modal

from orca.launchers.modal import function_name
from orca.launchers.serverless_call import run_invocation
from orca.settings import get_settings

_settings = get_settings().launcher

app = modal.App(_settings.modal_app_name)
image = modal.Image.debian_slim(python_version="3.11").pip_install(_settings.worker_package)


def _worker_function(name: str):
    """A distinct function object per GPU shape: Modal names a function after its ``__qualname__``."""

    def worker(**kwargs) -> dict:
        return run_invocation(kwargs)

    worker.__name__ = worker.__qualname__ = name
    return worker


for _shape in _settings.modal_gpus:
    _gpu, _, _count = _shape.partition(":")
    _name = function_name(_gpu, int(_count or 1))
    globals()[_name] = app.function(
        image=image,
        gpu=_shape,
        timeout=int(_settings.serverless_budget_s + _settings.modal_timeout_margin_s),
        secrets=[modal.Secret.from_name(_settings.modal_secret_name)],
        serialized=True,  # defined in a loop, not at module level
    )(_worker_function(_name))
