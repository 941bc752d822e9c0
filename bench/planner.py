"""Deadline-aware spot policies, each run through the production controller on the simulated cloud.

Prints one JSON object. Every run is ``orca.sim.run.simulate``: the real ``Controller`` (reaping,
polling, reclaim, swap manager, scaling) with the policy under test injected, a ``SimLauncher``
over a cloud whose spot capacity follows a trace, and the observation-only availability estimate
(the policies never see the trace, only capacity errors, notices and preemptions). Policies:

- ``on_demand`` (baseline: all on-demand), ``greedy`` and ``uniform_progress`` (Can't Be Late,
  NSDI'24), run on spot + on-demand;
- ``orca`` (``orca.planner.policy.decide``) on spot + on-demand + serverless, and
  ``orca_no_serverless``, the same policy on spot + on-demand only (the policy without the cheaper
  burst market).

Cases: two jobs (4 x L4 replicas for 2 h; 1 x 8xH100 for 2 h) x deadline slack 1.1/1.25/1.5/2 x
every bundled trace and three synthetic ones, plus harder variants at slack 1.25/1.5 over a subset of
traces: throughput misestimated x0.7 and x1.3, multi-zone spot (three us-east zones of the same
day), a mid-job swap, and a worker crash. Cost is relative to ``on_demand`` on the same case.
The baselines run a fixed pool of the job's size (the single instance of Can't Be Late); orca
runs with the production per-market caps (``option_cap``), as the controller would.
Small cases (1 replica, 1 h of work, slack 1.5 and 2) also compare with the offline optimum
(``orca.planner.offline``: full knowledge of the trace, one replica, no API delays).

Run: ``python bench/planner.py`` (two processes; under 3 minutes on 2 cores).
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/planner.py`, this folder is first on sys.path and bench/queue.py would
# shadow the standard library's `queue` (which redis-py and multiprocessing import).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from orca.planner.baselines import greedy, on_demand_only, uniform_progress  # noqa: E402
from orca.planner.catalog import load_catalog  # noqa: E402
from orca.planner.offline import optimal_cost, tick_availability  # noqa: E402
from orca.planner.policy import decide, option_cap  # noqa: E402
from orca.planner.traces import bundled_traces, synthetic_trace  # noqa: E402
from orca.settings import Settings  # noqa: E402
from orca.sim.cloud import Zone  # noqa: E402
from orca.sim.run import Scenario, simulate  # noqa: E402
from orca.sim.scenarios import option  # noqa: E402

RATE = 1000.0          # catalog estimate of a replica's output tokens/s; only scales time
TICK_S = 30.0          # controller tick in the simulation (planner.replan_every_s)
SLACKS = (1.1, 1.25, 1.5, 2.0)
HARD_SLACKS = (1.25, 1.5)
SETTINGS = Settings()
POLICIES = {
    "on_demand": (on_demand_only, ("spot", "on_demand")),
    "greedy": (greedy, ("spot", "on_demand")),
    "uniform_progress": (uniform_progress, ("spot", "on_demand")),
    "orca": (decide, ("spot", "on_demand", "serverless")),
    "orca_no_serverless": (decide, ("spot", "on_demand")),
}


def prices(catalog, instance_type: str, gpu: str, gpus: int) -> dict[str, float]:
    inst = next(i for i in catalog.instances if i.instance_type == instance_type)
    rp = next(p for p in inst.prices if p.region == "us-east-1")
    serverless = min(o.gpu_hour[gpu] * gpus for o in catalog.serverless if gpu in o.gpu_hour)
    return {"spot": rp.spot, "on_demand": rp.on_demand, "serverless": serverless}


def jobs(catalog) -> list[dict]:
    return [
        # 8B model on 1x L4 (g6.xlarge): 5 min VM start, 1 min serverless cold start
        {"name": "8b-l4-x4-2h", "gpu": "L4", "replicas": 4, "hours": 2.0, "prices": prices(catalog, "g6.xlarge", "L4", 1),
         "startup": {"spot": 300.0, "on_demand": 300.0, "serverless": 60.0}},
        # 70B model on 8x H100 (p5.48xlarge): 141 GB of weights add ~2 min of loading everywhere
        {"name": "70b-h100x8-x1-2h", "gpu": "H100", "replicas": 1, "hours": 2.0, "prices": prices(catalog, "p5.48xlarge", "H100", 8),
         "startup": {"spot": 425.0, "on_demand": 425.0, "serverless": 185.0}},
    ]


def job_options(job: dict, markets: tuple[str, ...], zones: tuple[str, ...], caps: bool) -> tuple[dict, ...]:
    """The job's options; ``caps``: the production per-market caps (orca), else the job's size (the baselines'
    fixed pool, the single instance of Can't Be Late)."""
    out = []
    for m in markets:
        cap = option_cap(m, SETTINGS) if caps else job["replicas"]
        for region in (zones if m == "spot" else (None,)):
            out.append(option(m, job["prices"][m], job["startup"][m], RATE, cap, gpu=job["gpu"], region=region,
                              replicas=job["replicas"]))
    return tuple(out)


def all_traces():
    week = 86400.0 * 7
    return bundled_traces() + [
        synthetic_trace("synthetic/up2h-down30m", 7200, 1800, week, seed=1),
        synthetic_trace("synthetic/up30m-down30m", 1800, 1800, week, seed=2),
        synthetic_trace("synthetic/up4h-down3h", 14400, 10800, week, seed=3),
    ]


def cases(catalog) -> list[dict]:
    """Every (job, world, variant) to run all policies on."""
    traces = all_traces()
    by_name = {t.name: t for t in traces}
    east = [by_name[f"aws-02-15-2023/us-east-1{z}_v100_1"] for z in "acd"]
    out = []
    for job in jobs(catalog):
        for slack in SLACKS:
            for i, trace in enumerate(traces):
                frac = (0.15, 0.45, 0.75)[i % 3]
                out.append({"job": job, "slack": slack, "variant": "base", "traces": (trace,), "frac": frac})
        for slack in HARD_SLACKS:
            for i, trace in enumerate(traces[::3]):
                frac = (0.3, 0.6)[i % 2]
                out.append({"job": job, "slack": slack, "variant": "throughput_x0.7", "traces": (trace,), "frac": frac, "factor": 0.7})
                out.append({"job": job, "slack": slack, "variant": "throughput_x1.3", "traces": (trace,), "frac": frac, "factor": 1.3})
                out.append({"job": job, "slack": slack, "variant": "crash", "traces": (trace,), "frac": frac, "crash_after_s": 900.0})
            for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
                out.append({"job": job, "slack": slack, "variant": "multi_zone", "traces": tuple(east), "frac": frac})
            if job["replicas"] > 1:
                for i, trace in enumerate(traces[1::4]):
                    out.append({"job": job, "slack": slack, "variant": "swap", "traces": (trace,), "frac": (0.2, 0.5, 0.8)[i % 3]})
    return out


def scenario_for(case: dict, policy, markets: tuple[str, ...]) -> Scenario:
    job = case["job"]
    zones = tuple(Zone(f"z{i}", t, t.duration_s * case["frac"], 64, 120.0) for i, t in enumerate(case["traces"]))
    spot_zones = tuple(z.name for z in zones) if case["variant"] == "multi_zone" else (zones[0].name,)
    options = job_options(job, markets, spot_zones, caps=policy is decide)
    work = job["replicas"] * RATE * job["hours"] * 3600
    swap = case["variant"] == "swap"
    return Scenario(
        name=f"{job['name']}/{case['variant']}/{case['slack']}", options=options, plan=options[0], work_tokens=work,
        deadline_s=job["hours"] * 3600 * case["slack"], zones=zones, throughput_factor=case.get("factor", 1.0),
        crash_after_s=case.get("crash_after_s"), tick_s=TICK_S,
        swap_at_s=0.3 * job["hours"] * 3600 if swap else None,
        swap_to={"gpu": "L40S", "tp": 1, "pp": 1, "market": "on_demand"} if swap else None,
        gpu_tokens_per_s={"L40S": 1.6 * RATE},
    )


def run_case(case: dict) -> dict:
    out = {"job": case["job"]["name"], "slack": case["slack"], "variant": case["variant"]}
    for name, (policy, markets) in POLICIES.items():
        if case["variant"] in ("swap",) and name != "orca" and name != "on_demand":
            continue  # a swap is a user's action on orca's controller; the baselines have no swap rule to compare
        r = simulate(scenario_for(case, policy, markets), policy, SETTINGS)
        out[name] = {"cost": r.cost_usd, "met": r.met}
    return out


def small_case(args: tuple) -> dict:
    """One replica, 1 h of work: orca vs the offline optimum over the same trace window."""
    trace, frac, slack, job = args
    hours = 1.0
    deadline = hours * 3600 * slack
    offset = trace.duration_s * frac
    tick = 60.0
    d_ticks = int(deadline / tick)
    avail = tick_availability(trace, offset, tick, d_ticks)
    per_tick = {m: p * tick / 3600 for m, p in job["prices"].items()}
    startup_ticks = {m: math.ceil(s / tick) for m, s in job["startup"].items()}
    out = {"slack": slack, "trace": trace.name}
    for name, markets in (("orca", ("spot", "on_demand", "serverless")), ("orca_no_serverless", ("spot", "on_demand")),
                          ("uniform_progress", ("spot", "on_demand"))):
        opt = optimal_cost(avail, int(hours * 3600 / tick), d_ticks, {m: per_tick[m] for m in markets}, startup_ticks)
        free_starts = optimal_cost(avail, int(hours * 3600 / tick), d_ticks, {m: per_tick[m] for m in markets},
                                   {m: 0 for m in markets})  # the optimum if start-ups were free: its own start-up share
        options = job_options({**job, "replicas": 1}, markets, ("z0",), caps=name != "uniform_progress")
        sc = Scenario(f"small/{name}", options, options[0], RATE * hours * 3600, deadline,
                      (Zone("z0", trace, offset, 64, 120.0),), tick_s=TICK_S)
        r = simulate(sc, POLICIES[name][0], SETTINGS)
        out[name] = {"ratio": r.cost_usd / opt, "met": r.met, "opt_startup": (opt - free_starts) / opt,
                     "parts": {k: v / opt for k, v in r.cost_breakdown.items()},
                     "by_market": {k: v / opt for k, v in r.cost_by_market.items()}}
    return out


def main() -> None:
    t0 = time.perf_counter()
    catalog = load_catalog()
    all_cases = cases(catalog)
    small_job = jobs(catalog)[0]
    smalls = [(t, frac, slack, small_job) for slack in (1.5, 2.0) for t in all_traces() for frac in (0.25, 0.75)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(run_case, all_cases, chunksize=4)
        small = pool.map(small_case, smalls, chunksize=4)

    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 4) if values else float("nan")

    policies: dict[str, dict] = {}
    for name in POLICIES:
        rows = [r for r in results if name in r]
        per_slack = {}
        for slack in SLACKS:
            mine = [r for r in rows if r["slack"] == slack]
            per_slack[str(slack)] = {
                "mean_cost_vs_on_demand": mean([r[name]["cost"] / r["on_demand"]["cost"] for r in mine]),
                "deadline_met_fraction": round(sum(r[name]["met"] for r in mine) / len(mine), 4),
                "runs": len(mine),
            }
        policies[name] = {
            "mean_cost_vs_on_demand": mean([r[name]["cost"] / r["on_demand"]["cost"] for r in rows]),
            "deadline_met_fraction": round(sum(r[name]["met"] for r in rows) / len(rows), 4),
            "runs": len(rows),
            "by_slack": per_slack,
        }
    variants = sorted({r["variant"] for r in results})
    by_variant = {
        v: {name: {"mean_cost_vs_on_demand": mean([r[name]["cost"] / r["on_demand"]["cost"] for r in results if r["variant"] == v and name in r]),
                   "deadline_met_fraction": round(statistics.fmean([r[name]["met"] for r in results if r["variant"] == v and name in r]), 4)}
            for name in POLICIES if any(name in r for r in results if r["variant"] == v)}
        for v in variants
    }
    by_job = {
        j["name"]: {name: mean([r[name]["cost"] / r["on_demand"]["cost"] for r in results if r["job"] == j["name"] and name in r])
                    for name in POLICIES}
        for j in jobs(catalog)
    }
    small_out = {}
    for name in ("orca", "orca_no_serverless", "uniform_progress"):
        ratios = [s[name]["ratio"] for s in small if math.isfinite(s[name]["ratio"])]
        small_out[name] = {"mean_cost_vs_optimum": mean(ratios), "max_cost_vs_optimum": round(max(ratios), 4),
                           "deadline_met_fraction": round(statistics.fmean([s[name]["met"] for s in small]), 4)}
    finite = [s for s in small if math.isfinite(s["orca"]["ratio"])]
    worst = max(finite, key=lambda s: s["orca"]["ratio"])
    small_out["orca_cost_parts_vs_optimum"] = {
        "note": "orca's cost split (orca.sim.cloud.SimCloud.cost_breakdown) over the optimum's: committed = the "
                "committed output's machine time, startup = billed start-ups, other = lost work, waits, idling",
        "mean": {k: mean([s["orca"]["parts"][k] for s in finite]) for k in ("committed", "startup", "other")},
        "optimum_startup_mean": mean([s["orca"]["opt_startup"] for s in finite]),
        "worst_case": {"trace": worst["trace"], "slack": worst["slack"], "ratio": round(worst["orca"]["ratio"], 4),
                       **{k: round(v, 4) for k, v in worst["orca"]["parts"].items()},
                       "by_market": {k: round(v, 4) for k, v in worst["orca"]["by_market"].items()}},
    }
    orca = [r for r in results if "orca" in r]
    hard = [r for r in orca if r["slack"] >= 1.25]
    out = {
        "runs": sum(len(r) - 3 for r in results) + 3 * len(small),
        "cases": len(results),
        "traces": len(all_traces()),
        "jobs": [j["name"] for j in jobs(catalog)],
        "deadline_slacks": list(SLACKS),
        "tick_s": TICK_S,
        "policies": policies,
        "by_variant": by_variant,
        "mean_cost_vs_on_demand_by_job": by_job,
        "small_cases": {"job": "1 replica, 1 h of work, deadline 1.5x and 2x", "runs": len(small), **small_out,
                        "note": "orca vs the optimum over spot/on-demand/serverless; the others vs spot/on-demand"},
        "targets": {
            "orca_meets_all_deadlines_at_slack_ge_1.25": all(r["orca"]["met"] for r in hard),
            "orca_meets_99pct_overall": sum(r["orca"]["met"] for r in orca) / len(orca) >= 0.99,
            "orca_no_serverless_cheaper_than_greedy_and_uniform": policies["orca_no_serverless"]["mean_cost_vs_on_demand"]
            < min(policies["greedy"]["mean_cost_vs_on_demand"], policies["uniform_progress"]["mean_cost_vs_on_demand"]),
            "orca_le_0.55_of_on_demand": policies["orca"]["mean_cost_vs_on_demand"] <= 0.55,
            "small_mean_le_1.10_of_optimum": small_out["orca"]["mean_cost_vs_optimum"] <= 1.10,
            "small_max_le_1.30_of_optimum": small_out["orca"]["max_cost_vs_optimum"] <= 1.30,
        },
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
