"""``python -m orca.control.supervisor``: keeps the embedded stack running without a human.

Every ``control.supervise_every_s`` it runs ``embedded.up()``, which adopts each live process
and restarts a dead one: the redis-server on its own port (replaying its AOF, so nothing older
than the fsync period is lost), the RQ worker, the control plane server. Processes that lost
Redis are not replaced for it: they reconnect by themselves. ``orca up`` starts the supervisor
and ``orca down`` stops it first. SIGTERM ends it after the current check.
"""

from __future__ import annotations

import logging
import signal
import threading

from orca.errors import OrcaError
from orca.settings import Settings, get_settings

log = logging.getLogger("orca.supervisor")


def supervise(settings: Settings, stop: threading.Event) -> None:
    from orca.control import embedded

    before: dict[str, int | None] = {}
    while not stop.is_set():
        try:
            now = embedded.up(settings).processes
            for name, pid in now.items():
                if before and pid != before.get(name):
                    log.warning("%s was gone; running again as pid %s", name, pid)
            before = now
        except OrcaError as e:
            log.warning("could not repair the stack: %s", e)
        stop.wait(settings.control.supervise_every_s)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    supervise(get_settings(), stop)


if __name__ == "__main__":
    main()
