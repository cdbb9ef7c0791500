"""pipectl metrics: Prometheus text format, parsed by the reference parser.

prometheus_client (test extra) is the parser node_exporter's ecosystem uses;
an independent implementation catches format mistakes a home-made parser
written alongside the exporter would share.
"""
from __future__ import annotations

from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from conftest import call_cli, make_project

OK = """
schedule: null
tasks:
  a:
    run: echo a
"""
BAD = """
schedule: null
tasks:
  boom:
    run: exit 3
"""
NOW = "2026-04-05T03:00:00Z"


def _samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "project")))] = s.value
    return out


def test_metrics_parse_and_values(tmp_path):
    proj = make_project(tmp_path, {"good": OK, "bad": BAD})
    assert call_cli("--project", proj, "--now", NOW, "trigger", "good", "--date", "2026-04-04", "--wait").returncode == 0
    assert call_cli("--project", proj, "--now", NOW, "trigger", "bad", "--date", "2026-04-03", "--wait").returncode == 1
    r = call_cli("--project", proj, "--now", NOW, "metrics")
    assert r.returncode == 0, r.stderr
    fams = {f.name: f for f in text_string_to_metric_families(r.stdout)}
    assert {"pipectl_runs", "pipectl_last_success_timestamp_seconds", "pipectl_last_run_duration_seconds",
            "pipectl_task_instances", "pipectl_last_tick_timestamp_seconds"} <= set(fams)
    assert all(f.type == "gauge" and f.documentation for f in fams.values())
    s = _samples(r.stdout)
    assert s[("pipectl_runs", (("pipeline", "good"), ("state", "success")))] == 1
    assert s[("pipectl_runs", (("pipeline", "good"), ("state", "failed")))] == 0
    assert s[("pipectl_runs", (("pipeline", "bad"), ("state", "failed")))] == 1
    assert ("pipectl_last_success_timestamp_seconds", (("pipeline", "good"),)) in s
    assert ("pipectl_last_success_timestamp_seconds", (("pipeline", "bad"),)) not in s
    ts = s[("pipectl_last_success_timestamp_seconds", (("pipeline", "good"),))]
    assert 1775358000 <= ts < 1775358000 + 60  # the fake clock's 2026-04-05T03:00:00Z
    assert 0 <= s[("pipectl_last_run_duration_seconds", (("pipeline", "bad"), ("state", "failed")))] < 30
    assert s[("pipectl_task_instances", (("pipeline", "good"), ("state", "running")))] == 0
    assert s[("pipectl_task_instances", (("pipeline", "good"), ("state", "waiting")))] == 0
    # the sla_misses table exists in this schema, so the family is there
    assert s[("pipectl_sla_misses", (("pipeline", "good"),))] == 0
    assert r.stdout.count("# HELP ") == r.stdout.count("# TYPE ") == len(fams)

    out = tmp_path / "textfile" / "pipectl.prom"
    out.parent.mkdir()
    r2 = call_cli("--project", proj, "--now", NOW, "metrics", "--output", out)
    assert r2.returncode == 0 and r2.stdout == ""
    assert list(out.parent.iterdir()) == [out]  # no temp file left behind
    assert set(_samples(out.read_text())) == set(s)


def test_waiting_and_running_counts_and_no_sla_table(tmp_path):
    from pipectl.spec.config import load_config
    from pipectl.ops.metrics import collect
    from pipectl.engine.step import Clock, Engine
    from pipectl.engine.tick import open_store, refresh_pipelines
    from datetime import datetime, timezone

    proj = make_project(tmp_path, {"two": "schedule: null\ntasks:\n  a:\n    run: echo a\n  b:\n    run: echo b\n    needs: [a]\n"})
    config = load_config(proj)
    store = open_store(config)
    try:
        clock = Clock.at(datetime(2026, 4, 5, 3, tzinfo=timezone.utc))
        pipelines, _ = refresh_pipelines(config, store, clock.now())
        engine = Engine(config, store, clock)
        engine.create_run(pipelines["two"], datetime(2026, 4, 4, tzinfo=timezone.utc), run_type="manual")
        s = _samples(collect(config, store))
        assert s[("pipectl_task_instances", (("pipeline", "two"), ("state", "waiting")))] == 2
        assert s[("pipectl_runs", (("pipeline", "two"), ("state", "queued")))] == 1
        store.conn.execute("DROP TABLE sla_misses")
        text = collect(config, store)
        assert "pipectl_sla_misses" not in text
        # label values are escaped: quotes, backslashes, newlines
        weird = replace(config, root='/srv/we"ird\\dir\nx')
        fams = list(text_string_to_metric_families(collect(weird, store)))
        assert {s.labels["project"] for f in fams for s in f.samples} == {'/srv/we"ird\\dir\nx'}
    finally:
        store.close()


DAILY = """
schedule: "0 2 * * *"
start_date: 2026-04-04
tasks:
  a: {run: "true"}
"""


def test_metrics_file_is_rewritten_by_each_full_tick_and_left_alone_by_a_no_op_one(tmp_path):
    from harness import Project
    project = Project(tmp_path, {"d": DAILY}, toml_extra="")
    toml = project.path("pipectl.toml")
    toml.write_text(toml.read_text().replace("[pipectl]\n", '[pipectl]\nmetrics_file = "out/pipectl.prom"\n'))
    project.path("out").mkdir()
    project.ok("tick", "--wait", now="2026-04-05T03:00:00Z")
    prom = project.path("out", "pipectl.prom")
    fams = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert [(s.labels["version"], s.value) for s in fams["pipectl_build_info"].samples] == [
        (__import__("importlib.metadata").metadata.version("pipectl"), 1.0)]
    runs = {s.labels["state"]: s.value for s in fams["pipectl_runs"].samples if s.labels["pipeline"] == "d"}
    assert runs["success"] == 1.0
    assert oct(prom.stat().st_mode & 0o777) == "0o644"  # a collector reads it as another user
    before = prom.stat().st_mtime_ns
    project.ok("tick", now="2026-04-05T03:00:30Z")  # nothing due: the no-op path
    assert prom.stat().st_mtime_ns == before


def test_a_metrics_file_that_cannot_be_written_warns_and_never_fails_the_tick(tmp_path):
    from harness import Project
    project = Project(tmp_path, {"d": DAILY})
    toml = project.path("pipectl.toml")
    toml.write_text(toml.read_text().replace("[pipectl]\n", '[pipectl]\nmetrics_file = "missing/dir/p.prom"\n'))
    r = project.cli("tick", "--wait", now="2026-04-05T03:00:00Z")
    assert r.returncode == 0
    assert "pipectl: warning: cannot write metrics_file " in r.stderr and "missing/dir/p.prom" in r.stderr
    assert [str(x.state) for x in project.runs("d")] == ["success"]


def test_a_bad_metrics_file_value_is_a_config_error(tmp_path):
    from harness import Project
    project = Project(tmp_path, {"d": DAILY})
    toml = project.path("pipectl.toml")
    toml.write_text(toml.read_text().replace("[pipectl]\n", "[pipectl]\nmetrics_file = 3\n"))
    r = project.cli("tick")
    assert r.returncode == 2
    assert r.stderr.strip().endswith("metrics_file must be a file path, got 3")
