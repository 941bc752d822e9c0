"""A job's progress/cost time series for the dashboard's charts: a capped Redis list of JSON samples.

The controller appends (``orca.control.progress_series`` decides when and what); the
dashboard reads. The list lives under the job's hash tag (``keys.job_series``), so it goes
when the job's keys go.
"""

from __future__ import annotations

import json

from orca.queue import keys
from orca.queue.connection import RedisConnection
from orca.settings import Settings, get_settings


class ProgressSeries:
    """Append to and read the per-job sample lists in the Redis at ``redis_url``."""

    def __init__(self, redis_url: str, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._conn = RedisConnection(redis_url, self.settings.queue)
        self._r = self._conn.client

    def close(self) -> None:
        self._conn.close()

    def append(self, job_id: str, sample: dict) -> None:
        """Add ``sample`` at the end, keeping at most ``dashboard.series_max_points`` (oldest dropped)."""
        cap = self.settings.dashboard.series_max_points
        name = keys.job_series(job_id)
        data = json.dumps(sample)

        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.rpush(name, data)
            pipe.ltrim(name, -cap, -1)
            pipe.execute()

        self._conn.call(write)

    def last(self, job_id: str) -> dict | None:
        raw = self._conn.call(lambda: self._r.lindex(keys.job_series(job_id), -1))
        return json.loads(raw) if raw else None

    def read(self, job_id: str) -> list[dict]:
        """Every sample kept, oldest first."""
        return [json.loads(x) for x in self._conn.call(lambda: self._r.lrange(keys.job_series(job_id), 0, -1))]
