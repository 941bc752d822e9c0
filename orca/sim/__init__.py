"""The simulated cloud: the production control loop (controller, policy, swap manager, reclaim,
reaping) run against a data-driven cloud on a virtual clock.

- ``orca.sim.cloud``: zones with trace-driven shared spot capacity, API latency, capacity errors,
  provisioning and model load, preemption notices, serverless cold starts and concurrency,
  per-second billing, and the workers that claim and commit chunks through the queue contract
  (and, stopped by a serverless budget or a notice, keep their answered requests by a partial commit);
- ``orca.sim.launcher``: ``SimLauncher``, the ``Launcher`` interface over that cloud;
- ``orca.sim.run``: ``simulate(scenario, policy)``, one job through the real ``Controller``.

Only the outside is simulated (cloud, engine speed, time). Defaults follow the reference facts:
spot VM start about 5 min, serverless cold start 30-90 s, AWS notice 120 s, GCP 30 s.
"""
