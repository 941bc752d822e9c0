"""`orca plan` latency from a shell: the installed `orca` script, a fresh process per call, against
the same interpreter starting and exiting with nothing imported, measured in the same run.

    python bench/cli_plan.py [--runs 7]

Each round runs the baseline (``python -c pass``) and then ``orca plan sample_jobs/chat.jsonl
--deadline 2h`` once, alternating, so both see the same machine. Prints one JSON object: the
median wall time of each, ``overhead_s`` (plan minus baseline, what orca itself costs: imports,
reading the file, planning, printing) and ``ratio_vs_python_start``. Target: median plan wall
time under 1 s (``targets``), the promise of an answer before the user's next thought.
"""

from __future__ import annotations

import os
import sys

# Run as a script, bench/ would be sys.path[0] and its queue.py would shadow the stdlib's.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(_HERE).parent
ORCA = str(Path(sys.executable).parent / "orca")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCA_")}
        env["ORCA_HOME"] = home  # plan must not need (or start) the embedded stack
        plan = [ORCA, "plan", str(ROOT / "sample_jobs" / "chat.jsonl"), "--deadline", "2h"]
        timed(plan, env)  # warm the page cache and the bytecode cache once
        base, orca = [], []
        for _ in range(args.runs):
            base.append(timed([sys.executable, "-c", "pass"], env))
            orca.append(timed(plan, env))
    base_s, plan_s = statistics.median(base), statistics.median(orca)
    print(json.dumps({
        "bench": "cli_plan", "runs": args.runs, "python_start_s": round(base_s, 4), "plan_s": round(plan_s, 4),
        "plan_min_s": round(min(orca), 4), "plan_max_s": round(max(orca), 4),
        "overhead_s": round(plan_s - base_s, 4), "ratio_vs_python_start": round(plan_s / base_s, 2),
        "targets": {"plan_s_under_1": plan_s < 1.0}, "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
