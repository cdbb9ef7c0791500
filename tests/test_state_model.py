"""A model-based test of the state machine: hypothesis interleaves engine steps (a tick's or a
reaper's), background `pipectl tick` and reaper processes, `retry` (also from a stale read),
`mark`, `pause`/`unpause`, `prune` and backfills against ONE real state file, whose tasks are
real short processes (bench/soak_mixed.py's tasks/work.sh: a start and an end line per
process with its try number, and a non-blocking flock per task instance).

After every step: no task instance has two live tries, no finished run has unfinished work,
and no two processes of one task instance ever held its lock at once. At the end, once the
work is drained: each try row matches exactly one process, every process matches a try row
or a try that prune reported deleting, and nothing else was deleted (events, logs).
"""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings, strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import soak_mixed  # noqa: E402

TODAY = date.today()
DAYS = [(TODAY - timedelta(days=i)).isoformat() for i in range(2)]


class StateModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile

        from pipectl.spec.config import load_config
        from pipectl.engine.step import Clock, Engine
        from pipectl.state.store import Store
        self.tmp = Path(tempfile.mkdtemp(prefix="state_model."))
        self.root = self.tmp / "proj"
        soak_mixed.build(self.root, TODAY)
        # half the processes fail (the soak's one in five leaves few failed task instances to retry)
        work = self.root / "tasks" / "work.sh"
        work.write_text(work.read_text().replace("$(( $$ % 5 ))", "$(( $$ % 2 ))"))
        self.config = load_config(str(self.root))
        self.store = Store(self.config.state_db)
        self.engine = Engine(self.config, self.store, Clock())
        self.background: list[subprocess.Popen] = []
        self.pruned: list[dict] = []

    # -- helpers ------------------------------------------------------------------------
    def _pipeline(self, name: str):
        from pipectl.spec.loader import load_pipelines
        return load_pipelines(self.config).pipelines[name]

    def _run(self, pipe: str, ds: str):
        rows = self.store.runs_by_ds(pipe, ds)
        return rows[0] if rows else None

    def _cli(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pipectl", "--project", str(self.root), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def _reap_background(self, wait: bool = False) -> None:
        for p in list(self.background):
            if wait:
                p.wait(timeout=60)
            if p.poll() is not None:
                err = p.stderr.read().decode()
                assert "Traceback" not in err and "internal error" not in err, err
                p.stderr.close()
                self.background.remove(p)

    # -- rules --------------------------------------------------------------------------
    @rule()
    def step(self):
        """A tick's or a reaper's step in this process (reap, promote, advance, dispatch)."""
        self.engine.step()
        self.engine.collect_children()

    @rule(kind=st.sampled_from(["tick", "reap", "tick --wait"]))
    def background(self, kind):
        """A real process stepping beside everything else, left running."""
        if kind == "reap":
            p = subprocess.Popen([sys.executable, "-m", "pipectl.exec.reap", str(self.root), "0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        else:
            p = self._cli(*kind.split())
        self.background.append(p)

    @rule(seconds=st.sampled_from([0.02, 0.1, 0.3]))
    def pause_a_moment(self, seconds):
        time.sleep(seconds)
        self._reap_background()

    @rule(pipe=st.sampled_from(["mix", "side"]), i=st.integers(0, 1), j=st.integers(0, 1),
          reprocess=st.sampled_from(["missing", "failed", "all"]))
    def backfill(self, pipe, i, j, reprocess):
        from pipectl.ops import backfill as bf
        lo, hi = sorted((DAYS[i], DAYS[j]))
        bf.apply(self.engine, self._pipeline(pipe), date.fromisoformat(lo), date.fromisoformat(hi),
                 reprocess=reprocess, max_active=2)

    @rule(pipe=st.sampled_from(["mix", "side"]), i=st.integers(0, 1), task=st.sampled_from([None, "a", "b"]),
          stale=st.booleans())
    def retry(self, pipe, i, task, stale):
        from pipectl.ops import rerun
        run = self._run(pipe, DAYS[i])
        if run is None:
            return
        todo, busy = rerun.retry_plan(self.engine, run, task, downstream=task == "a")
        if stale:  # the plan goes stale: a step (and anything running) moves on meanwhile
            self.step()
        done, skipped = rerun.retry(self.engine, run, todo)
        assert len(done) + len(skipped) == len(todo)

    @rule(pipe=st.sampled_from(["mix", "side"]), i=st.integers(0, 1))
    def retry_racing_retry(self, pipe, i):
        """Two operators retry one run: the second's plan is read, the first's retry lands and a
        step starts the work, then the second applies its (now stale) plan."""
        from pipectl.ops import rerun
        run = self._run(pipe, DAYS[i])
        if run is None:
            self.backfill(pipe, i, i, "missing")
            run = self._run(pipe, DAYS[i])
        rerun.mark(self.engine, run, "a", "failed")  # something to retry (unless a runs right now)
        stale, _ = rerun.retry_plan(self.engine, run)
        fresh, _ = rerun.retry_plan(self.engine, run)
        rerun.retry(self.engine, run, fresh)
        self.step()
        done, skipped = rerun.retry(self.engine, run, stale)
        for name, now_state in skipped:
            assert now_state not in ("failed", "upstream_failed"), (name, now_state)

    @rule(pipe=st.sampled_from(["mix", "side"]), i=st.integers(0, 1), task=st.sampled_from("abc"),
          state=st.sampled_from(["success", "failed", "skipped"]))
    def mark(self, pipe, i, task, state):
        from pipectl.ops import rerun
        run = self._run(pipe, DAYS[i])
        if run is None:
            return
        changed, skipped = rerun.mark(self.engine, run, task, state)
        for name, was in skipped:
            assert was in ("running", "pending", "up_for_retry"), (name, was)

    @rule(pipe=st.sampled_from(["mix", "side"]), paused=st.booleans())
    def pause(self, pipe, paused):
        from pipectl.ops import rerun
        rerun.set_paused(self.store, self._pipeline(pipe), paused, time.time())

    @rule(older_than=st.sampled_from([0.0, 0.5, 3600.0]))
    def prune(self, older_than):
        from pipectl.ops.retention import prune
        res = prune(self.config, self.store, older_than, time.time() + 0.001)
        tries: dict = {}
        for (pipeline, run_id), ts in res.tries.items():
            tries.setdefault(pipeline, {})[run_id] = [list(t) for t in ts]
        self.pruned.append({"runs": res.runs, "tries": tries})
        # what it reports is gone (only this process creates runs again: background ticks schedule
        # past their cursor, never a pruned date), and so are its log directories
        for run_id in res.runs:
            assert self.store.conn.execute("SELECT count(*) FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0] == 0
        assert res.log_dirs <= len(res.runs)

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def one_live_try_per_task_instance(self):
        rows = self.store.conn.execute("""SELECT ti, count(*) FROM tries WHERE state IN ('starting', 'running')
                                          GROUP BY ti HAVING count(*) > 1""").fetchall()
        assert rows == []

    @invariant()
    def a_live_try_holds_its_task_instance(self):
        """While a try is live its task instance is running at that try: nothing (a stale retry,
        a mark, a reset) moved it on underneath its process."""
        rows = self.store.conn.execute(
            """SELECT ti.task, ti.state, ti.try_number, tries.try_number FROM tries JOIN task_instances ti ON ti.id = tries.ti
               WHERE tries.state IN ('starting', 'running')
               AND (ti.state != 'running' OR ti.try_number != tries.try_number)""").fetchall()
        assert [tuple(r) for r in rows] == []

    @invariant()
    def finished_runs_have_no_unfinished_work(self):
        rows = self.store.conn.execute(
            """SELECT runs.run_id, ti.task, ti.state FROM runs JOIN task_instances ti ON ti.run = runs.id
               WHERE runs.state IN ('success', 'failed')
               AND (ti.state IN ('pending', 'running', 'up_for_retry')
                    OR EXISTS (SELECT 1 FROM tries WHERE tries.ti = ti.id AND tries.state IN ('starting', 'running')))"""
        ).fetchall()
        assert [tuple(r) for r in rows] == []

    @invariant()
    def no_two_processes_of_one_task_instance(self):
        marks = self.root / "soak" / "marks"
        if marks.exists():
            assert not [line for line in marks.read_text().splitlines() if line.startswith("C ")]

    def teardown(self):
        try:
            # drain: everything finishes, nothing is left behind
            from pipectl.ops import rerun
            for pipe in ("mix", "side"):
                rerun.set_paused(self.store, self._pipeline(pipe), True, time.time())  # no new scheduled runs
            self._reap_background(wait=True)
            deadline = time.time() + 40
            while time.time() < deadline:
                self.step()
                active = self.store.count_active()
                if active == (0, 0) and not self.engine.children:
                    break
                time.sleep(0.02)
            self._reap_background(wait=True)
            r = soak_mixed.audit(self.root, self.pruned)
            assert (r["doubles"], r["lost"], r["orphans"], r["stuck"], r["unreported"], r["integrity"]) == \
                (0, 0, 0, 0, 0, "ok"), r
        finally:
            for p in self.background:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            self.store.close()
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)


StateModel.TestCase.settings = settings(max_examples=4, stateful_step_count=16, deadline=None,
                                        suppress_health_check=list(HealthCheck))
test_state_model = StateModel.TestCase
