"""Bounded catch-up: after downtime only the missed intervals inside `catchup: {window: ...}` and/or
the newest `max_catchup_runs` run, oldest first; the older ones are skipped once, recorded, and
shown by status, explain and the tick report, and backfill can still run them."""
from __future__ import annotations

import pytest

from harness import Project, utc

DAILY = """\
schedule: "0 2 * * *"
start_date: 2026-04-01
max_active_runs: 20
{bound}
tasks:
  work: {{run: "true"}}
"""


def spec(bound: str) -> str:
    return DAILY.format(bound=bound)


def logical_dates(project: Project, name: str = "p") -> list[str]:
    return [r.logical_date.isoformat() for r in project.runs(name)]


def skips(project: Project) -> list[dict]:
    return [dict(r) for r in project.q("SELECT pipeline, first, last, count, capped, bound FROM catchup_skips ORDER BY id")]


def skip_events(project: Project) -> list[str]:
    return [r[0] for r in project.q("SELECT message FROM events WHERE kind = 'catchup_skipped' ORDER BY id")]


def day(d: int) -> str:
    return f"2026-04-{d:02d}T02:00:00+00:00"


def test_a_window_runs_the_intervals_that_ended_within_it_oldest_first_and_records_the_rest_once(tmp_path):
    project = Project(tmp_path, {"p": spec("catchup: {window: 3d}")})
    result = project.tick("2026-04-10T12:00:00Z")
    # the threshold is 04-07 12:00: the interval of 04-07 ends after it, the one of 04-06 before it
    assert logical_dates(project) == [day(7), day(8), day(9)]
    assert result.report.created == [f"p {day(7)}", f"p {day(8)}", f"p {day(9)}"]
    assert skips(project) == [{"pipeline": "p", "first": day(1), "last": day(6), "count": 6, "capped": 0,
                               "bound": "catchup window 3d"}]
    message = ("catch-up skipped 6 missed runs, 2026-04-01 02:00 to 2026-04-06 02:00 (catchup window 3d); "
               "`pipectl backfill p --start 2026-04-01 --end 2026-04-06` runs them")
    assert skip_events(project) == [message]
    assert result.report.skipped == [f"p {message}"]
    # later ticks neither create the skipped runs nor report them again
    project.tick("2026-04-10T12:01:00Z")
    project.tick("2026-04-11T03:00:00Z")
    assert logical_dates(project) == [day(7), day(8), day(9), day(10)]
    assert len(skips(project)) == 1 and len(skip_events(project)) == 1


def test_max_catchup_runs_alone_turns_catch_up_on_and_keeps_the_newest(tmp_path):
    project = Project(tmp_path, {"p": spec("max_catchup_runs: 2")})
    project.tick("2026-04-10T12:00:00Z")
    assert logical_dates(project) == [day(8), day(9)]
    assert skips(project)[0] | {} == {"pipeline": "p", "first": day(1), "last": day(7), "count": 7, "capped": 0,
                                      "bound": "max_catchup_runs 2"}


def test_with_both_bounds_the_stricter_one_wins(tmp_path):
    project = Project(tmp_path, {"p": spec("catchup: {window: 3d}\nmax_catchup_runs: 2"),
                                 "q": spec("catchup: {window: 2d}\nmax_catchup_runs: 5")})
    project.tick("2026-04-10T12:00:00Z")
    assert logical_dates(project, "p") == [day(8), day(9)]
    assert logical_dates(project, "q") == [day(8), day(9)]
    assert [s["bound"] for s in skips(project)] == ["catchup window 3d, max_catchup_runs 2"] * 1 + \
        ["catchup window 2d, max_catchup_runs 5"]


def test_a_window_shorter_than_one_interval_still_runs_the_latest_like_catchup_false(tmp_path):
    project = Project(tmp_path, {"p": spec("catchup: {window: 1h}"), "f": spec("catchup: false")})
    project.tick("2026-04-10T12:00:00Z")
    assert logical_dates(project, "p") == [day(9)] == logical_dates(project, "f")
    assert [(s["pipeline"], s["count"]) for s in skips(project)] == [("p", 8)]  # catchup: false records nothing


def test_unbounded_catchup_is_unchanged(tmp_path):
    project = Project(tmp_path, {"p": spec("catchup: true")})
    project.tick("2026-04-05T12:00:00Z")
    assert logical_dates(project) == [day(1), day(2), day(3), day(4)]
    assert skips(project) == []


def test_sub_daily_window_counts_intervals_by_their_end(tmp_path):
    hourly = """\
        schedule: "0 * * * *"
        start_date: 2026-04-01
        catchup: {window: 5h}
        max_active_runs: 20
        tasks:
          work: {run: "true"}
    """
    project = Project(tmp_path, {"h": hourly})
    project.tick("2026-04-02T10:30:00Z")
    # 05:30 is the threshold: [05:00, 06:00) ends after it; [09:00, 10:00) is the newest closed one
    assert logical_dates(project, "h") == [f"2026-04-02T{h:02d}:00:00+00:00" for h in range(5, 10)]
    assert skips(project)[0]["first"] == "2026-04-01T00:00:00+00:00"
    assert skips(project)[0]["last"] == "2026-04-02T04:00:00+00:00"
    assert skips(project)[0]["count"] == 29
    explained = project.ok("explain", "h", "--at", "2026-04-02T03:00:00Z", now="2026-04-02T10:31:00Z").stdout
    assert "was skipped by the bounded catch-up (catchup window 5h)" in explained
    assert "one of 29 missed runs it left out" in explained


QUICKSTART_LIKE = """\
schedule: "0 2 * * *"
timezone: America/Los_Angeles
start_date: 2026-04-01
catchup: {window: 3d}
max_active_runs: 1
tasks:
  extract: {run: "true"}
  load: {run: "true", needs: [extract]}
"""


def test_a_ten_day_pause_then_unpause_runs_three_days_and_says_what_it_skipped(tmp_path):
    project = Project(tmp_path, {"daily": QUICKSTART_LIKE})
    project.ok("tick", "--wait", now="2026-04-05T12:00:00Z")
    assert [r.ds for r in project.runs("daily")] == ["2026-04-02", "2026-04-03", "2026-04-04"]
    project.ok("pause", "daily", now="2026-04-05T12:00:00Z")
    # while paused, status previews the bound
    warn = project.ok("status", now="2026-04-15T11:00:00Z").stderr
    assert ("catch-up: unpausing daily creates 3 runs since 2026-04-12 (catchup window 3d; skips 7 older missed "
            "runs)") in warn
    project.ok("unpause", "daily", now="2026-04-15T12:00:00Z")
    project.ok("tick", "--wait", now="2026-04-15T12:01:00Z")
    runs = project.runs("daily")
    assert [(r.ds, str(r.state)) for r in runs][-3:] == [("2026-04-12", "success"), ("2026-04-13", "success"),
                                                         ("2026-04-14", "success")]
    assert len(runs) == 6
    # oldest first: with max_active_runs 1 each run began after the previous one ended
    starts = [r.start for r in runs[-3:]]
    assert starts == sorted(starts)
    skipped = [s for s in skips(project) if s["first"].startswith("2026-04-05")]
    assert skipped == [{"pipeline": "daily", "first": "2026-04-05T09:00:00+00:00",
                        "last": "2026-04-11T09:00:00+00:00", "count": 7, "capped": 0, "bound": "catchup window 3d"}]

    status = project.ok("status", now="2026-04-15T12:02:00Z").stdout
    assert "daily: 04-15 05:00 (1m ago): " in status  # the skip's time, in the pipeline's zone
    assert ("catch-up skipped 7 missed runs, 2026-04-05 02:00 to 2026-04-11 02:00 "
            "(catchup window 3d); `pipectl backfill daily --start 2026-04-05 --end 2026-04-11` runs them") \
        in " ".join(status.split())
    data = project.jcli("status", now="2026-04-15T12:02:00Z")
    assert [(k["first"], k["last"], k["count"]) for k in data[0]["catchup_skips"]] == [
        ("2026-04-05T09:00:00+00:00", "2026-04-11T09:00:00+00:00", 7)]  # the first tick's skip is 10 days old
    # a week later status no longer lists them; explain still knows
    assert "catch-up skipped" not in project.ok("status", now="2026-04-23T12:00:00Z").stdout
    why = " ".join(project.ok("explain", "daily", "-d", "2026-04-08", now="2026-04-23T12:00:00Z").stdout.split())
    assert "was skipped by the bounded catch-up (catchup window 3d)" in why
    assert "one of 7 missed runs it left out; `pipectl backfill daily --start 2026-04-08 --end 2026-04-08` runs it" in why
    why = " ".join(project.ok("explain", "daily", "-d", "2026-04-01", now="2026-04-23T12:00:00Z").stdout.split())
    assert "the only missed run it left out" in why

    # backfill still runs a skipped day
    project.ok("backfill", "daily", "--start", "2026-04-08", "--end", "2026-04-08", "--wait", now="2026-04-23T12:00:00Z")
    assert [(r.ds, r.run_type, str(r.state)) for r in project.runs("daily") if r.ds == "2026-04-08"] == [
        ("2026-04-08", "backfill", "success")]


def test_unpause_dry_run_and_explain_preview_the_bound_before_it_acts(tmp_path):
    project = Project(tmp_path, {"daily": QUICKSTART_LIKE})
    project.ok("tick", "--wait", now="2026-04-05T12:00:00Z")
    project.ok("pause", "daily", now="2026-04-05T12:00:00Z")
    preview = project.ok("unpause", "daily", "--dry-run", now="2026-04-15T12:00:00Z").stdout
    assert "would create 3 runs:" in preview and "2026-04-12T09:00:00+00:00" in preview
    why = " ".join(project.ok("explain", "daily", "-d", "2026-04-08", now="2026-04-15T12:00:00Z").stdout.split())
    assert "daily is paused, so no scheduled run is created; unpausing skips it (the catch-up is bounded by " \
           "catchup window 3d)" in why
    why = " ".join(project.ok("explain", "daily", "-d", "2026-04-13", now="2026-04-15T12:00:00Z").stdout.split())
    assert "unpausing creates it" in why
    assert skips(project)[1:] == []  # previews record nothing beyond the first tick's skip of 04-01


BAD = [
    ("catchup: {window: -1d}", "6:19", "'window': bad duration '-1d'"),
    ("catchup: {windw: 3d}", "6:11", "unknown key 'windw' in catchup"),
    ("catchup: {}", "6:10", "'catchup' as a mapping needs 'window'"),
    ("catchup: sometimes", "6:10", "'catchup' must be true or false, got string"),
    ("max_catchup_runs: 0", "6:19", "'max_catchup_runs' must be between 1 and 1000000, got 0"),
    ("catchup: false\nmax_catchup_runs: 3", "7:19", "'max_catchup_runs' bounds a catch-up, but this pipeline has "
                                                    "'catchup: false'"),
]


@pytest.mark.parametrize("bound, pos, message", BAD, ids=[b[0] for b in BAD])
def test_bad_bounds_get_one_line_at_their_position(tmp_path, bound, pos, message):
    text = "# a pipeline\n" + DAILY.replace("start_date: 2026-04-01\n", "start_date: 2026-04-01\n\n")
    project = Project(tmp_path, {"p": text.format(bound=bound)})
    r = project.cli("validate")
    assert r.returncode == 1
    lines = [line[line.index("pipelines/p.yaml:"):] for line in r.stderr.splitlines() if "pipelines/p.yaml:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"pipelines/p.yaml:{pos}: ") and message in lines[0], r.stderr
    assert not project.path(".pipectl", "state.db").exists()


def test_export_to_airflow_refuses_a_bounded_catch_up_at_its_key(tmp_path):
    project = Project(tmp_path, {"p": spec("catchup: {window: 3d}")})
    r = project.cli("export", "airflow", "--out", str(tmp_path / "dags"), now="2026-04-05T12:00:00Z")
    assert r.returncode == 2
    first = r.stderr.strip().splitlines()[0]
    assert first[first.index("pipelines/"):] == (
        "pipelines/p.yaml:4:10: cannot export a bounded catch-up (catchup window 3d): Airflow's catchup is all or "
        "nothing: after downtime it runs every missed interval, where pipectl runs only those within the bound")
    assert not (tmp_path / "dags").exists()
    r = project.cli("export", "airflow", "--lossy", "--out", str(tmp_path / "dags"), now="2026-04-05T12:00:00Z")
    assert r.returncode == 0, r.stderr
    assert "catchup=True," in (tmp_path / "dags" / "p.py").read_text()


def test_the_skip_range_is_stored_as_logical_dates(tmp_path):
    project = Project(tmp_path, {"p": spec("catchup: {window: 3d}")})
    project.tick("2026-04-10T12:00:00Z")
    with project.store() as store:
        [k] = store.catchup_skips("p")
        assert (k.first, k.last, k.count, k.capped) == (utc(day(1)), utc(day(6)), 6, False)
        assert store.catchup_skips("p", covering=day(3)) == [k]
        assert store.catchup_skips("p", covering=day(7)) == []
