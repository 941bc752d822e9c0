"""Cloud preemption notices: a thread that polls the instance metadata server and says when the VM goes.

* AWS (spot): ``PUT {aws}/latest/api/token`` (IMDSv2, header ``X-aws-ec2-metadata-token-ttl-seconds``)
  then ``GET {aws}/latest/meta-data/spot/instance-action`` with ``X-aws-ec2-metadata-token``:
  404 until a notice, then ``{"action": "terminate"|"stop"|"hibernate", "time": "...Z"}`` (about 120 s ahead).
* GCP (spot/preemptible): ``GET {gcp}/computeMetadata/v1/instance/preempted`` with
  ``Metadata-Flavor: Google``: ``FALSE`` until the VM is being preempted, then ``TRUE`` (30 s ahead).

``worker.preemption_notices``: ``off``, ``aws``, ``gcp``, or ``auto`` (the cloud whose metadata
server answers; neither: the watcher ends). On a notice it calls ``on_notice(text, seconds_left)``
once; the worker stops claiming, lets in-flight requests answer until ``notice_margin_s`` before
the end, commits what was answered, hands the rest back uncharged and reports the notice (the
control plane records it as the replica's reason).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

import httpx

from orca.settings import WorkerSettings

log = logging.getLogger("orca.worker")

NoticeFn = Callable[[str, float], None]


class _Aws:
    name = "aws"

    def __init__(self, client: httpx.Client, base: str) -> None:
        self.client, self.base = client, base.rstrip("/")
        self._token: str | None = None

    def _get_token(self) -> str:
        r = self.client.put(f"{self.base}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        r.raise_for_status()
        return r.text

    def probe(self) -> bool:
        self._token = self._get_token()
        return True

    def check(self, now: dt.datetime) -> tuple[str, float] | None:
        if self._token is None:
            self._token = self._get_token()
        url = f"{self.base}/latest/meta-data/spot/instance-action"
        r = self.client.get(url, headers={"X-aws-ec2-metadata-token": self._token})
        if r.status_code == 401:  # the token expired: get a new one and ask again
            self._token = self._get_token()
            r = self.client.get(url, headers={"X-aws-ec2-metadata-token": self._token})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        action = r.json()
        when = dt.datetime.fromisoformat(str(action["time"]).replace("Z", "+00:00"))
        return (f"aws spot instance-action: {action.get('action', 'terminate')} at {action['time']}",
                (when - now).total_seconds())


class _Gcp:
    name = "gcp"

    def __init__(self, client: httpx.Client, base: str, notice_s: float) -> None:
        self.client, self.base, self.notice_s = client, base.rstrip("/"), notice_s

    def _get(self) -> httpx.Response:
        return self.client.get(f"{self.base}/computeMetadata/v1/instance/preempted",
                               headers={"Metadata-Flavor": "Google"})

    def probe(self) -> bool:
        r = self._get()
        return r.status_code == 200 and r.headers.get("metadata-flavor") == "Google"

    def check(self, now: dt.datetime) -> tuple[str, float] | None:
        r = self._get()
        r.raise_for_status()
        if r.text.strip().upper() != "TRUE":
            return None
        return "gcp instance preempted", self.notice_s


class NoticeWatcher(threading.Thread):
    """Polls the cloud's preemption notice every ``preemption_poll_s``; calls ``on_notice`` once."""

    def __init__(self, settings: WorkerSettings, on_notice: NoticeFn) -> None:
        super().__init__(name="orca-preemption", daemon=True)
        self.settings, self.on_notice = settings, on_notice
        self.cloud: str | None = None
        self.notice: str | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(self.settings.metadata_timeout_s * 2 + 1)

    def _sources(self, client: httpx.Client) -> list:
        s = self.settings
        aws, gcp = _Aws(client, s.aws_metadata_url), _Gcp(client, s.gcp_metadata_url, s.gcp_notice_s)
        return {"aws": [aws], "gcp": [gcp], "auto": [aws, gcp]}.get(s.preemption_notices, [])

    def _detect(self, client: httpx.Client):
        for source in self._sources(client):
            try:
                if source.probe():
                    return source
            except (httpx.HTTPError, ValueError):
                continue
        return None

    def run(self) -> None:
        with httpx.Client(timeout=self.settings.metadata_timeout_s) as client:
            source = self._detect(client)
            if source is None:
                log.info("no cloud metadata server answered (%s): preemption notices are not watched",
                         self.settings.preemption_notices)
                return
            self.cloud = source.name
            log.info("watching %s preemption notices every %.0f s", source.name, self.settings.preemption_poll_s)
            while not self._stop_event.is_set():
                try:
                    found = source.check(dt.datetime.now(dt.timezone.utc))
                except (httpx.HTTPError, ValueError, KeyError) as e:
                    log.warning("preemption notice check failed: %s", e)
                    found = None
                if found is not None:
                    self.notice, left = found
                    log.warning("preemption notice: %s (%.0f s left)", self.notice, left)
                    self.on_notice(self.notice, left)
                    return
                self._stop_event.wait(self.settings.preemption_poll_s)
