"""SkyPilot templates: every template renders into a task SkyPilot itself accepts; no secret leaks."""

from __future__ import annotations

import copy

import pytest
import sky
import yaml

from orca.errors import TemplateError
from orca.launchers import templates
from orca.launchers.base import PoolSpec, WorkerEnv
from orca.launchers.skypilot import DRAIN_TEMPLATE, WORKER_TEMPLATE, cluster_name_for, worker_task_variables
from orca.settings import LauncherSettings

SECRET_REDIS = "s3cr3t-redis-pw"
SECRET_HF = "hf_SECRETVALUE123"


def _env(redis_url: str = f"redis://:{SECRET_REDIS}@redis.example.com:6379/0") -> WorkerEnv:
    return WorkerEnv(job_id="job_Ab12", redis_url=redis_url, store_url="s3://bucket/orca?region=us-east-1",
                     model="meta-llama/Llama-3.1-8B-Instruct", secret_env_names=("HF_TOKEN", "AWS_ACCESS_KEY_ID"))


def _pool(**kw) -> PoolSpec:
    base = dict(key="H100-tp2-pp1-spot", launcher="skypilot", gpu="H100", gpus_per_replica=2, tp=2, pp=1,
                market="spot", region="us-east-1,us-west-2", price_per_replica_hour=4.5, engine="vllm",
                engine_args={"max_model_len": "8192"})
    base.update(kw)
    return PoolSpec(**base)


def _task(config: dict) -> sky.Task:
    return sky.Task.from_yaml_config(copy.deepcopy(config))


def _render_all() -> dict[str, dict]:
    s = LauncherSettings()
    single = worker_task_variables(_env(), _pool(), "w-1", s)
    multi = worker_task_variables(_env(), _pool(key="H100-tp2-pp2-spot", gpus_per_replica=4, pp=2, region=None), "w-2", s)
    return {
        "single": templates.render_config(WORKER_TEMPLATE, **single),
        "multi": templates.render_config(WORKER_TEMPLATE, **multi),
        "drain": templates.render_config(DRAIN_TEMPLATE, cluster_name=cluster_name_for("job_Ab12", "w-1")),
    }


def test_every_shipped_template_is_exercised():
    rendered_names = {WORKER_TEMPLATE, DRAIN_TEMPLATE}
    assert set(templates.template_names()) == rendered_names


def test_single_node_worker_task_loads_in_skypilot_with_resources_and_envs():
    config = _render_all()["single"]
    task = _task(config)
    assert task.num_nodes == 1
    resources = list(task.resources)
    assert {r.region for r in resources} == {"us-east-1", "us-west-2"}
    for r in resources:
        assert r.accelerators == {"H100": 2}
        assert r.use_spot is True
        assert r.disk_size == LauncherSettings().sky_disk_size_gb
    assert task.envs["ORCA_JOB_ID"] == "job_Ab12"
    assert task.envs["ORCA_POOL"] == "H100-tp2-pp1-spot"
    assert task.envs["ORCA_WORKER_ID"] == "w-1"
    assert task.envs["ORCA_MODEL"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert task.envs["ORCA_STORE_URL"] == "s3://bucket/orca?region=us-east-1"
    assert "ORCA_REDIS_URL" not in task.envs  # it carries a password: a secret, by name
    assert set(config["secrets"]) == {"HF_TOKEN", "AWS_ACCESS_KEY_ID", "ORCA_REDIS_URL"}
    assert all(v is None for v in config["secrets"].values())
    assert 'pip install \'orca[vllm]\'' in task.setup
    assert "python -m orca.worker" in task.run and "--engine vllm" in task.run and "--tp 2" in task.run
    assert "--max-model-len 8192" in task.run
    assert "ray start" not in task.run


def test_multi_node_pipeline_parallel_task_starts_a_ray_cluster_and_runs_the_worker_on_the_head():
    task = _task(_render_all()["multi"])
    assert task.num_nodes == 2
    assert [r.accelerators for r in task.resources] == [{"H100": 2}]
    assert "SKYPILOT_NODE_RANK" in task.run and "SKYPILOT_NODE_IPS" in task.run
    assert "ray start --head" in task.run and "--pp 2" in task.run
    head, _, rest = task.run.partition('if [ "$SKYPILOT_NODE_RANK" = "0" ]; then')
    assert "run_worker" in rest.split("else")[0]


def test_credential_free_redis_url_is_a_plain_env():
    config = templates.render_config(WORKER_TEMPLATE, **worker_task_variables(
        _env("redis://10.0.0.5:6379/0"), _pool(), "w-1", LauncherSettings()))
    assert config["envs"]["ORCA_REDIS_URL"] == "redis://10.0.0.5:6379/0"
    assert "ORCA_REDIS_URL" not in config["secrets"]
    _task(config)


def test_drain_template_signals_the_worker_pid():
    task = _task(_render_all()["drain"])
    assert "kill -TERM" in task.run and "worker.pid" in task.run


def test_no_secret_value_appears_in_rendered_yaml():
    s = LauncherSettings()
    variables = worker_task_variables(_env(), _pool(), "w-1", s)
    text = templates.render(WORKER_TEMPLATE, **variables)
    assert SECRET_REDIS not in text
    assert SECRET_HF not in text  # never even passed to the template
    assert "ORCA_REDIS_URL: null" in text and "HF_TOKEN: null" in text


@pytest.mark.parametrize("name", [WORKER_TEMPLATE, DRAIN_TEMPLATE])
def test_missing_variable_fails_rendering(name):
    variables = (worker_task_variables(_env(), _pool(), "w-1", LauncherSettings()) if name == WORKER_TEMPLATE
                 else {"cluster_name": "c"})
    for missing in sorted(variables):
        partial = {k: v for k, v in variables.items() if k != missing}
        with pytest.raises(TemplateError, match=missing):
            templates.render(name, **partial)


def test_unknown_template_is_a_template_error():
    with pytest.raises(TemplateError):
        templates.render("nope.yaml.j2")


def test_shell_quoting_of_engine_args_survives_hostile_values():
    variables = worker_task_variables(_env(), _pool(engine_args={"model_path": "x'; rm -rf / #"}), "w-1", LauncherSettings())
    task = _task(templates.render_config(WORKER_TEMPLATE, **variables))
    assert "--model-path 'x'\"'\"'; rm -rf / #'" in task.run


def test_templates_ship_inside_the_installed_package():
    import importlib.resources

    files = {p.name for p in importlib.resources.files("orca.skypilot_templates").iterdir()}
    assert {WORKER_TEMPLATE, DRAIN_TEMPLATE} <= files
    assert yaml.safe_load(templates.render(DRAIN_TEMPLATE, cluster_name="c"))["name"] == "c"
