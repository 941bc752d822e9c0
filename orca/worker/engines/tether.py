"""Run an engine server that dies with the thread that started it.

``python -m orca.worker.engines.tether PARENT_PID -- COMMAND...``

An engine server runs in its own session, so that stopping it can signal its whole process tree,
and so a worker killed with SIGKILL (OOM killer, ``kill -9``) would leave its engine running,
holding its port, CPU or GPU memory. This shim asks Linux to send it SIGTERM when the thread
that forked it ends (``PR_SET_PDEATHSIG``, which survives ``exec``), checks that the parent is
still alive (it may have died before the request took effect), then replaces itself with the
server command. Without ``prctl`` (not Linux) it just runs the command.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def tethered(command: list[str], parent_pid: int) -> list[str]:
    """``command`` wrapped so that it gets SIGTERM when the calling thread of ``parent_pid`` ends."""
    return [sys.executable, "-m", "orca.worker.engines.tether", str(parent_pid), "--", *command]


def main(argv: list[str]) -> int | None:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m orca.worker.engines.tether PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    parent, command = int(argv[0]), argv[2:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            print(f"tether: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            return 1
        if os.getppid() != parent:
            print(f"tether: parent {parent} is gone; not starting {command[0]}", file=sys.stderr)
            return 1
    os.execvp(command[0], command)  # replaces this process (or raises OSError: exit 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
