"""The preemption-notice watcher against a fake metadata server (real HTTP on loopback), and the
worker's response to a notice: stop claiming, keep what was answered, hand the rest back uncharged."""

from __future__ import annotations

import json
import threading
import time

from orca.queue import ChunkState
from orca.queue.embedded import free_port
from orca.settings import WorkerSettings
from orca.worker.preemption import NoticeWatcher
from orca.worker.worker import StopReason
from tests.fakes.metadata_server import FakeMetadataServer
from tests.unit.test_worker_loop import (
    LAYOUT, body, make_worker, queue_for, read_output, run_in_thread, settings, store, wait_until,  # noqa: F401
)
from orca.worker.engines.fake_server import FakeOpenAIServer


def watch(ws: WorkerSettings) -> tuple[NoticeWatcher, list[tuple[str, float]], threading.Event]:
    seen: list[tuple[str, float]] = []
    event = threading.Event()

    def on_notice(text: str, left: float) -> None:
        seen.append((text, left))
        event.set()

    watcher = NoticeWatcher(ws, on_notice)
    watcher.start()
    return watcher, seen, event


def test_aws_notice_with_imdsv2_token_refresh() -> None:
    with FakeMetadataServer() as meta:
        ws = WorkerSettings(preemption_notices="aws", aws_metadata_url=meta.url, preemption_poll_s=0.05)
        watcher, seen, event = watch(ws)
        try:
            wait_until(lambda: sum(1 for m, p, _ in meta.requests if p.endswith("instance-action")) >= 3)
            assert watcher.cloud == "aws" and not seen  # 404: no notice yet
            meta.expire_tokens()  # a 401 makes it fetch a new token
            time.sleep(0.2)
            meta.aws_notice(seconds=120)
            assert event.wait(5)
        finally:
            watcher.stop()
    ((text, left),) = seen
    assert "aws spot instance-action: terminate" in text and 110 < left <= 120
    gets = [(p, t) for m, p, t in meta.requests if m == "GET"]
    assert all(t and t.startswith("token-") for _, t in gets)  # every check carried an IMDSv2 token
    assert sum(1 for m, p, _ in meta.requests if m == "PUT") >= 2


def test_auto_finds_gcp_when_aws_does_not_answer() -> None:
    with FakeMetadataServer() as meta:
        ws = WorkerSettings(preemption_notices="auto", aws_metadata_url=f"http://127.0.0.1:{free_port()}",
                            gcp_metadata_url=meta.url, preemption_poll_s=0.05, metadata_timeout_s=0.5)
        watcher, seen, event = watch(ws)
        try:
            wait_until(lambda: watcher.cloud == "gcp")
            assert watcher.cloud == "gcp" and not event.wait(0.2)
            meta.gcp_preempt()
            assert event.wait(5)
        finally:
            watcher.stop()
    assert seen == [("gcp instance preempted", 30.0)]


def test_off_cloud_auto_watches_nothing() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    watcher, seen, _ = watch(WorkerSettings(preemption_notices="auto", aws_metadata_url=dead, gcp_metadata_url=dead,
                                            metadata_timeout_s=0.5))
    watcher.join(5)
    assert not watcher.is_alive() and watcher.cloud is None and seen == []


def test_a_notice_stops_the_worker_which_keeps_its_answers_and_hands_the_rest_back(store) -> None:
    """Notice 10.6 s ahead, margin 10 s: in-flight requests get 0.6 s (not the 30 s drain grace), then
    the answered ones are committed and the rest goes back uncharged; the worker reports the notice."""
    with FakeMetadataServer() as meta, FakeOpenAIServer(slots=64) as fake:
        s = settings(drain_grace_s=30, preemption_notices="aws", aws_metadata_url=meta.url, preemption_poll_s=0.05,
                     notice_margin_s=10)
        queue = queue_for(s)
        delays = [0.01] * 4 + [60.0] * 4
        lines = [json.dumps({"custom_id": f"c0-{i}", "method": "POST", "url": "/v1/completions",
                             "body": body(0, i, fake_delay_s=d)}) for i, d in enumerate(delays)]
        store.put_bytes(LAYOUT.chunk("chunk-000"), ("\n".join(lines) + "\n").encode())
        queue.enqueue_many(["chunk-000"])
        worker = make_worker(queue, store, fake.url, s, concurrency=8, burst=False)
        t, result = run_in_thread(worker)
        wait_until(lambda: worker.requests_uncommitted == 4 and fake.stats.in_flight == 4)
        meta.aws_notice(seconds=10.6)
        started = time.monotonic()
        t.join(10)
        assert not t.is_alive() and time.monotonic() - started < 5
    assert result == [StopReason.PREEMPTED]
    assert worker.notice.startswith("aws spot instance-action") and worker._describe()["notice"] == worker.notice
    info = queue.chunk("chunk-000")
    assert info.state is ChunkState.SPLIT and info.attempts == 0
    assert [x["custom_id"] for x in read_output(store, f"chunk-000.{info.split}a", 1)] == [f"c0-{i}" for i in range(4)]
    rest = queue.chunk(f"chunk-000.{info.split}r")
    assert (rest.state, rest.attempts) == (ChunkState.PENDING, 0)
