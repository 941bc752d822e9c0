"""The web dashboard the control plane serves at ``/``: jobs, a job's progress, cost, pools, swaps and
events, updated live; cancel, swap and downloads; a plan page. See ``routes`` for the URLs.

Pages are rendered from ``templates/`` (Jinja2) and driven by the plain scripts in ``static/``
(no framework; charts by the vendored uPlot, see ``static/vendor/README.md``). Nothing is
loaded from outside the package.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from orca.queue.series import ProgressSeries
from orca.queue.sessions import SessionStore


def mount(app: FastAPI) -> None:
    """Add the dashboard to the control plane ``app`` (its ``app.state.service`` must be set)."""
    from orca.control.dashboard.routes import router

    service = app.state.service
    app.state.dashboard_sessions = SessionStore(service.registry.redis_url, service.settings)
    app.state.dashboard_series = ProgressSeries(service.registry.redis_url, service.settings)
    app.mount("/dashboard/static", StaticFiles(packages=[("orca.control.dashboard", "static")]), name="dashboard-static")
    app.include_router(router)
