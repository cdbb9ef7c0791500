import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from pipectl.spec.config import load_config
from pipectl.model.pipeline import AssetSchedule, CronSchedule, EverySchedule, FileSchedule, ForeachCommand, Pipeline
from pipectl.spec.loader import PIPELINE_KEYS, TASK_KEYS, SpecError, load_pipelines, spec_files
FIXTURES = Path(__file__).parent / "fixtures" / "specs"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "pipectl.toml").write_text('[pipectl]\npipelines = ["pipelines/*.yaml"]\n[pools]\nwarehouse = 2\n')
    (tmp_path / "pipelines").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project, name, text):
    path = project / "pipelines" / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(project):
    return load_pipelines(load_config(project))


def errors_of(project, text, name="p.yaml"):
    write(project, name, text)
    return [str(e) for e in load(project).errors]


FULL = """
name: daily_orders_by_region
description: Orders per region for each day
schedule: "0 2 * * *"
timezone: America/Los_Angeles
start_date: 2026-04-01
end_date: null
catchup: false
max_active_runs: 1
params: {region: all, day: 2026-01-02}
env: {WAREHOUSE: local}
defaults:
  retries: 3
  retry_delay: 2m
  retry_backoff: exponential
  max_retry_delay: 30m
  timeout: 1h
  env: {A: "1"}
on_failure: "notify-send 'pipectl: {{ pipeline }} {{ ds }} failed'"
tasks:
  extract_orders:
    run: python scripts/extract.py --date {{ ds }} --region {{ params.region }}
    produces: [raw.orders]
    no_retry_exit_codes: [3]
    env: {B: "2"}
  clean_orders:
    run: [python, scripts/clean.py, "{{ ds_nodash }}"]
    pool: warehouse
  aggregate_orders:
    run: python scripts/aggregate.py
    timeout: 20m
    needs: [clean_orders]
  fan:
    foreach: [us, no, "1"]
    run: echo {{ item }}
    trigger_rule: all_done
edges:
  - extract_orders >> clean_orders >> aggregate_orders
  - "[aggregate_orders, extract_orders] >> fan"
"""


def test_full_example_loads(project):
    write(project, "daily.yaml", FULL)
    result = load(project)
    assert result.errors == []
    p = result.pipelines["daily_orders_by_region"]
    assert list(p.tasks) == ["extract_orders", "clean_orders", "aggregate_orders", "fan"]
    assert p.schedules == (CronSchedule("0 2 * * *"),)
    assert p.timezone == "America/Los_Angeles"
    assert p.start_date == "2026-04-01" and p.end_date is None
    assert p.params == {"region": "all", "day": "2026-01-02"}
    t = p.tasks
    assert t["extract_orders"].retry.retries == 3
    assert t["extract_orders"].retry.retry_delay == 120
    assert t["extract_orders"].retry.retry_backoff == "exponential"
    assert t["extract_orders"].retry.no_retry_exit_codes == (3,)
    assert t["extract_orders"].timeout == 3600 and t["aggregate_orders"].timeout == 1200
    assert dict(t["extract_orders"].env) == {"A": "1", "B": "2"}
    assert dict(t["clean_orders"].env) == {"A": "1"}
    assert t["clean_orders"].run == ("python", "scripts/clean.py", "{{ ds_nodash }}")
    assert t["clean_orders"].pool == "warehouse"
    assert t["aggregate_orders"].needs == ("clean_orders",)  # needs and edges deduped
    assert t["fan"].needs == ("extract_orders", "aggregate_orders")  # file order
    assert t["fan"].foreach == ("us", "no", "1")  # as written: `no` is not False
    assert t["fan"].trigger_rule == "all_done"
    assert t["extract_orders"].produces == ("raw.orders",)


def test_round_trip_through_json(project):
    write(project, "daily.yaml", FULL)
    write(project, "sensors.yaml", SENSORS)
    for p in load(project).pipelines.values():
        assert Pipeline.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_name_defaults_to_file_stem(project):
    write(project, "my_pipe.yaml", "tasks: {a: {run: 'true'}}")
    assert list(load(project).pipelines) == ["my_pipe"]


def test_spec_files_sorted_and_globbed(project):
    write(project, "b.yaml", "tasks: {a: {run: 'true'}}")
    write(project, "a.yaml", "tasks: {a: {run: 'true'}}")
    (project / "pipelines" / "notes.txt").write_text("x")
    assert [p.name for p in spec_files(load_config(project))] == ["a.yaml", "b.yaml"]


def test_spec_error_str():
    assert str(SpecError("pipelines/x.yaml", 3, 7, "boom")) == "pipelines/x.yaml:3:7: boom"


# -- one test per error class: exact positions and messages -----------------

CASES = {
    "yaml_syntax": (
        "tasks:\n  a: {run: x\n",
        "3:1: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping at line 2)",
    ),
    "edge_list_needs_quotes": (
        "tasks:\n  a: {run: x}\nedges:\n  - [a, b] >> c\n",
        "4:13: YAML syntax error: did not find expected comment or line break (while scanning a block scalar"
        " at line 4); quote edges that start with '[', e.g. - \"[a, b] >> c\"",
    ),
    "duplicate_key": (
        "tasks:\n  a:\n    run: x\n    retries: 1\n    retries: 2\n",
        "5:5: duplicate key 'retries' (first at line 4)",
    ),
    "unknown_task_key": (
        "tasks:\n  extract:\n    run: x\n    retires: 3\n",
        "4:5: unknown key 'retires' in task 'extract' (did you mean 'retries'?)",
    ),
    "unknown_pipeline_key": (
        "shedule: '@daily'\ntasks: {a: {run: x}}\n",
        "1:1: unknown key 'shedule' (did you mean 'schedule'?)",
    ),
    "unknown_defaults_key": (
        "defaults: {retry_dely: 5m}\ntasks: {a: {run: x}}\n",
        "1:12: unknown key 'retry_dely' in defaults (did you mean 'retry_delay'?)",
    ),
    "wrong_type": (
        "max_active_runs: one\ntasks: {a: {run: x}}\n",
        "1:18: 'max_active_runs' must be an integer, got string",
    ),
    "wrong_type_bool": (
        "catchup: 1\ntasks: {a: {run: x}}\n",
        "1:10: 'catchup' must be true or false, got integer",
    ),
    "bad_duration": (
        "tasks:\n  a:\n    run: x\n    timeout: 5 minutes\n",
        "4:14: 'timeout': bad duration '5 minutes': expected e.g. 30s, 5m, 2h, 1d or seconds",
    ),
    "unknown_timezone": (
        "timezone: Europe/Pariss\ntasks: {a: {run: x}}\n",
        "1:11: unknown timezone 'Europe/Pariss' (did you mean 'Europe/Paris'?)",
    ),
    "unknown_edge_task": (
        "tasks:\n  extract: {run: x}\n  load: {run: x}\nedges:\n  - extract >> lod\n",
        "5:16: unknown task 'lod' in edges (did you mean 'load'?)",
    ),
    "unknown_fan_in_task": (
        "tasks:\n  extract: {run: x}\n  load: {run: x}\nedges:\n  - \"[extract, nope] >> load\"\n",
        "5:16: unknown task 'nope' in edges",
    ),
    "unknown_needs_task": (
        "tasks:\n  extract: {run: x}\n  load:\n    run: x\n    needs: [extrct]\n",
        "5:13: unknown task 'extrct' in needs of task 'load' (did you mean 'extract'?)",
    ),
    "cycle": (
        "tasks:\n  a: {run: x}\n  b: {run: x}\n  c: {run: x}\nedges:\n  - a >> b >> c\n  - c >> a\n",
        "7:10: cycle: a -> b -> c -> a",
    ),
    "self_cycle": (
        "tasks:\n  a:\n    run: x\n    needs: [a]\n",
        "4:13: cycle: a -> a",
    ),
    "unknown_template_variable": (
        "tasks:\n  a:\n    run: echo {{ dss }}\n",
        "3:18: unknown template variable 'dss' (did you mean 'ds'?)",
    ),
    "unknown_param": (
        "params: {region: all}\ntasks:\n  a:\n    run: \"echo {{ params.regoin }}\"\n",
        "4:19: unknown template variable 'params.regoin' (did you mean 'params.region'?)",
    ),
    "item_without_foreach": (
        "tasks:\n  a:\n    run: echo {{ item }}\n",
        "3:18: template variable 'item' is only available in tasks with 'foreach'",
    ),
    "template_in_block_scalar": (
        "tasks:\n  a:\n    run: |\n      set -e\n      echo {{ ds }} {{ nope }}\n",
        "5:24: unknown template variable 'nope'",
    ),
    "template_in_hook": (
        "on_failure: notify {{ tsk }}\ntasks: {a: {run: x}}\n",
        "1:23: unknown template variable 'tsk' (did you mean 'task'?)",
    ),
    "template_in_sensor": (
        "tasks:\n  a:\n    sensor: {file: \"/d/{{ ds_nodsh }}\"}\n",
        "3:27: unknown template variable 'ds_nodsh' (did you mean 'ds_nodash'?)",
    ),
    "missing_run": (
        "tasks:\n  a:\n    retries: 1\n",
        "2:3: task 'a' needs 'run' (or 'sensor')",
    ),
    "sensor_with_run": (
        "tasks:\n  a:\n    run: x\n    sensor: {command: 'true'}\n",
        "4:5: task 'a' has both 'run' and 'sensor'; a sensor task has no 'run'",
    ),
    "bad_trigger_rule": (
        "tasks:\n  a:\n    run: x\n    trigger_rule: all_sucess\n",
        "4:19: 'trigger_rule' must be one of all_success, all_done, all_failed, one_failed, one_success,"
        " none_failed, none_failed_min_one_success, none_skipped; got 'all_sucess' (did you mean 'all_success'?)",
    ),
    "unknown_pool": (
        "tasks:\n  a:\n    run: x\n    pool: warehous\n",
        "4:11: unknown pool 'warehous' (did you mean 'warehouse'?) (pools are declared under [pools] in pipectl.toml)",
    ),
    "missing_secret": (
        "env:\n  TOKEN: ${PIPECTL_TEST_SURELY_UNSET}\ntasks: {a: {run: x}}\n",
        "2:10: environment variable 'PIPECTL_TEST_SURELY_UNSET' is not set (needed by env 'TOKEN')",
    ),
    "cron_nickname": (
        "schedule: '@hourlyy'\ntasks: {a: {run: x}}\n",
        "1:11: unknown cron nickname '@hourlyy' (did you mean '@hourly'?)",
    ),
    "two_schedule_kinds": (
        "schedule: {every: 5m, cron: '* * * * *'}\ntasks: {a: {run: x}}\n",
        "1:23: a schedule has one of 'cron', 'every', 'assets' or 'file', got 'every' and 'cron';"
        " use a list for several schedules",
    ),
    "not_a_mapping": (
        "- a\n- b\n",
        "1:1: a pipeline file must be a mapping, got list",
    ),
    "empty_file": ("", "1:1: empty pipeline file: expected a mapping with 'tasks'"),
    "no_tasks": ("schedule: null\n", "1:1: pipeline has no 'tasks'"),
    "end_before_start": (
        "start_date: 2026-04-02\nend_date: 2026-04-01\ntasks: {a: {run: x}}\n",
        "2:11: 'end_date' is before 'start_date'",
    ),
    "bad_date": (
        "start_date: 2026-13-45\ntasks: {a: {run: x}}\n",
        "1:13: 'start_date' must be a date (YYYY-MM-DD) or datetime (YYYY-MM-DDTHH:MM[:SS][+HH:MM]), got '2026-13-45'",
    ),
    "bad_fresh_by": (
        "assets:\n  raw.orders: {fresh_by: '25:00'}\ntasks: {a: {run: x}}\n",
        "2:26: 'fresh_by' must be a time HH:MM, got '25:00'",
    ),
    "bad_task_name": (
        "tasks:\n  a.b: {run: x}\n",
        "2:3: task name 'a.b' may only contain letters, digits, '_' and '-'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_class(project, case):
    text, expected = CASES[case]
    (project / "pipelines" / "p.yaml").write_text(text)
    result = load(project)
    assert [str(e) for e in result.errors] == [f"pipelines/p.yaml:{expected}"]
    assert result.pipelines == {}
    assert list(result.invalid) == ["p"]


def test_bad_cron_names_the_field(project):
    [error] = errors_of(project, "schedule: '61 2 * * *'\ntasks: {a: {run: x}}\n")
    assert error.startswith("pipelines/p.yaml:1:11: ")
    assert "'61 2 * * *'" in error and "minute" in error
    [error] = errors_of(project, "schedule: {cron: '0 2 * 13 *'}\ntasks: {a: {run: x}}\n")
    assert error.startswith("pipelines/p.yaml:1:18: ") and "month" in error


def test_multi_error_file_reports_everything(project):
    shutil.copy(FIXTURES / "broken.yaml", project / "pipelines" / "broken.yaml")
    errors = load(project).errors
    # the cron message belongs to schedules.cron_error: check only what the loader controls
    [cron] = [e for e in errors if "cron" in e.message]
    assert (cron.line, cron.col) == (3, 11)
    assert "'61 2 * * *'" in cron.message and "minute" in cron.message
    assert [str(e) for e in errors if e is not cron] == [
        "pipelines/broken.yaml:2:1: unknown key 'shedule' (did you mean 'schedule'?)",
        "pipelines/broken.yaml:4:11: unknown timezone 'America/Los_Angles' (did you mean 'America/Los_Angeles'?)",
        "pipelines/broken.yaml:5:18: 'max_active_runs' must be an integer, got string",
        "pipelines/broken.yaml:9:16: 'retry_delay': bad duration '5 minutes': expected e.g. 30s, 5m, 2h, 1d or seconds",
        "pipelines/broken.yaml:12:38: unknown template variable 'dss' (did you mean 'ds'?)",
        "pipelines/broken.yaml:13:5: unknown key 'retires' in task 'extract' (did you mean 'retries'?)",
        "pipelines/broken.yaml:15:5: duplicate key 'retries' (first at line 14)",
        "pipelines/broken.yaml:17:28: unknown template variable 'params.regoin' (did you mean 'params.region'?)",
        "pipelines/broken.yaml:18:13: unknown task 'extrct' in needs of task 'load' (did you mean 'extract'?)",
        "pipelines/broken.yaml:22:34: cycle: extract -> load -> report -> extract",
        "pipelines/broken.yaml:23:16: unknown task 'nope' in edges",
    ]


def test_fixed_file_validates(project):
    shutil.copy(FIXTURES / "fixed.yaml", project / "pipelines" / "broken.yaml")
    result = load(project)
    assert result.errors == [] and list(result.pipelines) == ["broken"]
    assert result.pipelines["broken"].tasks["report"].needs == ("extract", "load")


def test_invalid_pipeline_does_not_stop_others(project):
    write(project, "good.yaml", "tasks: {a: {run: 'true'}}")
    write(project, "bad.yaml", "tasks: {a: {run: 'true', retries: x}}")
    result = load(project)
    assert list(result.pipelines) == ["good"]
    assert list(result.invalid) == ["bad"]
    assert result.files == {"bad": str(project / "pipelines" / "bad.yaml"), "good": str(project / "pipelines" / "good.yaml")}


def test_syntax_error_keeps_declared_name(project):
    write(project, "file.yaml", "name: real_name\ntasks: [\n")
    assert list(load(project).invalid) == ["real_name"]


def test_two_files_one_name(project):
    write(project, "a.yaml", "name: x\ntasks: {a: {run: 'true'}}")
    write(project, "b.yaml", "tasks: {a: {run: 'true'}}")
    write(project, "x.yaml", "tasks: {a: {run: 'true'}}")
    result = load(project)
    assert [str(e) for e in result.errors] == [
        "pipelines/a.yaml:1:7: pipeline 'x' is also defined in pipelines/x.yaml",
        "pipelines/x.yaml:1:1: pipeline 'x' is also defined in pipelines/a.yaml",
    ]
    assert list(result.pipelines) == ["b"]
    assert len(result.invalid["x"]) == 2


def test_defaults_problem_reported_once(project):
    errors = errors_of(project, """
        defaults: {retries: many}
        tasks: {a: {run: x}, b: {run: x}, c: {run: x}}
    """)
    assert errors == ["pipelines/p.yaml:1:21: 'retries' must be an integer, got string"]


def test_task_keys_override_defaults(project):
    write(project, "p.yaml", """
        defaults: {retries: 3, timeout: 1h, on_failure: "echo {{ task }}"}
        tasks:
          a: {run: x, retries: 0}
          b: {run: x}
    """)
    tasks = load(project).pipelines["p"].tasks
    assert tasks["a"].retry.retries == 0 and tasks["b"].retry.retries == 3
    assert tasks["a"].timeout == 3600 and tasks["b"].on_failure == "echo {{ task }}"


# -- schedules -----------------------------------------------------------------

def test_schedule_forms(project):
    write(project, "p.yaml", """
        params: {}
        schedule:
          - "@daily"
          - "@midnight"
          - {cron: "*/15 9-17 * * mon-fri", timezone: Europe/Paris}
          - {every: 15m}
          - {assets: [raw.a, raw.b], mode: any}
          - {file: "incoming/*.csv"}
        tasks: {a: {run: "load {{ params.file }}"}}
    """)
    p = load(project).pipelines["p"]
    assert p.schedules == (
        CronSchedule("0 0 * * *"),
        CronSchedule("0 0 * * *"),
        CronSchedule("*/15 9-17 * * mon-fri", "Europe/Paris"),
        EverySchedule(900.0),
        AssetSchedule(("raw.a", "raw.b"), "any"),
        FileSchedule("incoming/*.csv"),
    )
    assert p.time_schedules == p.schedules[:4]


def test_params_file_needs_a_file_schedule(project):
    assert errors_of(project, "tasks: {a: {run: 'load {{ params.file }}'}}") == [
        "pipelines/p.yaml:1:27: unknown template variable 'params.file'"
    ]


def test_null_schedule(project):
    write(project, "p.yaml", "schedule: null\ntasks: {a: {run: x}}")
    assert load(project).pipelines["p"].schedules == ()


# -- env and secrets -------------------------------------------------------------

def test_secrets_from_environ_and_env_file(project, monkeypatch):
    monkeypatch.setenv("PIPECTL_TEST_TOKEN", "s3cret")
    (project / "secrets.env").write_text("# comment\nexport DB_PASSWORD='hunter2'\nAPI_KEY=abc\n\n")
    write(project, "p.yaml", """
        env_file: secrets.env
        env: {TOKEN: "${PIPECTL_TEST_TOKEN}", URL: "https://u:${PIPECTL_TEST_TOKEN}@host", PLAIN: yes}
        tasks:
          a: {run: x, env: {T2: "${PIPECTL_TEST_TOKEN}"}}
    """)
    p = load(project).pipelines["p"]
    # the spec (and so every snapshot in the state file) keeps the references...
    assert dict(p.env) == {"TOKEN": "${PIPECTL_TEST_TOKEN}", "URL": "https://u:${PIPECTL_TEST_TOKEN}@host",
                           "PLAIN": "yes"}
    assert p.env_file == str(project / "secrets.env")
    assert p.secret_env == ("API_KEY", "DB_PASSWORD", "T2", "TOKEN", "URL")
    assert p.tasks["a"].env["T2"] == "${PIPECTL_TEST_TOKEN}"
    assert "s3cret" not in json.dumps(p.to_dict()) and "hunter2" not in json.dumps(p.to_dict())
    # ...and a task gets the values, resolved when it starts
    from pipectl.spec.secrets import launch_env
    assert launch_env(p, p.tasks["a"]) == {"DB_PASSWORD": "hunter2", "API_KEY": "abc", "TOKEN": "s3cret",
                                           "URL": "https://u:s3cret@host", "PLAIN": "yes", "T2": "s3cret"}


def test_env_file_problems(project):
    (project / "bad.env").write_text("OK=1\nnot a pair\n")
    assert errors_of(project, "env_file: bad.env\ntasks: {a: {run: x}}") == ["bad.env:2:1: expected KEY=VALUE"]
    assert errors_of(project, "env_file: missing.env\ntasks: {a: {run: x}}") == [
        "pipelines/p.yaml:1:11: cannot read env_file 'missing.env': No such file or directory"
    ]


# -- sensors, foreach, assets ------------------------------------------------------

SENSORS = """
name: sensors
schedule: "@daily"
assets:
  raw.orders: {fresh_by: "6:30"}
  raw.shipments: {fresh_by: "07:00", timezone: Europe/Paris}
tasks:
  wait_file:
    sensor: {file: "/data/{{ ds }}/*.parquet", min_size: 1, glob: true}
    poke_interval: 1m
    timeout: 6h
    soft_fail: true
  wait_http:
    sensor: {http: "http://127.0.0.1:8080/ready/{{ ds }}"}
  wait_cmd:
    sensor: {command: "scripts/ready.sh {{ ds }}"}
  wait_task:
    sensor: {task: sensors.fan, delta: 1d}
  fan:
    foreach: {command: "ls incoming/{{ ds }}"}
    run: "process {{ item }}"
"""


def test_sensors_foreach_and_assets(project):
    write(project, "sensors.yaml", SENSORS)
    result = load(project)
    assert result.errors == []
    p = result.pipelines["sensors"]
    s = p.tasks["wait_file"].sensor
    assert (s.kind, s.target, s.min_size, s.glob, s.poke_interval, s.timeout, s.soft_fail) == (
        "file", "/data/{{ ds }}/*.parquet", 1, True, 60.0, 21600.0, True)
    assert p.tasks["wait_file"].run is None
    assert p.tasks["wait_http"].sensor.kind == "http"
    assert p.tasks["wait_cmd"].sensor.target == "scripts/ready.sh {{ ds }}"
    assert (p.tasks["wait_task"].sensor.target, p.tasks["wait_task"].sensor.delta) == ("sensors.fan", 86400.0)
    assert p.tasks["fan"].foreach == ForeachCommand("ls incoming/{{ ds }}")
    assert {k: dict(v) for k, v in p.assets.items()} == {
        "raw.orders": {"fresh_by": "06:30", "timezone": "UTC"},
        "raw.shipments": {"fresh_by": "07:00", "timezone": "Europe/Paris"},
    }


def test_sensor_target_must_exist(project):
    write(project, "other.yaml", "tasks: {done: {run: x}}")
    errors = errors_of(project, """
        tasks:
          a: {sensor: {task: othr.done}}
          b: {sensor: {task: other.dne}}
          c: {sensor: {http: "ftp://x"}}
          d: {run: x, poke_interval: 1m}
    """)
    assert errors == [
        "pipelines/p.yaml:2:22: sensor waits for unknown pipeline 'othr' (did you mean 'other'?)",
        "pipelines/p.yaml:3:22: sensor waits for unknown task 'dne' in pipeline 'other' (did you mean 'done'?)",
        "pipelines/p.yaml:4:22: 'http' must be an http:// or https:// URL, got 'ftp://x'",
        "pipelines/p.yaml:5:15: 'poke_interval' only applies to sensor tasks",
    ]


def test_yaml_merge_keys_fill_in_without_duplicate_errors(project):
    write(project, "p.yaml", """
        defaults: &common {retries: 2, timeout: 5m}
        tasks:
          a: {<<: *common, run: x, retries: 5}
    """)
    task = load(project).pipelines["p"].tasks["a"]
    assert (task.retry.retries, task.timeout) == (5, 300)


def test_bad_nested_param_is_an_error_not_a_crash(project):
    assert errors_of(project, "params: {days: [2026-13-45]}\ntasks: {a: {run: x}}") == [
        "pipelines/p.yaml:1:16: bad value for param 'days': month must be in 1..12"
    ]


# -- robustness: arbitrary documents never raise ------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.text(max_size=12),
                    st.sampled_from(["5m", "{{ ds }}", "a >> b", "@daily", "* * * * *", "${HOME}"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(TASK_KEYS + ("a", "b", "file", "cron")), inner, max_size=4),
                      max_leaves=12)
tasks = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.dictionaries(st.sampled_from(TASK_KEYS), values, max_size=5))
documents = st.dictionaries(st.sampled_from(PIPELINE_KEYS), values, max_size=6).flatmap(
    lambda d: tasks.map(lambda t: {**d, "tasks": t}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents)
def test_arbitrary_documents_never_raise(project, doc):
    (project / "pipelines" / "p.yaml").write_text(yaml.safe_dump(doc))
    result = load(project)
    assert bool(result.errors) != bool(result.pipelines)
    for error in result.errors:
        assert error.line >= 1 and error.col >= 1
        assert "internal error" not in error.message
