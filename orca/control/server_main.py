"""``orca server``: the control plane process, uvicorn serving the app plus the controller loop in a thread.

    python -m orca.control.server_main [--host H] [--port P] [--no-controller] [--rq-worker]
    python -m orca.control.server_main --controller-only   # one more controller, no API

Settings come from the environment (``ORCA_REDIS_URL`` must point at the Redis that holds
the jobs; the embedded stack sets it). Long steps run on RQ workers: the embedded stack starts
one; a standalone server passes ``--rq-worker`` or runs ``python -m orca.control.embedded
rq-worker`` elsewhere. On SIGTERM uvicorn stops serving and the controller
thread finishes its tick; on SIGKILL nothing is lost, because every job lives in Redis and
a new server re-adopts it.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading

from orca.control.app import create_app
from orca.control.controller import Controller
from orca.control.service import OrcaService
from orca.settings import Settings, get_settings


def exposure_warning(host: str, settings: Settings) -> str | None:
    """The warning for serving beyond loopback without TLS, or None when the bind is local or TLS is on."""
    import ipaddress

    control = settings.control
    if control.tls_certfile or control.behind_tls_proxy:
        return None
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve beyond loopback
    return (f"orca: warning: serving on {host} without TLS: bearer tokens and batch data cross the network in clear "
            "text, so anyone on the path can read them and act as your users. Put a TLS-terminating proxy in front "
            "(then set ORCA_CONTROL__BEHIND_TLS_PROXY=true) or set ORCA_CONTROL__TLS_CERTFILE and ORCA_CONTROL__TLS_KEYFILE.")


def serve(settings: Settings, host: str | None = None, port: int | None = None, controller: bool = True,
          rq_worker: bool = False) -> None:
    """Run the API (and the controller, and optionally an RQ worker child) until uvicorn is told to stop."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warning = exposure_warning(host or settings.control.host, settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    child = None
    if rq_worker:  # long steps need a worker; the embedded stack runs its own instead
        child = subprocess.Popen([sys.executable, "-m", "orca.control.embedded", "rq-worker"])
    api_service = OrcaService.from_settings(settings)
    stop = threading.Event()
    thread = None
    ctl_service = None
    if controller:
        ctl_service = OrcaService.from_settings(settings)
        thread = threading.Thread(target=Controller(ctl_service).run, args=(stop,), name="orca-controller", daemon=True)
        thread.start()
    try:
        uvicorn.run(create_app(api_service), host=host or settings.control.host, port=port or settings.control.port,
                    log_level="info", access_log=False,
                    ssl_certfile=settings.control.tls_certfile, ssl_keyfile=settings.control.tls_keyfile)
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=settings.control.tick_s * 2 + 5)
        if ctl_service is not None:
            ctl_service.close()
        api_service.close()
        if child is not None:
            child.terminate()
            try:
                child.wait(timeout=settings.control.stack_stop_timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()


def control(settings: Settings) -> None:
    """Run only the controller loop (no API) until SIGTERM or SIGINT: one more controller on the
    same Redis. Controllers share the jobs tick by tick (a per-job lock), and a killed one's
    launcher calls are taken over by the others (``control.controller_ttl_s``)."""
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = OrcaService.from_settings(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        Controller(service).run(stop)
    finally:
        service.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orca server", description="Run the orca control plane.")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--no-controller", action="store_true", help="Serve the API only (another process runs the controller).")
    parser.add_argument("--controller-only", action="store_true",
                        help="Run only the controller loop, no API (several may run on one Redis).")
    parser.add_argument("--rq-worker", action="store_true",
                        help="Also run an RQ worker child for the long steps (ingest, assembly).")
    args = parser.parse_args(argv)
    if args.controller_only:
        control(get_settings())
        return
    serve(get_settings(), args.host, args.port, controller=not args.no_controller, rq_worker=args.rq_worker)


if __name__ == "__main__":
    main()
