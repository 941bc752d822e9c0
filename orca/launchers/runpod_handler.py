"""The RunPod serverless handler: ``python -m orca.launchers.runpod_handler`` in the endpoint's image.

Each RunPod job's ``input`` is ``orca.launchers.modal.invocation_kwargs(...)``; the
handler runs ``orca.launchers.serverless_call.run_invocation`` (a burst worker on the
orca job's queue, at most ``time_budget_s``) and returns its summary. Credentials
(``ORCA_REDIS_URL`` with a password, store keys, HF token) are the endpoint's
environment variables, set in the RunPod console, never part of a job's input.
Set the endpoint's execution timeout above ``serverless_budget_s``.
"""

from __future__ import annotations

from orca.launchers.serverless_call import run_invocation


def handler(job: dict) -> dict:
    """RunPod calls this with ``{"id": ..., "input": {...}}``."""
    return run_invocation(job["input"])


def main() -> None:
    import runpod  # the worker-side import of RunPod

    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
