"""prune --older-than, retention in pipectl.toml, and the tick log's rotation."""
from __future__ import annotations

import os
import stat

from conftest import call_cli, make_project

DAILY = """
schedule: "0 0 * * *"
start_date: 2026-01-01
catchup: true
tasks:
  a:
    run: echo a
  b:
    run: echo b
    needs: [a]
"""


def _db(proj):
    from pipectl.spec.config import load_config
    from pipectl.state.store import Store
    return Store(load_config(proj).state_db, create=False)


def _counts(proj):
    s = _db(proj)
    try:
        q = lambda sql: s.conn.execute(sql).fetchone()[0]  # noqa: E731
        return {t: q(f"SELECT count(*) FROM {t}") for t in ("runs", "task_instances", "tries")} | {
            "run_events": q("SELECT count(*) FROM events WHERE run IS NOT NULL")}, \
            [r.ds for r in s.runs_for("daily")]
    finally:
        s.close()


def _setup(tmp_path, toml_extra=""):
    proj = make_project(tmp_path / "proj", {"daily": DAILY}, toml_extra)
    # four old runs (ds 01-01..01-04), all finished on 2026-01-05
    r = call_cli("--project", proj, "--now", "2026-01-05T00:00:30Z", "tick", "--wait")
    assert r.returncode == 0, r.stderr
    return proj


def test_prune_deletes_old_finished_runs_and_their_logs(tmp_path):
    proj = _setup(tmp_path)
    # catchup would create every day since; a recent run is enough for "kept"
    (proj / "pipelines" / "daily.yaml").write_text(DAILY.replace("catchup: true", "catchup: false"))
    assert call_cli("--project", proj, "--now", "2026-03-10T00:00:30Z", "tick", "--wait").returncode == 0
    counts, ds = _counts(proj)
    assert ds == ["2026-03-09", "2026-01-04", "2026-01-03", "2026-01-02", "2026-01-01"]
    assert counts["runs"] == 5 and counts["task_instances"] == 10 and counts["tries"] == 10
    assert counts["run_events"] > 0
    logs = proj / ".pipectl" / "logs" / "daily"
    assert len(list(logs.iterdir())) == 5

    dry = call_cli("--project", proj, "--now", "2026-03-10T01:00:00Z", "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0
    assert dry.stdout.splitlines()[-1] == "would delete 4 run(s)"
    assert _counts(proj)[0]["runs"] == 5

    r = call_cli("--project", proj, "--now", "2026-03-10T01:00:00Z", "prune", "--older-than", "30d")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "deleted 4 run(s), 4 log dir(s)"
    assert sorted(r.stdout.splitlines()[:-1]) == [f"deleted scheduled__2026-01-0{d}T00:00:00+00:00" for d in (1, 2, 3, 4)]
    counts, ds = _counts(proj)
    assert ds == ["2026-03-09"]
    assert counts["runs"] == 1 and counts["task_instances"] == 2 and counts["tries"] == 2
    s = _db(proj)
    try:
        keep = s.runs_for("daily")[0].id
        assert s.conn.execute("SELECT count(*) FROM events WHERE run IS NOT NULL AND run != ?", (keep,)).fetchone()[0] == 0
    finally:
        s.close()
    assert [p.name for p in logs.iterdir()] == ["scheduled__2026-03-09T000000_0000"]

    again = call_cli("--project", proj, "--now", "2026-03-10T01:00:00Z", "prune", "--older-than", "30d")
    assert again.stdout.strip() == "deleted 0 run(s), 0 log dir(s)"


def test_prune_usage_errors(tmp_path):
    proj = make_project(tmp_path / "proj", {"daily": DAILY})
    r = call_cli("--project", proj, "prune")
    assert r.returncode == 2 and "--older-than" in r.stderr
    r = call_cli("--project", proj, "prune", "--older-than", "ninety days")
    assert r.returncode == 2 and "bad --older-than" in r.stderr


def test_retention_makes_ticks_prune_hourly(tmp_path):
    from pipectl.spec.config import load_config
    from pipectl.ops.retention import maybe_prune
    proj = _setup(tmp_path, 'retention = "30d"\n')
    (proj / "pipelines" / "daily.yaml").write_text(DAILY.replace("catchup: true", "catchup: false"))
    r = call_cli("--project", proj, "--now", "2026-03-10T00:00:30Z", "tick", "--wait")
    assert r.returncode == 0, r.stderr
    assert "pruned: 4 run(s) older than 2.592e+06s" in r.stdout.splitlines()
    counts, ds = _counts(proj)
    assert ds == ["2026-03-09"]
    s = _db(proj)
    try:
        last = float(s.get_meta("last_prune"))
        assert abs(last - 1773100830) < 5  # the fake clock's 2026-03-10T00:00:30Z
        config = load_config(proj)
        assert maybe_prune(config, s, last + 3599) is None  # within the hour: not again
        assert maybe_prune(config, s, last + 3601).runs == []
        assert float(s.get_meta("last_prune")) == last + 3601
    finally:
        s.close()
    # the tick log records it
    tl = call_cli("--project", proj, "logs", "--tick")
    assert any(l.endswith("pruned: 4 run(s) older than 2.592e+06s") for l in tl.stdout.splitlines())


def test_tick_log_rotates_and_reads_both_generations(tmp_path):
    from pipectl.state import ticklog
    from pipectl.spec.config import load_config
    proj = make_project(tmp_path / "proj", {"daily": DAILY})
    config = load_config(proj)
    ticklog.append(config, 1775358000.0, ["created: daily 2026-04-04T00:00:00+00:00", "launched: x"], max_bytes=60)
    p = ticklog.path(config)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(config.state_dir).st_mode) == 0o700
    assert open(p).read() == ("2026-04-05T03:00:00+00:00 created: daily 2026-04-04T00:00:00+00:00\n"
                              "2026-04-05T03:00:00+00:00 launched: x\n")
    ticklog.append(config, 1775358060.0, ["reaped: y"], max_bytes=60)  # over 60 bytes: rotate first
    assert open(p + ".1").read().count("\n") == 2
    assert open(p).read() == "2026-04-05T03:01:00+00:00 reaped: y\n"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert ticklog.read(config).splitlines()[-1] == "2026-04-05T03:01:00+00:00 reaped: y"
    assert len(ticklog.read(config).splitlines()) == 3
    assert ticklog.read(config, tail=1) == "2026-04-05T03:01:00+00:00 reaped: y\n"
    ticklog.append(config, 1775358120.0, [])  # nothing done: nothing written
    assert len(ticklog.read(config, tail=None).splitlines()) == 3
    # a file created by cron's shell with umask 022 is made private on the next append
    os.chmod(p, 0o644)
    ticklog.append(config, 1775358180.0, ["lost: z"])
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


def test_tick_command_writes_the_tick_log(tmp_path):
    proj = make_project(tmp_path / "proj", {"daily": DAILY})
    assert call_cli("--project", proj, "--now", "2026-01-02T00:00:30Z", "tick", "--wait").returncode == 0
    r = call_cli("--project", proj, "logs", "--tick")
    lines = r.stdout.splitlines()
    # stamped with the real time the tick ran (the CLI passes time.time())
    assert [l.split(" ", 1)[1] for l in lines][:1] == ["created: daily 2026-01-01T00:00:00+00:00"], r.stdout


def test_prune_reports_the_tries_of_runs_of_two_pipelines_with_one_run_id(tmp_path):
    # a manual run's id is its type and logical date only: two pipelines' runs for the same
    # moment share it, and prune's report must still name each run's own tries
    flaky = "schedule: null\nstart_date: 2026-01-01\ntasks:\n  a:\n    run: \"false\"\n    retries: 1\n    retry_delay: 0\n"
    fine = "schedule: null\nstart_date: 2026-01-01\ntasks:\n  a:\n    run: \"true\"\n  b:\n    run: \"true\"\n"
    proj = make_project(tmp_path / "proj", {"flaky": flaky, "fine": fine})
    for p in ("flaky", "fine"):
        r = call_cli("--project", proj, "--now", "2026-01-05T00:00:00Z", "run", p, "--date", "2026-01-02T05:00:00", "--wait")
        assert r.returncode in (0, 1), r.stderr
    rid = "manual__2026-01-02T05:00:00+00:00"
    r = call_cli("--project", proj, "--now", "2026-03-10T00:00:00Z", "--json", "prune", "--older-than", "30d")
    assert r.returncode == 0, r.stderr
    import json
    got = json.loads(r.stdout)
    assert sorted(got["runs"]) == [rid, rid] and got["log_dirs"] == 2
    assert got["tries"] == {"flaky": {rid: [["a", 1], ["a", 2]]}, "fine": {rid: [["a", 1], ["b", 1]]}}
    assert _counts(proj)[0] == {"runs": 0, "task_instances": 0, "tries": 0, "run_events": 0}
