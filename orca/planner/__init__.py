"""SLO-aware planning (``plan``), the runtime scaling policy (``decide``) and their CLI glue.

Stdlib only at import time, so ``orca plan`` answers fast. The baselines and offline optimum
(``.baselines``, ``.offline``) are imported on demand; the simulated cloud that runs them is ``orca.sim``.
"""

from orca.planner.planning import plan
from orca.planner.policy import decide, options_from_plans
from orca.planner.render import parse_duration, plan_for_stats, plan_to_dict, plans_table

__all__ = ["decide", "options_from_plans", "parse_duration", "plan", "plan_for_stats", "plan_to_dict", "plans_table"]
