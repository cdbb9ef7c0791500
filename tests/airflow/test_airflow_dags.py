"""Exported DAGs checked by Airflow itself: they import, they say what the pipelines say attribute by
attribute, their templates render to pipectl's values through the DAG's own Jinja environment, their
timetables give pipectl's intervals across DST changes, and a real `airflow dags test` of the
quickstart writes the rows pipectl writes, retrying and refusing to retry as pipectl does."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

# Airflow reads AIRFLOW_HOME when first imported: a private one (SQLite metadata in a temporary
# directory) unless the caller gave one, as .ci/run does.
if "AIRFLOW_HOME" not in os.environ:
    import tempfile

    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="pipectl-airflow-home.")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

if os.environ.get("PIPECTL_REQUIRE_AIRFLOW"):  # .ci/run: a missing Airflow is a failure, not a skip
    import airflow.sdk  # noqa: F401
else:
    pytest.importorskip("airflow.sdk", reason="apache-airflow is not installed (the `airflow` extra)")

import pendulum  # noqa: E402  (installed with Airflow)
from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from airflow.sdk.definitions.mappedoperator import MappedOperator  # noqa: E402
from airflow.serialization.encoders import coerce_to_core_timetable  # noqa: E402
from airflow.timetables.base import TimeRestriction  # noqa: E402

from conftest import QUICKSTART, REPO, cli_env, run_cli  # noqa: E402
from pipectl.spec.config import load_config  # noqa: E402
from pipectl.export.airflow import ITEMS_SUFFIX, WATCHER  # noqa: E402
from pipectl.model.pipeline import ForeachCommand, Pipeline  # noqa: E402
from pipectl.timing.clock import ds_of  # noqa: E402
from pipectl.spec.secrets import launch_env  # noqa: E402
from pipectl.spec.loader import load_pipelines  # noqa: E402
from pipectl.spec.templates import render, shell_command, task_env  # noqa: E402
from pipectl.engine.tick import instant  # noqa: E402

UTC = timezone.utc
PROBE = REPO / "tests" / "fixtures" / "export_probe"
THREE = REPO / "examples" / "three_cadences"
SECRET = {"PROBE_TOKEN": "s3cr3t-token-value"}
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"


def export(project: Path, out: Path, *extra: str, env=None) -> subprocess.CompletedProcess:
    res = run_cli("--project", project, "--now", "2026-04-05T12:00:00Z", "export", "airflow", "--out", out, *extra,
                  env=env)
    assert res.returncode == 0, res.stderr
    return res


def pipelines_of(project: Path, env=None) -> dict[str, Pipeline]:
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        res = load_pipelines(load_config(project))
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert not res.errors, res.errors
    return res.pipelines


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each example project exported into its own DAG folder and parsed by Airflow's DagBag."""
    out = {}
    for name, project, extra, env in (("quickstart", QUICKSTART, (), None), ("three_cadences", THREE, ("--lossy",), None),
                                      ("probe", PROBE, (), SECRET)):
        folder = tmp_path_factory.mktemp(name)
        export(project, folder, *extra, env=env)
        os.environ.update(env or {})
        bag = DagBag(dag_folder=str(folder))
        out[name] = (project, folder, bag, pipelines_of(project, env))
    return out


def test_every_exported_example_imports_without_errors(exported):
    for name, (project, folder, bag, pipelines) in exported.items():
        assert bag.import_errors == {}, (name, bag.import_errors)
        assert sorted(bag.dags) == sorted(pipelines), name
        # the support module beside them is no DAG and no error
        assert (folder / "pipectl_airflow.py").exists()


# -- attribute by attribute ---------------------------------------------------------------------------
def concrete(task):
    """A mapped task as one of its task instances sees it (the item does not change any setting)."""
    return task.unmap({"pipectl_item": "item"}) if isinstance(task, MappedOperator) else task


def seconds(td) -> float | None:
    return None if td is None else td.total_seconds()


def expected_upstreams(p: Pipeline, name: str, dag) -> set[str]:
    ups = set(p.tasks[name].needs)
    if not ups:  # an asset consumer's first tasks wait on the producers' sensors
        ups = {t for t in dag.task_ids if t.startswith("pipectl.asset.")}
    return ups


def test_each_dag_matches_the_pipeline_attribute_by_attribute(exported):
    checked = set()
    for name, (project, folder, bag, pipelines) in exported.items():
        config = load_config(project)
        for p in pipelines.values():
            dag = bag.dags[p.name]
            # the run
            assert dag.catchup is p.catchup
            assert dag.max_active_runs == p.max_active_runs
            start = instant(p.start_date, p.timezone) if p.start_date else None
            if start is not None:
                assert dag.start_date == start
            assert (dag.end_date is None) == (p.end_date is None)
            if p.end_date:
                assert dag.end_date == instant(p.end_date, p.timezone, end_of_day=True)
            tt = coerce_to_core_timetable(dag.timetable)
            scheds = [s for s in p.schedules]
            kinds = {type(s).__name__ for s in scheds}
            if kinds == {"CronSchedule"}:
                assert type(tt).__name__ == "CronDataIntervalTimetable"
                assert tt._expression == scheds[0].cron
                assert str(tt._timezone.name) == (scheds[0].timezone or p.timezone)
            elif kinds == {"EverySchedule"}:
                assert type(tt).__name__ == "DeltaDataIntervalTimetable"
                assert tt._delta == timedelta(seconds=scheds[0].every)
            elif "AssetSchedule" in kinds:  # the faithful form: midnight intervals, sensors on the producers
                assert type(tt).__name__ == "CronDataIntervalTimetable"
                assert (tt._expression, str(tt._timezone.name)) == ("0 0 * * *", p.timezone)
            # the tasks, their upstreams, and what the export adds
            added = {WATCHER} | {t + ITEMS_SUFFIX for t, task in p.tasks.items()
                                 if isinstance(task.foreach, ForeachCommand)}
            added |= {t for t in dag.task_ids if t.startswith("pipectl.asset.")}
            assert set(dag.task_ids) == set(p.tasks) | added
            assert dag.get_task(WATCHER).trigger_rule == "one_failed"
            assert dag.get_task(WATCHER).upstream_task_ids == set(dag.task_ids) - {WATCHER}
            for tname, spec in p.tasks.items():
                t = dag.get_task(tname)
                ups = expected_upstreams(p, tname, dag)
                if isinstance(spec.foreach, ForeachCommand):
                    items = dag.get_task(tname + ITEMS_SUFFIX)
                    assert items.upstream_task_ids == ups
                    assert t.upstream_task_ids == {tname + ITEMS_SUFFIX}
                    assert items.trigger_rule == spec.trigger_rule
                else:
                    assert t.upstream_task_ids == ups, (p.name, tname)
                    assert t.trigger_rule == spec.trigger_rule
                assert isinstance(t, MappedOperator) == (spec.foreach is not None)
                c = concrete(t)
                assert c.pool == (spec.pool or "default_pool")
                assert c.pool_slots == 1
                assert c.priority_weight == spec.priority
                assert str(c.weight_rule) in ("absolute", "WeightRule.ABSOLUTE")
                assert [a.name for a in c.outlets] == list(spec.produces)
                if spec.sensor is not None:
                    s = spec.sensor
                    assert c.mode == "reschedule"
                    assert c.poke_interval == max(s.poke_interval, 1.0)
                    assert c.timeout == (s.timeout if s.timeout is not None else 100 * 365 * 86400.0)
                    assert c.soft_fail is s.soft_fail
                    assert c.retries == 0
                    kind = {"file": "FileSensor", "http": "HttpSensor", "command": "CommandSensor",
                            "task": "ExternalTaskSensor"}[s.kind]
                    assert type(c).__name__ == kind
                    if s.kind == "file":
                        assert (c.min_size, c.glob) == (s.min_size, s.glob)
                        assert c.root == (os.path.join(config.root, spec.cwd) if spec.cwd else config.root)
                    if s.kind == "task":
                        other, _, other_task = s.target.rpartition(".")
                        assert (c.external_dag_id, c.external_task_id) == (other, other_task)
                        assert c.allowed_states == ["success"]
                    checked.add(f"sensor:{s.kind}")
                    continue
                r = spec.retry
                assert c.retries == r.retries
                assert seconds(c.retry_delay) == r.retry_delay
                assert seconds(c.max_retry_delay) == r.max_retry_delay
                assert not c.retry_exponential_backoff  # pipectl's exact delays come from the retry policy
                for n in range(1, 12):
                    assert c.retry_policy.delay(n) == r.delay(n), (p.name, tname, n)
                assert c.no_retry_exit_codes == tuple(r.no_retry_exit_codes)
                assert c.skip_exit_codes == tuple(spec.skip_exit_codes)
                if spec.skip_exit_codes:
                    checked.add("skip_exit_codes")
                assert c.retry_on_exit_codes == r.retry_on_exit_codes
                assert seconds(c.execution_timeout) == spec.timeout
                assert c.cwd == (os.path.join(config.root, spec.cwd) if spec.cwd else config.root)
                if isinstance(spec.run, str):
                    assert type(c).__name__ == "ShellTask"
                    assert c.skip_on_exit_code == []  # Airflow's default would turn exit 99 into skipped
                    assert c.append_env is True
                    checked.add("run:string")
                else:
                    assert type(c).__name__ == "ExecTask"
                    checked.add("run:list")
                checked.add(f"trigger_rule:{spec.trigger_rule}")
                if spec.foreach is not None:
                    checked.add("foreach:" + ("command" if isinstance(spec.foreach, ForeachCommand) else "list"))
                for hook in ("on_failure", "on_retry", "on_success"):
                    if getattr(spec, hook) or getattr(p, hook):
                        assert getattr(c, hook + "_callback"), (tname, hook)
                        checked.add(f"hook:{hook}")
    # the probe covers every key the exporter carries
    assert checked >= {"sensor:file", "sensor:http", "sensor:command", "sensor:task", "run:string", "run:list",
                       "foreach:command", "foreach:list", "hook:on_failure", "hook:on_retry", "hook:on_success",
                       "trigger_rule:all_success", "trigger_rule:all_done", "trigger_rule:one_failed",
                       "trigger_rule:one_success", "trigger_rule:none_failed", "trigger_rule:all_failed",
                       "trigger_rule:none_failed_min_one_success", "trigger_rule:none_skipped", "skip_exit_codes"}


# -- rendering ----------------------------------------------------------------------------------------
class FakeTI:
    def __init__(self, task_id: str, try_number: int, map_index: int = -1):
        self.task_id, self.try_number, self.map_index = task_id, try_number, map_index


def pipectl_values(p: Pipeline, logical: datetime, end: datetime, task: str, try_number: int, item: str = "") -> dict:
    """What pipectl's engine gives a try of ``task`` in the scheduled run for ``logical``
    (pipectl.scheduler.template_values, from the same fields of a run row)."""
    ld = logical.astimezone(UTC).isoformat()
    return {"ds": ds_of(logical, p.timezone), "ds_nodash": ds_of(logical, p.timezone).replace("-", ""),
            "logical_date": ld, "data_interval_start": ld, "data_interval_end": end.astimezone(UTC).isoformat(),
            "run_id": f"scheduled__{ld}", "pipeline": p.name, "task": task, "try_number": str(try_number),
            "params": dict(p.params), "item": item}


def pipectl_env(p: Pipeline, spec, values: dict, refs: dict) -> dict:
    env = launch_env(p, spec, dict(os.environ))
    env.update(task_env(values))
    env.update(refs)
    return env


def airflow_render(dag, task, logical: datetime, end: datetime, try_number: int, map_index: int, item: str):
    from pipectl_airflow import launch_env as airflow_launch_env

    if isinstance(task, MappedOperator):
        task = task.unmap({"pipectl_item": item})
    ti = FakeTI(task.task_id, try_number, map_index)
    context = {"logical_date": pendulum.instance(logical), "data_interval_start": pendulum.instance(logical),
               "data_interval_end": pendulum.instance(end), "run_id": f"scheduled__{logical.astimezone(UTC).isoformat()}",
               "ti": ti, "task_instance": ti, "task": task, "params": dict(dag.params.dump()), "dag": dag}
    task.render_template_fields(context, dag.get_template_env())
    env = airflow_launch_env(getattr(task, "env", None), getattr(task, "secret_env", None),
                             getattr(task, "env_file", None))
    return task, env


def test_commands_and_env_render_as_pipectl_renders_them(exported, tmp_path):
    """A 22:30 Los Angeles fire time (05:30 UTC the next day, where Airflow's own ds would be a day
    late) and a param full of shell metacharacters: every command, argv, path, URL and variable
    equals pipectl's, and the command run by bash prints the param verbatim, as pipectl's under sh."""
    project, folder, bag, pipelines = exported["probe"]
    sys.path.insert(0, str(folder))
    os.environ.update(SECRET)
    p = pipelines["probe"]
    dag = bag.dags["probe"]
    assert "$(touch pwned)" in p.params["q"] and "`id`" in p.params["q"]
    logical = datetime(2026, 4, 3, 22, 30, tzinfo=pendulum.timezone("America/Los_Angeles"))
    end = logical + timedelta(days=1)
    rendered = 0
    for name, spec in p.tasks.items():
        items = list(spec.foreach) if isinstance(spec.foreach, tuple) else ["x", "y 2026-04-03"] if spec.foreach else [""]
        for index, item in enumerate(items):
            mapped = spec.foreach is not None
            label = f"{name}[{index}]" if mapped else name
            try_number = 0 if spec.sensor is not None else 2
            values = pipectl_values(p, logical, end, label, try_number, item)
            task, env = airflow_render(dag, dag.get_task(name), logical, end, try_number, index if mapped else -1, item)
            if spec.sensor is None or spec.sensor.kind == "command":
                assert env["PIPECTL_DS"] == "2026-04-03"  # Airflow's UTC ds would say 2026-04-04
            if spec.sensor is not None and spec.sensor.kind in ("file", "http"):
                target = task.path if spec.sensor.kind == "file" else task.url
                assert target == render(spec.sensor.target, values)
            elif spec.sensor is not None and spec.sensor.kind == "command":
                command, refs = shell_command(spec.sensor.target, values)
                assert task.command == command
                assert env == pipectl_env(p, spec, values, refs)
            elif spec.sensor is None:
                if isinstance(spec.run, str):
                    command, refs = shell_command(spec.run, values)
                    assert task.bash_command == command
                else:
                    refs = {}
                    assert task.argv == [render(a, values) for a in spec.run]
                assert env == pipectl_env(p, spec, values, refs), name
                if isinstance(spec.run, str):
                    mine = subprocess.run(["/bin/sh", "-c", command], env={**os.environ, **pipectl_env(p, spec, values, refs)},
                                          capture_output=True, text=True, cwd=project / "sub")
                    theirs = subprocess.run(["bash", "-c", task.bash_command], env={**os.environ, **env},
                                            capture_output=True, text=True, cwd=project / "sub")
                    assert (theirs.returncode, theirs.stdout) == (mine.returncode, mine.stdout)
                    if name == "sh_task":
                        assert p.params["q"] in theirs.stdout
                        assert not (project / "sub" / "pwned").exists()
            rendered += 1
        if isinstance(spec.foreach, ForeachCommand):
            values = pipectl_values(p, logical, end, name, 0)
            command, refs = shell_command(spec.foreach.command, values)
            task, env = airflow_render(dag, dag.get_task(name + ITEMS_SUFFIX), logical, end, 1, -1, "")
            assert task.command == command
            assert env == pipectl_env(p, spec, values, refs)
    assert rendered >= len(p.tasks)
    # the secret reached the environment at launch and was never rendered into a template field
    assert env["TOKEN"] == SECRET["PROBE_TOKEN"] and env["FROM_FILE"] == "file-value"
    assert all(SECRET["PROBE_TOKEN"] not in str(v) for t in dag.tasks for v in (getattr(t, "env", None) or {}).values())
    # a literal env value full of Jinja stays literal
    assert env["PLAIN"] == "braces {{ ds }} {% raw %} stay literal"

    # a hook is a callback running pipectl's command through /bin/sh with the try's values
    from pipectl_airflow import Hook

    sh = dag.get_task("sh_task")
    (hook,) = sh.on_failure_callback
    assert (hook.command, hook.state) == (shell_command(p.on_failure, values)[0], "failed")
    out = tmp_path / "hook.out"
    probe_hook = Hook(f'echo "$PIPECTL_STATE $PIPECTL_DS $PIPECTL_TASK $TOKEN $PIPECTL_EXIT_CODE" > {out}', "failed")
    sh.pipectl_exit_code = 5
    ti = FakeTI("sh_task", 3)
    probe_hook({"logical_date": pendulum.instance(logical), "data_interval_start": pendulum.instance(logical),
                "data_interval_end": pendulum.instance(end), "run_id": "scheduled__x", "ti": ti, "task": sh,
                "params": dict(dag.params.dump()), "dag": dag})
    assert out.read_text() == f"failed 2026-04-03 sh_task {SECRET['PROBE_TOKEN']} 5\n"


# -- timetables ----------------------------------------------------------------------------------------
def airflow_intervals(dag, after: datetime, count: int) -> list[dict]:
    tt = coerce_to_core_timetable(dag.timetable)
    earliest = dag.start_date
    if type(tt).__name__ == "CronDataIntervalTimetable":  # cron aligns any start to its own times
        earliest = max(earliest, pendulum.instance(after - timedelta(days=2)))
    restriction = TimeRestriction(earliest=earliest, latest=dag.end_date, catchup=True)
    last, out = None, []
    while len(out) < count:
        info = tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        if info is None:
            break
        last = info.data_interval
        if info.data_interval.end > after:
            out.append({"fire_time": info.data_interval.end, "logical_date": info.logical_date})
    return out


@pytest.mark.parametrize("name,now,count", [
    ("dst", "2026-03-05T00:00:00Z", 8),               # 02:00 New York is the jump itself on 2026-03-08
    ("dst", "2026-10-29T00:00:00Z", 6),               # and comes once, after the repeated hour, on 2026-11-01
    ("dst_half_hourly", "2026-11-01T03:00:00Z", 12),  # both copies of the repeated hour
    ("dst_half_hourly", "2027-03-14T05:00:00Z", 8),   # none of the skipped one
    ("probe", "2026-03-06T00:00:00Z", 6),             # 22:30 Los Angeles across 2026-03-08
    ("producer", "2026-10-30T00:00:00Z", 6),          # 04:00 Los Angeles across 2026-11-01
    ("batches", "2026-03-29T00:30:00Z", 12),          # every 15 minutes across Berlin's change
])
def test_timetable_gives_pipectls_next_intervals_across_dst(exported, name, now, count):
    project, folder, bag, pipelines = exported["probe"]
    res = run_cli("--project", project, "--now", now, "next", name, "--count", count, "--json", env=SECRET)
    assert res.returncode == 0, res.stderr
    ours = json.loads(res.stdout)
    assert len(ours) == count
    dag = bag.dags[name]
    theirs = airflow_intervals(dag, datetime.fromisoformat(now.replace("Z", "+00:00")), count)
    from pipectl_airflow import Macros

    macros = Macros(pipelines[name].timezone)
    assert [(datetime.fromisoformat(r["fire_time"]), datetime.fromisoformat(r["logical_date"]), r["ds"])
            for r in ours] == [(i["fire_time"], i["logical_date"], macros.ds(i["logical_date"])) for i in theirs]


# -- a real run --------------------------------------------------------------------------------------
FLAKY = """\
# makes each quickstart script given in PIPECTL_FLAKY fail its first try per ds (exit 1), so that
# a retry happens for real; imported by Python at startup through PYTHONPATH
import os, sys
script = os.path.basename(sys.argv[0]) if sys.argv else ""
if script and script in os.environ.get("PIPECTL_FLAKY", "").split(","):
    mark = os.path.join(os.environ["PIPECTL_FLAKY_DIR"], script + "." + os.environ.get("PIPECTL_DS", "none"))
    if not os.path.exists(mark):
        open(mark, "w").close()
        sys.stderr.write("flaky: first try fails\\n")
        sys.exit(1)
"""


def airflow_cli(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([str(AIRFLOW_BIN), *args], capture_output=True, text=True, env=env, timeout=300)


def rows(db: Path, ds: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT ds, region, orders, revenue_cents FROM orders_by_region WHERE ds = ? "
                           "ORDER BY region", (ds,)).fetchall()
    finally:
        con.close()


def task_instances(home: Path, run_id_like: str) -> dict[str, tuple]:
    con = sqlite3.connect(home / "airflow.db")
    try:
        return {r[0]: (r[1], r[2]) for r in con.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = 'daily_orders_by_region' "
            "AND run_id LIKE ?", (run_id_like,))}
    finally:
        con.close()


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    res = airflow_cli("db", "migrate", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    return home, env


def test_airflow_dags_test_of_the_quickstart_writes_pipectls_rows(tmp_path, airflow_home):
    """One scheduled interval (ds 2026-04-04) run by pipectl (backfill) and by `airflow dags test`
    in two copies of the quickstart, extract failing its first try in both: the same rows, the same
    tries. Then a param that leaves clean_orders no rows: its exit 3 is in no_retry_exit_codes, so
    both fail it after one try and the run fails."""
    home, base_env = airflow_home
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FLAKY)
    projects = {}
    for who in ("pipectl", "airflow"):
        projects[who] = tmp_path / who / "quickstart"
        shutil.copytree(QUICKSTART, projects[who], ignore=shutil.ignore_patterns(".pipectl", "data", "warehouse.db"))
        (tmp_path / who / "marks").mkdir()
    flaky = {"PYTHONPATH": str(hooks), "PIPECTL_FLAKY": "extract.py"}

    ds = "2026-04-04"
    res = run_cli("--project", projects["pipectl"], "--now", "2026-04-05T12:00:00Z", "backfill",
                  "daily_orders_by_region", "--start", ds, "--end", ds, "--wait",
                  env={**flaky, "PIPECTL_FLAKY_DIR": str(tmp_path / "pipectl" / "marks")}, timeout=300)
    assert res.returncode == 0, res.stderr
    res = run_cli("--project", projects["pipectl"], "runs", "daily_orders_by_region", "--json")
    (ours,) = json.loads(res.stdout)
    assert (ours["ds"], ours["state"], ours["logical_date"]) == (ds, "success", "2026-04-04T09:00:00+00:00")
    assert ours["tasks"]["extract_orders"]["tries"] == 2

    dags = tmp_path / "dags"
    export(projects["airflow"], dags)
    env = {**base_env, **flaky, "PIPECTL_FLAKY_DIR": str(tmp_path / "airflow" / "marks"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    res = airflow_cli("pools", "import", str(dags / "pipectl_pools.json"), env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    con = sqlite3.connect(home / "airflow.db")
    assert con.execute("SELECT slots FROM slot_pool WHERE pool = 'warehouse'").fetchall() == [(1,)]
    con.close()
    res = airflow_cli("dags", "test", "daily_orders_by_region", ours["logical_date"], env=env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    tis = task_instances(home, "manual__%")
    assert tis["extract_orders"] == ("success", 2)  # the first try failed, the retry succeeded
    assert tis["clean_orders"] == ("success", 1) and tis["aggregate_orders"] == ("success", 1)
    assert tis[WATCHER][0] == "skipped"
    ours_rows = rows(projects["pipectl"] / "warehouse.db", ds)
    assert ours_rows and rows(projects["airflow"] / "warehouse.db", ds) == ours_rows

    # no retry on exit 3: the same param in both
    huge = "1000000000"
    res = run_cli("--project", projects["pipectl"], "--now", "2026-04-05T12:00:00Z", "trigger",
                  "daily_orders_by_region", "--date", "2026-04-02", "--param", f"min_amount={huge}", "--wait",
                  env={"PIPECTL_FLAKY": ""}, timeout=300)
    assert res.returncode == 1
    failed = [r for r in json.loads(run_cli("--project", projects["pipectl"], "runs", "daily_orders_by_region",
                                            "--json").stdout) if r["state"] == "failed"]
    assert [(r["tasks"]["clean_orders"]["tries"], r["tasks"]["clean_orders"]["exit_code"],
             r["tasks"]["aggregate_orders"]["state"]) for r in failed] == [(1, 3, "upstream_failed")]
    con = sqlite3.connect(home / "airflow.db")
    con.execute("DELETE FROM task_instance WHERE dag_id = 'daily_orders_by_region'")
    con.execute("DELETE FROM dag_run WHERE dag_id = 'daily_orders_by_region'")
    con.commit()
    con.close()
    res = airflow_cli("dags", "test", "daily_orders_by_region", "2026-04-02T09:00:00+00:00", "-c",
                      json.dumps({"min_amount": huge}), env={**env, "PIPECTL_FLAKY": ""})
    tis = task_instances(home, "manual__%")
    assert tis["clean_orders"] == ("failed", 1), (res.stdout + res.stderr)[-3000:]
    assert tis["aggregate_orders"][0] == "upstream_failed"
    con = sqlite3.connect(home / "airflow.db")
    (state,) = con.execute("SELECT state FROM dag_run WHERE dag_id = 'daily_orders_by_region'").fetchone()
    con.close()
    assert state == "failed"
