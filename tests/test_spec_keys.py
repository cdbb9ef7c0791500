"""The key table of pipeline files (spec.keys) and the sensor kinds (spec.sensors), in-process."""
import dataclasses
import textwrap

import pytest

from pipectl.model.pipeline import Pipeline, RetryPolicy, Sensor, Task
from pipectl.spec import keys as K
from pipectl.spec.config import load_config
from pipectl.spec.loader import PIPELINE_KEYS, TASK_KEYS, load_pipelines
from pipectl.spec.sensors import KINDS


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "pipectl.toml").write_text('[pipectl]\npipelines = ["pipelines/*.yaml"]\n[pools]\nwarehouse = 2\n')
    (tmp_path / "pipelines").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(project, text, name="p.yaml"):
    (project / "pipelines" / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return load_pipelines(load_config(project))


def _model_default(cls, name):
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@pytest.mark.parametrize("row", [k for k in K.KEYS if K.PIPELINE in k.where or K.TASK in k.where],
                         ids=lambda k: f"{k.where[0]}.{k.name}")
def test_documented_default_is_the_models(row):
    """A row's default is what the model holds when the key is left out (descriptions aside)."""
    if row.default is K.ABSENT or isinstance(row.default, str) and " " in row.default:
        return
    if row.name in ("defaults", "edges"):  # read with tasks: no field of their own
        return
    owner, _, name = row.field.rpartition(".")
    cls = {"retry": RetryPolicy, "sensor": Sensor}.get(owner) or (Pipeline if K.PIPELINE in row.where else Task)
    default = _model_default(cls, name)
    assert (dict(default) if isinstance(row.default, dict) else default) == row.default


def test_keys_per_place():
    assert set(PIPELINE_KEYS) == {
        "name", "description", "schedule", "timezone", "start_date", "end_date", "catchup", "max_active_runs",
        "params", "env", "env_file", "defaults", "tasks", "edges", "sla", "on_failure", "on_retry", "on_success",
        "on_sla_miss", "assets", "max_catchup_runs", "owner"}
    options = {"retries", "retry_delay", "retry_backoff", "max_retry_delay", "retry_on_exit_codes",
               "no_retry_exit_codes", "timeout", "trigger_rule", "skip_exit_codes", "owner", "env", "cwd", "pool",
                   "priority", "sla",
               "on_failure", "on_retry", "on_success", "on_sla_miss", "poke_interval", "soft_fail"}
    assert set(K.TASK_OPTION_KEYS) == options
    assert set(TASK_KEYS) == options | {"run", "needs", "sensor", "foreach", "produces"}
    assert len(TASK_KEYS) == len(set(TASK_KEYS)) and len(PIPELINE_KEYS) == len(set(PIPELINE_KEYS))
    assert {k: KINDS[k].key_names() for k in KINDS} == {
        "file": ("file", "min_size", "glob"), "command": ("command",), "http": ("http",), "task": ("task", "delta")}


def test_every_row_reads_into_a_model_field():
    task_fields = {f.name for f in dataclasses.fields(Task)}
    pipeline_fields = {f.name for f in dataclasses.fields(Pipeline)}
    for row in K.KEYS:
        if isinstance(row.value, K.ReadBy) or row.name == "name":
            continue
        owner, _, name = row.field.rpartition(".")
        if owner:
            assert name in {f.name for f in dataclasses.fields({"retry": RetryPolicy, "sensor": Sensor}[owner])}
        elif K.TASK in row.where:
            assert name in task_fields, row
        elif K.PIPELINE in row.where:
            assert name in pipeline_fields, row


def test_option_rows_land_in_task_retry_and_sensor(project):
    result = load(project, """
        defaults: {retries: 2, retry_backoff: exponential, priority: 4, env: {A: a, B: b}}
        tasks:
          t: {run: "true", retry_delay: 1m, env: {B: bee}, on_failure: null}
          s:
            sensor: {file: "x/{{ ds }}", min_size: 3}
            poke_interval: 5s
            soft_fail: true
            timeout: 1h
    """)
    assert result.errors == []
    t, s = result.pipelines["p"].tasks["t"], result.pipelines["p"].tasks["s"]
    assert t.retry == RetryPolicy(retries=2, retry_delay=60.0, retry_backoff="exponential")
    assert (t.priority, dict(t.env), t.on_failure) == (4, {"A": "a", "B": "bee"}, None)
    assert s.sensor == Sensor(kind="file", target="x/{{ ds }}", min_size=3, poke_interval=5.0, timeout=3600.0,
                              soft_fail=True)


@pytest.mark.parametrize("sensor, message", [
    ("{http: 'ftp://x'}", "pipelines/p.yaml:3:22: 'http' must be an http:// or https:// URL, got 'ftp://x'"),
    ("{task: nodot}", "pipelines/p.yaml:3:22: 'task' must be PIPELINE.TASK, got 'nodot'"),
    ("{task: p.t, delta: soon}", "pipelines/p.yaml:3:34: 'delta': bad duration 'soon': expected e.g. 30s, 5m, 2h, 1d or seconds"),
    ("{command: 'test -e {{ params.x }}'}", "pipelines/p.yaml:3:37: unknown template variable 'params.x'"),
    ("{file: a, glob: 1}", "pipelines/p.yaml:3:31: 'glob' must be true or false, got integer"),
    ("{file: a, delta: 1d}", "pipelines/p.yaml:3:25: unknown key 'delta' in file sensor"),
])
def test_sensor_kinds_check_their_keys(project, sensor, message):
    result = load(project, f"""
        tasks:
          t: {{run: "true"}}
          s: {{sensor: {sensor}}}
    """)
    assert [str(e) for e in result.errors] == [message]
