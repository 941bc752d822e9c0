"""Deadline-aware spot policies compared on the bundled public spot traces (plus synthetic ones).

Prints one JSON object. For a fixed set of jobs x deadlines x traces x start offsets it simulates
(orca.planner.simulator) each policy and reports, per policy, the mean cost relative to all
on-demand on the same run and the fraction of runs that met the deadline. Policies:
``on_demand`` (baseline), ``greedy`` and ``uniform_progress`` (Can't Be Late, NSDI'24), ``orca``
(orca.planner.policy.decide with spot, on-demand and serverless) and ``orca_no_serverless`` (the
same policy without serverless, to separate the policy from the cheaper burst market).

Baselines use a fixed pool of ``replicas`` (the job's size); orca may use up to the same number per
market. Prices are the catalog's (spot = midpoint of the published range); throughput only scales
time, so each job is defined by replicas x duration. Small cases (one replica, one-hour job) also
compare orca with the offline optimum (orca.planner.offline, full knowledge of the trace).

Run: ``python bench/planner.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orca.planner.baselines import greedy, on_demand_only, uniform_progress  # noqa: E402
from orca.planner.catalog import load_catalog  # noqa: E402
from orca.planner.offline import optimal_cost, tick_availability  # noqa: E402
from orca.planner.policy import decide  # noqa: E402
from orca.planner.simulator import simulate  # noqa: E402
from orca.planner.traces import bundled_traces, synthetic_trace  # noqa: E402
from orca.planner.types import PoolOption  # noqa: E402
from orca.settings import Settings  # noqa: E402

TICK_S = 60.0
RATE = 1000.0  # tokens/s per replica; only scales time
SLACKS = (1.25, 1.5, 2.0)
OFFSETS = (0.1, 0.4, 0.7)
SETTINGS = Settings()


def prices(catalog, instance_type: str, gpu: str, gpus: int) -> dict[str, float]:
    inst = next(i for i in catalog.instances if i.instance_type == instance_type)
    rp = next(p for p in inst.prices if p.region == "us-east-1")
    serverless = min(o.gpu_hour[gpu] * gpus for o in catalog.serverless if gpu in o.gpu_hour)
    return {"spot": rp.spot, "on_demand": rp.on_demand, "serverless": serverless}


def jobs(catalog) -> list[dict]:
    return [
        # 8B model on 1x L4 replicas (g6.xlarge): small model, 5 min VM start, 1 min serverless cold start
        {"name": "8b-l4-x4-4h", "replicas": 4, "hours": 4.0, "prices": prices(catalog, "g6.xlarge", "L4", 1),
         "startup": {"spot": 300.0, "on_demand": 300.0, "serverless": 60.0}},
        # 70B model on 8x H100 (p5.48xlarge): 141 GB of weights add ~2 min of loading everywhere
        {"name": "70b-h100x8-x1-3h", "replicas": 1, "hours": 3.0, "prices": prices(catalog, "p5.48xlarge", "H100", 8),
         "startup": {"spot": 425.0, "on_demand": 425.0, "serverless": 185.0}},
    ]


def options(job: dict, markets: tuple[str, ...], replicas: int) -> tuple[PoolOption, ...]:
    return tuple(
        PoolOption(key=f"{job['name']}-{m}", market=m, replica_tokens_per_s=RATE, price_per_replica_hour=job["prices"][m],
                   startup_s=job["startup"][m], max_replicas=replicas)
        for m in markets
    )


POLICIES = {
    "on_demand": (on_demand_only, ("spot", "on_demand")),
    "greedy": (greedy, ("spot", "on_demand")),
    "uniform_progress": (uniform_progress, ("spot", "on_demand")),
    "orca": (decide, ("spot", "on_demand", "serverless")),
    "orca_no_serverless": (decide, ("spot", "on_demand")),
}


def all_traces():
    traces = bundled_traces()
    day = 86400.0 * 7
    traces += [
        synthetic_trace("synthetic/up2h-down30m", 7200, 1800, day, seed=1),
        synthetic_trace("synthetic/up30m-down30m", 1800, 1800, day, seed=2),
        synthetic_trace("synthetic/up4h-down3h", 14400, 10800, day, seed=3),
    ]
    return traces


def main() -> None:
    t0 = time.perf_counter()
    catalog = load_catalog()
    traces = all_traces()
    rel: dict[str, list[float]] = {p: [] for p in POLICIES}
    met: dict[str, list[bool]] = {p: [] for p in POLICIES}
    per_job: dict[str, dict[str, list[float]]] = {}
    for job in jobs(catalog):
        work = job["replicas"] * RATE * job["hours"] * 3600
        for slack in SLACKS:
            deadline = job["hours"] * 3600 * slack
            for trace in traces:
                for frac in OFFSETS:
                    offset = trace.duration_s * frac
                    base = None
                    for name, (policy, markets) in POLICIES.items():
                        r = simulate(policy, options(job, markets, job["replicas"]), work, deadline, trace, offset,
                                     tick_s=TICK_S, settings=SETTINGS)
                        if name == "on_demand":
                            base = r.cost_usd
                        rel[name].append(r.cost_usd / base)
                        met[name].append(r.met)
                        per_job.setdefault(f"{job['name']}@{slack}", {}).setdefault(name, []).append(r.cost_usd / base)

    # small cases: one replica, one-hour job, against the offline optimum
    small = {"name": "8b-l4-x1-1h", "replicas": 1, "hours": 1.0, "prices": jobs(catalog)[0]["prices"],
             "startup": {"spot": 300.0, "on_demand": 300.0, "serverless": 60.0}}
    work_ticks = int(small["hours"] * 3600 / TICK_S)
    startup_ticks = {m: math.ceil(s / TICK_S) for m, s in small["startup"].items()}
    per_tick = {m: p * TICK_S / 3600 for m, p in small["prices"].items()}
    ratios: dict[str, list[float]] = {"orca": [], "orca_no_serverless": [], "uniform_progress": []}
    small_met: dict[str, list[bool]] = {k: [] for k in ratios}
    for slack in (1.5, 2.0):
        deadline = small["hours"] * 3600 * slack
        d_ticks = int(deadline / TICK_S)
        for trace in traces:
            for frac in (0.25, 0.75):
                offset = trace.duration_s * frac
                avail = tick_availability(trace, offset, TICK_S, d_ticks)
                opt_all = optimal_cost(avail, work_ticks, d_ticks, per_tick, startup_ticks)
                opt_no_sl = optimal_cost(avail, work_ticks, d_ticks, {m: per_tick[m] for m in ("spot", "on_demand")}, startup_ticks)
                for name, opt in (("orca", opt_all), ("orca_no_serverless", opt_no_sl), ("uniform_progress", opt_no_sl)):
                    policy, markets = POLICIES[name]
                    r = simulate(policy, options(small, markets, 1), RATE * small["hours"] * 3600, deadline, trace, offset,
                                 tick_s=TICK_S, settings=SETTINGS)
                    ratios[name].append(r.cost_usd / opt)
                    small_met[name].append(r.met)

    def summary(values: list[float]) -> float:
        return round(statistics.fmean(values), 4)

    out = {
        "runs_per_policy": len(rel["orca"]),
        "traces": len(traces),
        "jobs": [j["name"] for j in jobs(catalog)],
        "deadline_slacks": list(SLACKS),
        "policies": {
            name: {"mean_cost_vs_on_demand": summary(rel[name]), "deadline_met_fraction": round(sum(met[name]) / len(met[name]), 4)}
            for name in POLICIES
        },
        "by_job_and_slack": {k: {p: summary(v) for p, v in d.items()} for k, d in per_job.items()},
        "offline_optimum_small_cases": {
            "job": "1 replica, 1 h of work, deadline 1.5x and 2x, 60 s ticks",
            "runs": len(ratios["orca"]),
            **{
                name: {"mean_cost_vs_optimum": summary(v), "max_cost_vs_optimum": round(max(v), 4),
                       "deadline_met_fraction": round(sum(small_met[name]) / len(small_met[name]), 4)}
                for name, v in ratios.items()
            },
            "note": "orca vs the optimum over spot/on-demand/serverless; orca_no_serverless and uniform_progress vs the optimum over spot/on-demand",
        },
        "targets": {
            "orca_meets_all_deadlines": sum(met["orca"]) == len(met["orca"]),
            "orca_cheaper_than_uniform_progress": statistics.fmean(rel["orca"]) < statistics.fmean(rel["uniform_progress"]),
            "orca_within_15pct_of_optimum": statistics.fmean(ratios["orca"]) <= 1.15,
        },
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
