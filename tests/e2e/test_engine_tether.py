"""A worker killed with SIGKILL does not leave its engine server running (orca.worker.engines.tether)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from orca.launchers.local import process_start_time
from orca.worker.engines.tether import main as tether_main
from tests.conftest import wait_until

OWNER = """
import sys, time
from orca.settings import EngineSettings
from orca.worker.engines import EngineSpec
from orca.worker.engines.fake import FakeEngine
engine = FakeEngine(EngineSpec(kind="fake", model="m"), EngineSettings(health_poll_s=0.05))
engine.start()
print(engine.servers[0].pid, flush=True)
time.sleep(600)
"""


def test_engine_of_a_killed_worker_stops():
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    engine_pid = None
    try:
        engine_pid = int(owner.stdout.readline())
        assert process_start_time(engine_pid) is not None
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        wait_until(lambda: process_start_time(engine_pid) is None, 10, "the engine to die with its killed worker")
    finally:
        owner.kill()
        if engine_pid is not None and process_start_time(engine_pid) is not None:
            os.killpg(engine_pid, signal.SIGKILL)


def test_tether_refuses_when_its_parent_is_already_gone():
    # The pid given is not the tether's parent: as if the worker died before the tether started.
    proc = subprocess.run([sys.executable, "-m", "orca.worker.engines.tether", str(os.getpid() + 10**6), "--", "true"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "is gone" in proc.stderr


@pytest.mark.parametrize("argv", [[], ["123"], ["123", "true"]])
def test_tether_usage(argv, capsys):
    assert tether_main(argv) == 2
    assert "usage" in capsys.readouterr().err
