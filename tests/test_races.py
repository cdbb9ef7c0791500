"""The state machine under races: every transition is conditional on the state it expects,
so a writer that read a stale state (a tick, a reaper, `retry`, `mark`, `prune`, a backfill)
changes nothing and is told so."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import harness
from harness import cli, ok, q, tis  # noqa: F401
from conftest import make_project

from pipectl.model.states import RUN_TRANSITIONS, TI_STATES, TI_TRANSITIONS
DS = "2026-03-02"
# `hold` makes every try wait for `release`; `fail_DS` makes the try of that ds fail
SPEC = """\
schedule: "0 2 * * *"
max_active_runs: 5
tasks:
  work:
    run: |
      echo "$$ {{ ds }} {{ try_number }}" >> pids
      n=0; if [ -e hold ]; then while [ ! -e release ] && [ $n -lt 1000 ]; do sleep 0.02; n=$((n+1)); done; fi
      test ! -e fail_{{ ds }}
"""


@pytest.fixture
def root(tmp_path):
    root = make_project(tmp_path / "proj", {"etl": SPEC})
    ok(root, "pause", "etl")  # no scheduled runs: only the ones a test makes
    yield root
    (root / "release").touch()  # a failed test leaves no task waiting


def wait_for(pred, timeout: float = 20.0) -> None:
    assert harness.wait_for(pred, timeout), "timed out"


def failed_run(root: Path) -> None:
    (root / f"fail_{DS}").touch()
    assert cli(root, "backfill", "etl", "--start", DS, "--end", DS, "--wait").returncode == 1
    (root / f"fail_{DS}").unlink()


def ti_state(root: Path, ds: str = DS) -> tuple[str, int]:
    row = q(root, """SELECT ti.state, ti.try_number FROM task_instances ti JOIN runs ON runs.id = ti.run
                     WHERE runs.ds = ? ORDER BY runs.id LIMIT 1""", (ds,))[0]
    return row[0], row[1]


def live_tries(root: Path) -> int:
    return q(root, "SELECT count(*) FROM tries WHERE state IN ('starting', 'running')")[0][0]


def release(root: Path) -> None:
    (root / "release").touch()
    ok(root, "tick", "--wait")
    assert live_tries(root) == 0


def _engine(root: Path):
    from pipectl.spec.config import load_config
    from pipectl.engine.step import Clock, Engine
    from pipectl.state.store import Store
    config = load_config(str(root))
    return Engine(config, Store(config.state_db, create=False), Clock())


# --------------------------------------------------------------------------- retry, mark

def test_retry_from_a_stale_read_never_resets_a_running_task_instance(root):
    failed_run(root)
    engine = _engine(root)
    try:
        from pipectl.ops import rerun
        run = engine.store.run_by_date("etl", q(root, "SELECT logical_date FROM runs")[0][0])
        todo, busy = rerun.retry_plan(engine, run)  # sees `work` failed
        assert [t.task for t in todo] == ["work"] and busy == []
        # meanwhile another operator's retry got there first, and a tick started it
        (root / "hold").touch()
        ok(root, "retry", "etl", "--date", DS)
        ok(root, "tick")
        wait_for(lambda: len((root / "pids").read_text().splitlines()) == 2)
        assert ti_state(root) == ("running", 2) and live_tries(root) == 1
        result = rerun.retry(engine, run, todo)  # the stale plan
        assert ti_state(root) == ("running", 2) and live_tries(root) == 1
        assert result == ([], [("work", "running")])
        assert [r[0] for r in q(root, "SELECT kind FROM events WHERE kind = 'retry'")] == ["retry"]
    finally:
        engine.store.close()
    # the CLI says what it skipped and why
    r = cli(root, "retry", "etl", "--date", DS, "--task", "work")
    assert r.returncode == 0 and "still active" in r.stdout
    release(root)
    assert ti_state(root) == ("success", 2)
    pids = (root / "pids").read_text().split()
    assert len(pids) == 6 and len(set(pids[0::3])) == 2  # two tries, two processes


def test_mark_skips_a_running_task_instance_and_says_so(root):
    (root / "hold").touch()
    ok(root, "backfill", "etl", "--start", DS, "--end", DS)
    ok(root, "tick")
    wait_for(lambda: (root / "pids").exists())
    assert ti_state(root) == ("running", 1)
    r = cli(root, "mark", "etl", "--date", DS, "--task", "work", "success")
    assert r.returncode == 1
    assert r.stderr.strip() == (f"backfill__{DS}T02:00:00+00:00: work is running; not marked "
                                "(mark it once its try has ended, or let its timeout end it)")
    assert ti_state(root) == ("running", 1)
    assert q(root, "SELECT count(*) FROM events WHERE kind = 'mark'")[0][0] == 0
    release(root)
    assert ti_state(root) == ("success", 1)


# --------------------------------------------------------------------------- prune

def _prune_racing(root: Path, during) -> object:
    """prune in this process; ``during`` runs (other processes' commands) just before its
    first write transaction begins: the moment a look taken outside it goes stale."""
    from pipectl.spec.config import load_config
    from pipectl.ops.retention import prune
    from pipectl.state.store import Store
    config = load_config(str(root))
    store = Store(config.state_db, create=False)
    real_tx = store.tx
    fired = []

    def tx():
        if not fired:
            fired.append(1)
            during()
        return real_tx()

    store.tx = tx
    try:
        return prune(config, store, 86400.0, time.time() + 400 * 86400)
    finally:
        store.close()


def test_prune_deletes_exactly_the_runs_it_reports_with_their_events_and_logs(root):
    failed_run(root)  # the old, finished run of DS
    logs = root / ".pipectl" / "logs" / "etl"
    old_dir = logs / f"backfill__{DS}T020000_0000"
    assert (old_dir / "work.1.log").exists()
    # a running run of the same pipeline and the same ds, and one of another date
    (root / "hold").touch()
    ok(root, "trigger", "etl", "--date", f"{DS}T12:00:00")
    ok(root, "trigger", "etl", "--date", "2026-03-05")
    ok(root, "tick")
    wait_for(lambda: live_tries(root) == 2)
    events_before = q(root, "SELECT run, count(*) FROM events WHERE run IS NOT NULL GROUP BY run ORDER BY run")

    def retry_and_start():  # the old run is retried and its try starts while prune decides
        ok(root, "retry", "etl", "--date", f"{DS}T02:00:00")
        ok(root, "tick")
        wait_for(lambda: live_tries(root) == 3)

    res = _prune_racing(root, retry_and_start)
    assert (res.runs, res.log_dirs) == ([], 0)
    assert q(root, "SELECT count(*) FROM runs")[0][0] == 3
    events_after = q(root, "SELECT run, count(*) FROM events WHERE run IS NOT NULL GROUP BY run ORDER BY run")
    assert len(events_after) == 3 and all(a[1] >= b[1] for a, b in zip(events_after, events_before))
    assert (old_dir / "work.1.log").exists() and (old_dir / "work.2.log").exists()  # the running try's log
    assert ti_state(root) == ("running", 2)

    release(root)
    # everything finished: now prune deletes all three, and exactly what it says
    kept = {p.name for p in logs.iterdir()}
    assert len(kept) == 3
    ids = sorted(r[0] for r in q(root, "SELECT run_id FROM runs"))
    assert ids[0] == f"backfill__{DS}T02:00:00+00:00" and ids[1].startswith("manual__2026-03-0")
    res = _prune_racing(root, lambda: None)
    assert sorted(res.runs) == ids and res.log_dirs == 3
    assert res.tries == {("etl", ids[0]): [("work", 1), ("work", 2)], ("etl", ids[1]): [("work", 1)],
                         ("etl", ids[2]): [("work", 1)]}
    assert q(root, "SELECT count(*) FROM runs")[0][0] == 0
    # (rows, not a count: an event written for a deleted run names the writer that read it stale)
    assert harness.qd(root, "SELECT run, kind, task, message, ts FROM events WHERE run IS NOT NULL") == []
    assert list(logs.iterdir()) == []
    assert not list((root / ".pipectl").glob(".pruning.*"))


def test_prune_never_deletes_a_finished_run_with_a_live_try(root):
    """A run is finished only once every task instance has and no try of it is live; prune
    checks that too in its delete, so a run that reads finished while a process of it still
    runs (broken state) keeps its rows and its logs."""
    (root / "hold").touch()
    ok(root, "backfill", "etl", "--start", DS, "--end", DS)
    ok(root, "tick")
    wait_for(lambda: live_tries(root) == 1)
    from harness import db

    conn = db(root)
    with conn:
        conn.execute("UPDATE runs SET state = 'failed', end = 0")
        conn.execute("UPDATE task_instances SET state = 'failed'")
    conn.close()
    res = _prune_racing(root, lambda: None)
    assert (res.runs, res.log_dirs) == ([], 0)
    assert q(root, "SELECT count(*) FROM tries")[0][0] == 1
    (root / "release").touch()
    # no run is active, so `tick --wait` has nothing to wait for: the try is recorded when its
    # process ends, by its wrapper or by a later plain tick, as under cron
    wait_for(lambda: ok(root, "tick") is not None and live_tries(root) == 0)
    assert [tuple(r) for r in q(root, "SELECT state FROM tries")] == [("success",)]


# --------------------------------------------------------------------------- one process, two stores

def _other_process_reads(path: str, sql: str):
    import subprocess
    import sys

    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); r = c.execute(sys.argv[2]).fetchone(); c.close(); print(r[0])"
    return subprocess.run([sys.executable, "-c", code, path, sql], capture_output=True, text=True, check=True).stdout.strip()


def test_a_second_store_in_one_process_never_loses_the_first_ones_commits(tmp_path):
    """A timer that runs a tick (or a command that ticks after its own transaction) opens a
    second Store in a process that has one open. Checking the file's header then opened and
    closed it, which drops every POSIX lock the process held on it: another process closing
    its connection took itself for the last, checkpointed and deleted the write-ahead log
    under the live connection, and that connection's later commits were lost to everyone."""
    from pipectl.state.store import Store
    path = str(tmp_path / "state.db")
    a = Store(path)
    try:
        with a.tx():
            a.set_meta("k", "1")
        Store(path).close()
        _other_process_reads(path, "SELECT count(*) FROM meta")  # opens and closes a connection
        with a.tx():
            a.set_meta("k", "2")
        assert _other_process_reads(path, "SELECT value FROM meta WHERE key = 'k'") == "2"
    finally:
        a.close()


# --------------------------------------------------------------------------- the table itself

def _store(tmp_path):
    from pipectl.state.store import Store
    return Store(str(tmp_path / "state.db"))


def _ti(store, state: str, run_state: str = "running") -> tuple[int, int]:
    with store.tx():
        n = store.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        run = store.insert_run(run_id=f"r{n}", pipeline="p", logical_date=f"2026-01-01T00:00:{n:02d}", ds="2026-01-01",
                               interval=(None, None), run_type="manual", params={}, spec={}, now=0)
        store.set_run_state(run, run_state, 0)
        store.insert_task_instances(run, [("a", "a", None, None, state)])
    return run, store.task_instances(run)[0].id


def _apply(store, name: str, ti: int, state: str):
    return {
        "claim": lambda: store.claim_task_instance(ti, 1.0) is not None,
        "finish": lambda: store.finish_task_instance(ti, 0, "failed", now=1.0, reason="exit_code", exit_code=1),
        "requeue": lambda: store.requeue_unstarted(ti, 0),
        "settle": lambda: store.set_ti_state(ti, "upstream_failed", now=1.0, reason="trigger_rule"),
        "check": lambda: store.set_ti_state(ti, "success", now=1.0),
        "reset": lambda: store.reset_task_instance(ti),
        "mark": lambda: store.mark_task_instance(ti, "skipped", expect=state, now=1.0, reason="marked"),
    }[name]()


@pytest.mark.parametrize("name", sorted(TI_TRANSITIONS))
def test_each_task_instance_transition_changes_only_its_expected_states(tmp_path, name):
    store = _store(tmp_path)
    try:
        froms, tos = TI_TRANSITIONS[name]
        for state in TI_STATES:
            _, ti = _ti(store, state)
            with store.tx():
                changed = _apply(store, name, ti, state)
            after = store.task_instance(ti).state
            assert changed == (state in froms), (name, state)
            assert (after in tos) if changed else (after == state), (name, state, after)
    finally:
        store.close()


def test_a_live_try_blocks_claim_reset_and_mark_and_a_stale_try_changes_nothing(tmp_path):
    store = _store(tmp_path)
    try:
        _, ti = _ti(store, "pending")
        with store.tx():
            assert store.claim_task_instance(ti, 1.0) == 1
            store.insert_try(ti, 1, launcher_pid=1, launcher_start=None, boot_id="b", status_path="s", log_path="l",
                             timeout=None, pool=None, now=1.0)
        with store.tx():
            # a try of an older number ends (or is lost unstarted): the task instance is at try 1
            assert not store.finish_task_instance(ti, 0, "failed", now=2.0, reason="lost", exit_code=None)
            assert not store.requeue_unstarted(ti, 0)
            assert store.task_instance(ti).state == "running"
            # a broken state that reads finished while its try is live: nothing starts or resets it
            store.conn.execute("UPDATE task_instances SET state = 'failed' WHERE id = ?", (ti,))
            assert not store.reset_task_instance(ti)
            assert not store.mark_task_instance(ti, "success", expect="failed", now=2.0, reason="m")
            store.conn.execute("UPDATE task_instances SET state = 'up_for_retry' WHERE id = ?", (ti,))
            assert store.claim_task_instance(ti, 2.0) is None
        assert store.task_instance(ti).try_number == 1
    finally:
        store.close()


def test_run_transitions(tmp_path):
    store = _store(tmp_path)
    try:
        assert set(RUN_TRANSITIONS) == {"promote", "finish", "reopen", "resettle", "prune"}
        with store.tx():
            a, _ = _ti(store, "pending", "queued")
            b, _ = _ti(store, "pending", "queued")
            assert store.promote_run(a, 1, 1.0)
            assert not store.promote_run(b, 1, 1.0)  # the limit is counted in the same statement
            assert not store.promote_run(a, 5, 1.0)  # already running
            assert store.finish_run(a, 2.0) is None  # a task instance is still pending
            tis_a = store.task_instances(a)
            store.set_ti_state(tis_a[0].id, "skipped", now=2.0)
            assert store.finish_run(a, 2.0) == "success"
            assert store.run(a).state == "success"
            assert store.finish_run(a, 3.0) is None
            assert store.reopen_run(a) and not store.reopen_run(a) and not store.reopen_run(b)
        assert store.prune_runs_older_than(1e12) == []  # neither run is finished
    finally:
        store.close()


# --------------------------------------------------------------------------- bounded soak

def test_soak_mixed_bounded():
    """bench/soak_mixed.py at three rounds (the soak itself runs 300): ticks racing backfill --wait, retry, mark, pause,
    unpause, prune and run --wait as real parallel CLI processes; its audit must be clean."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(repo / "bench" / "soak_mixed.py"), "--rounds", "3", "--seed", "7"],
                       capture_output=True, text=True, timeout=300)
    line = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0, r.stdout + r.stderr
    assert line.startswith("soak_mixed: 3 rounds, ")
    assert line.endswith(": 0 doubles, 0 lost, 0 orphan processes, 0 stuck, 0 unreported deletions, 0 tracebacks, "
                         "integrity ok"), line
