"""`pipectl export airflow` without Airflow: what it writes, what it refuses and where, what it warns.
Airflow's own checks of the written DAGs are in tests/airflow/ (they need the `airflow` extra)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from conftest import QUICKSTART, REPO, call_cli, make_project
from pipectl.export.airflow import WARNING_HEAD, jinja_string, support_source
from pipectl.spec.templates import shell_command

NOW = "2026-04-05T12:00:00Z"
PROBE = REPO / "tests" / "fixtures" / "export_probe"


def export(project, out, *args, env=None):
    # from the project's directory: spec files are shown relative to it, as `validate` shows them
    return call_cli("--project", project, "--now", NOW, "export", "airflow", *args, "--out", out, env=env, cwd=project)


def test_quickstart_exports_a_dag_the_support_module_and_its_pools(tmp_path):
    out = tmp_path / "dags"
    res = export(QUICKSTART, out)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["daily_orders_by_region.py", "pipectl_airflow.py",
                                                     "pipectl_pools.json"]
    assert res.stdout.splitlines() == [f"wrote {out / n}" for n in ("pipectl_airflow.py", "pipectl_pools.json",
                                                                    "daily_orders_by_region.py")]
    assert json.loads((out / "pipectl_pools.json").read_text()) == {
        "warehouse": {"slots": 1, "description": "pipectl pool", "include_deferred": False}}
    assert (out / "pipectl_airflow.py").read_text() == support_source()
    text = (out / "daily_orders_by_region.py").read_text()
    ast.parse(text)
    # nothing left to Airflow's defaults
    for line in ("schedule=CronDataIntervalTimetable('0 2 * * *', timezone='America/Los_Angeles'),",
                 "start_date=pendulum.datetime(2026, 4, 1, 0, 0, 0, tz='America/Los_Angeles'),",
                 "end_date=None,", "catchup=True,", "max_active_runs=1,",
                 "skip_on_exit_code=None,", "append_env=True,", "no_retry_exit_codes=(3,),",
                 "retry_policy=pa.ExactBackoff(10, True, 300),", "execution_timeout=datetime.timedelta(seconds=120),",
                 "pool='warehouse',", "weight_rule='absolute',", "outlets=[Asset('raw.orders')],",
                 "'PIPECTL_DS': '{{ pipectl.ds(logical_date) }}',"):
        assert line in text, line
    # the command is pipectl's own: the value travels in the environment
    command, _ = shell_command("python3 scripts/extract.py --date {{ ds }}", {"ds": "x"})
    assert f"bash_command={command!r}," in text
    assert command == 'python3 scripts/extract.py --date "${PIPECTL_DS}"'
    # operational differences: a warning block in the file and one stderr line each
    assert WARNING_HEAD in text
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("pipectl: warning: daily_orders_by_region: ")]
    assert [w.split(": ")[3].split(":")[0] for w in warnings] == ["run ids", "shell", "timeout"]


def test_the_feature_probe_exports_faithfully_and_no_secret_reaches_a_file(tmp_path):
    out = tmp_path / "dags"
    res = export(PROBE, out, env={"PROBE_TOKEN": "s3cr3t-token-value"})
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.glob("*.py"))
    assert names == ["batches.py", "consumer.py", "dst.py", "dst_half_hourly.py", "pipectl_airflow.py", "probe.py",
                     "producer.py"]
    for p in out.glob("*.py"):
        ast.parse(p.read_text())
        assert "s3cr3t-token-value" not in p.read_text()
    probe = (out / "probe.py").read_text()
    assert "'TOKEN': '${PROBE_TOKEN}'," in probe  # a reference, resolved on the worker when a try starts
    assert ").expand(pipectl_item=['us-east-1', 'eu west;1'])" in probe
    assert ").expand(pipectl_item=t['fan_cmd.items'].output)" in probe
    assert "execution_date_fn=pa.CoveringRun('America/Los_Angeles', 'America/Los_Angeles', cron='0 4 * * *', " \
           "cron_tz='America/Los_Angeles', delta=86400)," in probe
    consumer = (out / "consumer.py").read_text()
    assert "schedule=CronDataIntervalTimetable('0 0 * * *', timezone='Europe/Berlin')," in consumer
    assert "t['pipectl.asset.probe.daily'] >> t['build']" not in consumer
    assert "[t['pipectl.asset.probe.daily'], t['pipectl.asset.probe.batches']] >> t['build']" in consumer
    warned = {ln.split(": ")[3].split(":")[0] for ln in res.stderr.splitlines() if ": probe: " in ln}
    assert warned == {"run ids", "shell", "timeout", "secrets", "hooks"}


REFUSED = [
    # (what, spec, line, col, message head)
    ("file schedule", """\
        schedule: {file: "incoming/*.csv"}
        tasks: {a: {run: "echo {{ params.file }}"}}
        """, 1, 11, "cannot export schedule {file: 'incoming/*.csv'}: Airflow has no run per new file"),
    ("list of schedules", """\
        start_date: 2026-01-01
        schedule:
          - "0 5 * * *"
          - {every: 1h}
        tasks: {a: {run: "true"}}
        """, 3, 3, "cannot export a list of schedules: one Airflow DAG has one timetable"),
    ("asset mode any", """\
        schedule: {assets: [x.done], mode: any}
        tasks: {a: {run: "true", produces: [x.done]}}
        """, 1, 36, "cannot export schedule {assets: ..., mode: any}: the faithful Airflow form waits"),
    ("task sla", """\
        schedule: "0 5 * * *"
        tasks:
          a:
            run: "true"
            sla: 30m
        """, 5, 10, "cannot export task sla (a): Airflow 3 dropped SLAs"),
    ("task sla from defaults", """\
        schedule: "0 5 * * *"
        defaults: {sla: 1h}
        tasks: {a: {run: "true"}}
        """, 2, 17, "cannot export task sla (a): Airflow 3 dropped SLAs"),
    ("fresh_by", """\
        schedule: "0 5 * * *"
        assets:
          x.done: {fresh_by: "06:00"}
        tasks: {a: {run: "true", produces: [x.done]}}
        """, 3, 22, "cannot export fresh_by of asset 'x.done': Airflow has no deadline"),
    ("every without start_date", """\
        schedule: {every: 15m}
        tasks: {a: {run: "true"}}
        """, 1, 19, "cannot export every: without start_date: pipectl anchors the intervals at the first tick"),
    ("a fixed time in the skipped hour", """\
        schedule: "30 2 * * *"
        timezone: America/New_York
        start_date: 2026-03-01
        tasks: {a: {run: "true"}}
        """, 1, 11, "cannot export cron '30 2 * * *': 02:30 does not exist on 2026-03-08 in America/New_York"),
    ("a fixed time in the repeated hour", """\
        schedule: "0 1 * * *"
        timezone: America/Los_Angeles
        tasks: {a: {run: "true"}}
        """, 1, 11, "cannot export cron '0 1 * * *': 01:00 happens twice on 2026-11-01 in America/Los_Angeles"),
    ("cron's '*' day rule", """\
        schedule: "0 5 */2 * 1"
        tasks: {a: {run: "true"}}
        """, 1, 11, "cannot export cron '0 5 */2 * 1': with both day fields restricted"),
]


@pytest.mark.parametrize("what,spec,line,col,head", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_refused_feature_exits_2_at_its_position_and_writes_nothing(tmp_path, what, spec, line, col, head):
    project = make_project(tmp_path / "p", {"p": spec})
    out = tmp_path / "dags"
    res = export(project, out)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0].startswith(f"pipelines/p.yaml:{line}:{col}: {head}"), lines
    assert len(lines) == 1  # one line per refusal, nothing else
    assert not out.exists()
    assert "Traceback" not in res.stderr

    res = export(project, out, "--lossy")
    assert res.returncode == 0, res.stderr
    text = (out / "p.py").read_text()
    ast.parse(text)
    block = text[text.index(WARNING_HEAD):text.index("from __future__")]
    message = head.split("cannot export ", 1)[1]
    assert message.split(":")[0] in block and "exported as" in " ".join(block.split())
    assert any(ln.startswith(f"pipectl: warning: p: {message.split(':')[0]}") for ln in res.stderr.splitlines())


def test_three_cadences_needs_lossy_for_its_fallback_list_and_fresh_by(tmp_path):
    res = export(REPO / "examples" / "three_cadences", tmp_path / "dags")
    assert res.returncode == 2
    refused = [ln.split(": cannot export ")[1].split(":")[0] for ln in res.stderr.splitlines()
               if ": cannot export " in ln]
    assert refused == ["a list of schedules", "fresh_by of asset 'mart.daily_revenue_by_account'"]
    assert res.stderr.splitlines()[0].startswith("pipelines/daily_revenue_by_account.yaml:8:3: cannot export")
    res = export(REPO / "examples" / "three_cadences", tmp_path / "dags", "--lossy")
    assert res.returncode == 0, res.stderr
    mart = (tmp_path / "dags" / "daily_revenue_by_account.py").read_text()
    assert "schedule=CronDataIntervalTimetable('0 0 * * *', timezone='UTC')," in mart  # the asset form
    assert "SLA: the pipeline's sla/on_sla_miss" in " ".join(mart.split("#"))


@pytest.mark.parametrize("args,code,message", [
    (("nope",), 2, "unknown pipeline 'nope'"),
    (("--airflow", "2"), 2, "unsupported --airflow '2': expected one of 3"),
])
def test_bad_usage_exits_2_and_writes_nothing(tmp_path, args, code, message):
    out = tmp_path / "dags"
    res = call_cli("--project", QUICKSTART, "export", "airflow", *args, "--out", out)
    assert res.returncode == code
    assert res.stderr.strip() == f"pipectl: error: {message}" or message in res.stderr
    assert not out.exists()


def test_missing_out_is_bad_usage(tmp_path):
    res = call_cli("--project", QUICKSTART, "export", "airflow")
    assert res.returncode == 2 and "missing --out DIR" in res.stderr


def test_an_invalid_spec_is_reported_by_the_validator_and_nothing_is_written(tmp_path):
    project = make_project(tmp_path / "p", {"good": 'schedule: "0 5 * * *"\ntasks: {a: {run: "true"}}\n',
                                            "bad": 'schedule: "0 25 * * *"\ntasks: {a: {run: "true"}}\n'})
    out = tmp_path / "dags"
    res = export(project, out)
    assert res.returncode == 1
    assert res.stderr.splitlines()[0].startswith("pipelines/bad.yaml:1:11: ")
    assert not out.exists()
    res = export(project, out, "good")  # the valid one alone is fine
    assert res.returncode == 0 and (out / "good.py").exists() and not (out / "bad.py").exists()


@given(st.text())
def test_a_jinja_string_literal_reads_back_exactly(text):
    # Jinja's lexer reads a string literal's escapes with Python's unicode-escape codec
    src = jinja_string(text)
    assert src[0] == src[-1] == "'" and "{" not in src and "}" not in src and "\n" not in src
    assert src[1:-1].encode("ascii", "backslashreplace").decode("unicode-escape") == text
