"""The live view (`status --watch`, `top`): its view model, its frames at 60 and 100
columns, and the real thing in a terminal (tmux) including Ctrl-C.

One project holds the three situations an on-call engineer meets at once: a run
that failed, a run with a task running, a run with a task waiting on its retry.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness import cli, jcli, kill_session, make_project, ok, q, wait_for

UTC = timezone.utc
SPECS = {
    "nightly": """
        tasks:
          extract: {run: "echo extracted"}
          load_dims: {run: "echo loading; exit 3", needs: [extract]}
          report: {run: "echo report", needs: [load_dims]}
    """,
    "flaky": """
        tasks:
          call_api: {run: "echo boom; exit 4", retries: 2, retry_delay: 1h}
          store: {run: "echo stored", needs: [call_api]}
    """,
    "ingest": """
        sla: 2h
        tasks:
          fetch: {run: "sleep 120", sla: 1h}
          publish: {run: "echo published", needs: [fetch]}
    """,
}
T_FAIL = "2026-04-10T08:00:00Z"
T_RETRY = "2026-04-10T08:01:00Z"
T_RUN = "2026-04-10T08:02:00Z"
T_VIEW = "2026-04-10T08:03:30Z"


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """nightly failed (load_dims exit 3), flaky's call_api up_for_retry, ingest's fetch running."""
    root = make_project(tmp_path_factory.mktemp("live"), SPECS)
    r = cli(root, "trigger", "nightly", "--date", "2026-04-09", "--wait", now=T_FAIL)
    assert r.returncode == 1, r.stderr
    ok(root, "trigger", "flaky", "--date", "2026-04-09", now=T_RETRY)
    assert wait_for(lambda: q(root, "SELECT state FROM task_instances WHERE task = 'call_api'")[0][0] == "up_for_retry",
                    timeout=20)
    ok(root, "trigger", "ingest", "--date", "2026-04-09", now=T_RUN)
    assert wait_for(lambda: q(root, "SELECT pid FROM tries JOIN task_instances ti ON ti.id = tries.ti "
                                    "WHERE ti.task = 'fetch' AND tries.state = 'running'"), timeout=20)
    yield root
    for row in q(root, "SELECT pid FROM tries WHERE state IN ('starting', 'running') AND pid IS NOT NULL"):
        kill_session(row[0])


def model(root, now: str, **kw) -> dict:
    from pipectl.spec.config import load_config
    from pipectl.cli.live import build, open_readonly
    config = load_config(str(root))
    store = open_readonly(config)
    try:
        return build(store, config, epoch(now), **kw)
    finally:
        store.close()


def frame_text(m: dict, width: int) -> str:
    from rich.console import Console

    from pipectl.cli.live import frame
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, emoji=False, highlight=False).print(frame(m, width, live=False))
    return buf.getvalue()


def seconds_blurred(text: str) -> str:
    """Two processes read the clock a few ms apart: a countdown may differ in its last second."""
    return re.sub(r"\d+s\b", "Ns", text)


def state_files(root) -> dict[str, str]:
    d = Path(root) / ".pipectl"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("state.db*"))}


LOAD_DIMS_LOG = ".pipectl/logs/nightly/manual__2026-04-09T000000_0000/load_dims.1.log"


# --------------------------------------------------------------------------- view model

def test_view_model_running_waiting_sla_failures(project):
    m = model(project, T_VIEW)
    fetch_start = q(project, "SELECT tries.start FROM tries JOIN task_instances ti ON ti.id = tries.ti "
                             "WHERE ti.task = 'fetch'")[0][0]
    # running: ingest's fetch, try 1, elapsed measured from its start on the simulated clock
    assert [(r["pipeline"], r["ds"], r["task"], r["try"]) for r in m["running"]] == [("ingest", "2026-04-09", "fetch", 1)]
    assert m["running"][0]["elapsed"] == pytest.approx(epoch(T_VIEW) - fetch_start)
    assert 85 <= m["running"][0]["elapsed"] <= 90
    # waiting: the retry (with its due time, exactly 1h after the failure), then the tasks below it, in DAG order
    waiting = [(w["pipeline"], w["task"], w["state"]) for w in m["waiting"]]
    assert waiting == [("flaky", "call_api", "up_for_retry"), ("flaky", "store", "pending"),
                       ("ingest", "publish", "pending")]
    retry = m["waiting"][0]
    failed_at = q(project, "SELECT tries.end FROM tries JOIN task_instances ti ON ti.id = tries.ti "
                           "WHERE ti.task = 'call_api'")[0][0]
    assert retry["due"] == pytest.approx(failed_at + 3600)
    assert retry["due_in"] == pytest.approx(failed_at + 3600 - epoch(T_VIEW))
    assert "retry" in retry["why"] and "09:01" in retry["why"]
    assert "call_api" in m["waiting"][1]["why"] and "fetch" in m["waiting"][2]["why"]
    # the same words as `explain` (both come from the rulebook)
    for name in ("flaky", "ingest"):
        explained = {t["task"]: t["why"] for t in jcli(project, "explain", name, now=T_VIEW)["tasks"]}
        for w in m["waiting"]:
            if w["pipeline"] == name:
                assert seconds_blurred(w["why"]) == seconds_blurred(explained[w["task"]])
    # SLA countdowns: the task's 1h and the run's 2h, both counted from the manual run's creation
    created = q(project, "SELECT created FROM runs WHERE pipeline = 'ingest'")[0][0]
    assert [(s["task"], s["deadline"]) for s in m["sla"]] == [("fetch", created + 3600), (None, created + 7200)]
    assert m["sla"][0]["left"] == pytest.approx(created + 3600 - epoch(T_VIEW))
    # failures: only the task that failed (not its upstream_failed child), with the whole log path of its try
    assert [(f["pipeline"], f["task"], f["exit_code"], f["try"]) for f in m["failures"]] == [("nightly", "load_dims", 3, 1)]
    assert m["failures"][0]["log"] == str(project / LOAD_DIMS_LOG)
    assert Path(m["failures"][0]["log"]).read_text().startswith("loading")
    assert m["counts"] == {"running": 1, "waiting": 3, "sla": 2, "failures": 1, "runs_running": 2, "runs_queued": 0}


def test_view_model_one_pipeline_and_a_queued_run(project, tmp_path):
    m = model(project, T_VIEW, pipeline="flaky")
    assert {w["pipeline"] for w in m["waiting"]} == {"flaky"} and m["running"] == [] and m["failures"] == []
    # a second ingest run waits behind max_active_runs: one line for the whole run, saying so
    import shutil as sh

    copy = tmp_path / "copy"
    sh.copytree(project, copy)
    ok(copy, "trigger", "ingest", "--date", "2026-04-10", now="2026-04-10T08:02:30Z")
    m = model(copy, T_VIEW, pipeline="ingest")
    queued = [w for w in m["waiting"] if w["state"] == "queued"]
    assert [(w["ds"], w["task"]) for w in queued] == [("2026-04-10", None)]
    assert "queued" in queued[0]["why"] and "max_active_runs" in queued[0]["why"]
    assert m["counts"]["runs_queued"] == 1


def test_view_model_lists_are_bounded_and_counted(project):
    m = model(project, T_VIEW, limit=1)
    assert len(m["waiting"]) == 1 and m["counts"]["waiting"] == 3
    assert len(m["sla"]) == 1 and m["counts"]["sla"] == 2


def test_no_state_file_yet(tmp_path):
    root = make_project(tmp_path, SPECS)
    r = ok(root, "status", "--once", env={"COLUMNS": "60"})
    assert "no state file yet" in r.stdout and not (root / ".pipectl" / "state.db").exists()


def test_readonly_store_refuses_writes(project):
    from pipectl.spec.config import load_config
    from pipectl.cli.live import open_readonly
    store = open_readonly(load_config(str(project)))
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.set_meta("x", "y")
    finally:
        store.close()


# --------------------------------------------------------------------------- frames

@pytest.mark.parametrize("width", [60, 100])
def test_frame_keeps_the_key_facts_at_width(project, width):
    text = frame_text(model(project, T_VIEW), width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    assert re.search(r"ingest +2026-04-09 +fetch +try 1 +1m2\ds", text), text
    retry_in = re.search(r"call_api +up_for_retry\s+retry .*?at (\d\d:\d\d):\d\d UTC, in (\d+)m", text, re.S)
    assert retry_in and retry_in.group(1) == "09:01" and retry_in.group(2) in ("57", "58"), text
    assert re.search(r"fetch +58m\d\ds left \(09:02 UTC\)", text), text
    assert re.search(r"nightly +2026-04-09 +load_dims +exit 3, try 1, 3m[23]\ds ago", text), text
    # the log path whole: on one line at 100 columns, broken only at the edge at 60
    joined = "".join(line.strip() for line in lines) if width < 80 else text
    assert LOAD_DIMS_LOG in joined, text
    assert "…" not in text


def test_status_once_and_top_are_one_frame(project):
    env = {"COLUMNS": "100"}
    a = ok(project, "status", "--once", now=T_VIEW, env=env)
    b = ok(project, "top", "--once", now=T_VIEW, env=env)
    def same(text):  # each process's clock starts at --now and runs on: seconds may differ
        return re.sub(r"\d+s\b", "Ns", re.sub(r"\d\d UTC", "SS UTC", text))

    assert same(a.stdout) == same(b.stdout) and a.stderr == ""
    assert "Running (1)" in a.stdout and "Waiting (3)" in a.stdout and "Last failures (1)" in a.stdout
    assert "Ctrl-C" not in a.stdout  # nothing to quit
    one = ok(project, "status", "flaky", "--once", now=T_VIEW, env=env)
    assert "pipectl live flaky" in one.stdout and "ingest" not in one.stdout


def test_watch_never_writes_the_state_file(project):
    before = state_files(project)
    ok(project, "status", "--watch", now=T_VIEW)  # not a terminal: one frame
    ok(project, "top", "--once", now=T_VIEW)
    assert state_files(project) == before


def test_watch_refuses_json_and_unknown_pipelines(project):
    from harness import one_error_line

    r = cli(project, "--json", "status", "--watch")
    assert r.returncode == 2 and "--json" in one_error_line(r)
    r = cli(project, "top", "nosuch")
    assert r.returncode == 2 and "unknown pipeline 'nosuch'" in one_error_line(r)
    r = cli(project, "status", "--watch", "--interval", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- a real terminal

class Tmux:
    """A private tmux server (its own socket): the test never touches anyone else's sessions."""

    def __init__(self, sock: Path):
        self.base = ["tmux", "-u", "-S", str(sock)]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], check=True, capture_output=True, text=True, timeout=20).stdout

    def pane(self) -> str:
        return self("capture-pane", "-p", "-t", "live")

    def wait(self, pred, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        text = self.pane()
        while not pred(text) and time.monotonic() < deadline:
            time.sleep(0.1)
            text = self.pane()
        return text


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it)")
    t = Tmux(tmp_path / "tmux.sock")
    yield t
    subprocess.run([*t.base, "kill-server"], capture_output=True, timeout=20)


@pytest.mark.parametrize("width", [100, 60])
def test_live_view_in_a_real_terminal(project, tmux, tmp_path, width):
    rc_file = tmp_path / "rc"
    command = (f"cd {shlex.quote(str(project))} && env -u COLUMNS -u LINES LC_ALL=C.UTF-8 PIPECTL_NOW={T_VIEW} "
               f"{shlex.quote(sys.executable)} -m pipectl status --watch --interval 0.5; "
               f"echo EXIT=$? | tee {shlex.quote(str(rc_file))}; exec sleep 600")
    tmux("new-session", "-d", "-s", "live", "-x", str(width), "-y", "30", command)
    first = tmux.wait(lambda s: "Last failures" in s and "log" in s.split("Last failures")[1])
    assert "Last failures" in first, first
    stamp = re.search(r"2026-04-10 08:0\d:\d\d UTC", first)
    assert stamp, first
    # it is live: the header's clock and the elapsed time move on while we watch
    later = tmux.wait(lambda s: stamp.group(0) not in s)
    assert stamp.group(0) not in later, later
    for text in (first, later):
        lines = text.splitlines()
        # the watch's clock starts at PIPECTL_NOW and runs on: a loaded machine may add seconds
        assert re.search(r"ingest +2026-04-09 +fetch +try 1 +(1m[2-5]\d|[2-5]m\d\d)s", text), text
        assert re.search(r"↻ +flaky +2026-04-09 +call_api +up_for_retry", text), text  # Unicode glyphs under Live too
        assert re.search(r"at\s+09:01:\d\d\s+UTC,\s+in\s+5\dm", text), text
        assert re.search(r"load_dims +exit 3, try 1", text), text
        joined = "".join(line.strip() for line in lines) if width < 80 else text
        assert LOAD_DIMS_LOG in joined, text
        assert all(len(line) <= width for line in lines)
    tmux("send-keys", "-t", "live", "C-c")
    after = tmux.wait(lambda s: "EXIT=" in s, timeout=15)
    assert "EXIT=0" in after, after
    assert rc_file.read_text().strip() == "EXIT=0"
    assert "Traceback" not in after and "pipectl: error" not in after, after
    assert "Last failures" in after  # the last frame stays on screen to copy from
    assert tmux("display-message", "-p", "-t", "live", "#{cursor_flag}").strip() == "1"  # cursor shown again


def test_a_tall_frame_is_shortened_to_the_terminal_keeping_failures(project):
    from rich.console import Console

    from pipectl.cli.live import fitted
    m = model(project, T_VIEW)
    m["waiting"] = m["waiting"] * 10
    m["counts"]["waiting"] = len(m["waiting"])
    buf = io.StringIO()
    console = Console(file=buf, width=60, height=24, color_system=None, emoji=False, highlight=False)
    console.print(fitted(m, console))
    lines = buf.getvalue().splitlines()
    assert len(lines) <= 24, buf.getvalue()
    text = buf.getvalue()
    assert re.search(r"Waiting \(30, \d+ not shown\)", text), text
    assert "load_dims exit 3" in text and LOAD_DIMS_LOG in "".join(line.strip() for line in lines), text
    assert "fetch try 1" in text


def test_view_model_says_sensor_next_check_and_pool(tmp_path):
    """The other reasons a task waits: a sensor's next check (with its due time) and a full pool."""
    root = make_project(tmp_path, {
        "sense": """
            tasks:
              landed: {sensor: {file: "never.txt"}, poke_interval: 10m, timeout: 5h}
              use: {run: "true", needs: [landed]}
        """,
        "pools": """
            tasks:
              hold: {run: "sleep 120", pool: db}
              other: {run: "true", pool: db}
        """,
    }, toml_extra="[pools]\ndb = 1\n")
    try:
        ok(root, "trigger", "sense", "--date", "2026-04-09", now="2026-04-10T08:00:00Z")
        ok(root, "trigger", "pools", "--date", "2026-04-09", now="2026-04-10T08:00:00Z")
        assert wait_for(lambda: q(root, "SELECT 1 FROM tries WHERE state = 'running'"), timeout=20)
        m = model(root, "2026-04-10T08:02:00Z")
        waiting = {w["task"]: w for w in m["waiting"]}
        assert set(waiting) == {"landed", "use", "other"}
        poked = q(root, "SELECT sensor_next FROM task_instances WHERE task = 'landed'")[0][0]
        assert waiting["landed"]["due"] == poked and poked == pytest.approx(epoch("2026-04-10T08:10:00Z"), abs=5)
        assert "never.txt" in waiting["landed"]["why"] and "08:10" in waiting["landed"]["why"]
        assert "pool" in waiting["other"]["why"] and "db" in waiting["other"]["why"]
        assert "hold" in waiting["other"]["why"]  # the holder is named
        assert [r["task"] for r in m["running"]] == ["hold"]
    finally:
        for row in q(root, "SELECT pid FROM tries WHERE state IN ('starting', 'running') AND pid IS NOT NULL"):
            kill_session(row[0])
