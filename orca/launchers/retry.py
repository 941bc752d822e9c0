"""One retry policy per cloud launcher (tenacity), configured in settings.

``retrying(policy, sleep)`` runs a call up to ``policy.attempts`` times, waiting
``backoff_s``, then twice that, and so on (at most ``max_wait_s``), and re-raises the last
error. The launchers use it for calls that must succeed (tearing down what costs money);
they run on the controller's call threads, never on its tick, so the waits delay nobody else.
"""

from __future__ import annotations

from collections.abc import Callable

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from orca.settings import RetrySettings


def retrying(policy: RetrySettings, sleep: Callable[[float], None],
             retry_on: Callable[[BaseException], bool] = lambda exc: True) -> Retrying:
    """A tenacity ``Retrying`` for ``policy`` (``retry_on``: which errors are worth another try)."""
    return Retrying(stop=stop_after_attempt(max(1, policy.attempts)),
                    wait=wait_exponential(multiplier=policy.backoff_s, max=policy.max_wait_s),
                    retry=retry_if_exception(retry_on), sleep=sleep, reraise=True)
