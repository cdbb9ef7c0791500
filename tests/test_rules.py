"""The rulebook: dispatch and explain read the same rules over the same world.

The property test builds random small DAGs and random worlds (task instance states,
running tries holding pools and slots, retry times, max_active_runs, queued runs,
paused pipelines) in a real state file, asks the rulebook which task instances are
ready, then lets a real engine step dispatch (with process starts stubbed out) and
compares: explain says "ready" for exactly the task instances dispatch claimed.
"""
from __future__ import annotations

import os
import tempfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings, strategies as st

from pipectl.exec import executor

from pipectl.engine import explain, rules
from pipectl.spec.config import load_config
from pipectl.model.states import FAILED, PENDING, RUNNING, SKIPPED, SUCCESS, UP_FOR_RETRY, UPSTREAM_FAILED
from pipectl.engine.step import Clock, Engine
from pipectl.spec.loader import load_pipelines
from pipectl.state.store import Store
UTC = timezone.utc
NOW = datetime(2026, 4, 3, 14, 4, 28, tzinfo=UTC)
RULES = ["all_success", "all_done", "all_failed", "one_failed", "one_success", "none_failed"]
TI_STATES = [PENDING, PENDING, RUNNING, SUCCESS, SUCCESS, FAILED, UPSTREAM_FAILED, SKIPPED, UP_FOR_RETRY]


class _FakeProc:
    """Stands in for a started wrapper: the property is about what dispatch claims, not about processes."""

    pid = os.getpid()

    def poll(self):
        return None


@st.composite
def dags(draw, name: str):
    n = draw(st.integers(1, 5))
    tasks = {}
    for i in range(n):
        ups = sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 2)))) if i else []
        tasks[f"t{i}"] = {
            "needs": [f"t{u}" for u in ups],
            "trigger_rule": draw(st.sampled_from(RULES)),
            "pool": draw(st.sampled_from([None, None, "warehouse"])),
            "priority": draw(st.integers(0, 2)),
        }
    return {"name": name, "tasks": tasks, "max_active_runs": draw(st.integers(1, 2)), "paused": draw(st.booleans()),
            "runs": draw(st.lists(st.tuples(st.sampled_from(["queued", "running", "running"]),
                                            st.sampled_from(["manual", "manual", "backfill"])), min_size=1, max_size=3))}


@st.composite
def worlds(draw):
    pipelines = [draw(dags("p")), *([draw(dags("q"))] if draw(st.booleans()) else [])]
    return {
        "max_parallel": draw(st.integers(1, 4)),
        "warehouse": draw(st.integers(1, 2)),
        "pipelines": pipelines,
        # per task instance, drawn lazily below in creation order
        "states": draw(st.lists(st.sampled_from(TI_STATES), min_size=40, max_size=40)),
        "retry_at": draw(st.lists(st.sampled_from([-600, -30, 5, 45, 3600]), min_size=40, max_size=40)),
    }


def _yaml(p: dict) -> str:
    lines = [f"name: {p['name']}", f"max_active_runs: {p['max_active_runs']}", "tasks:"]
    for name, t in p["tasks"].items():
        lines.append(f"  {name}:")
        lines.append('    run: "true"')
        lines.append("    retries: 2")
        lines.append(f"    trigger_rule: {t['trigger_rule']}")
        lines.append(f"    priority: {t['priority']}")
        if t["needs"]:
            lines.append(f"    needs: [{', '.join(t['needs'])}]")
        if t["pool"]:
            lines.append(f"    pool: {t['pool']}")
    return "\n".join(lines) + "\n"


def build(root: Path, w: dict):
    (root / "pipelines").mkdir(parents=True)
    (root / "pipectl.toml").write_text(textwrap.dedent(f"""\
        [pipectl]
        pipelines = ["pipelines/*.yaml"]
        state_dir = ".pipectl"
        max_parallel = {w['max_parallel']}
        [pools]
        warehouse = {w['warehouse']}
        """))
    for p in w["pipelines"]:
        (root / "pipelines" / f"{p['name']}.yaml").write_text(_yaml(p))
    config = load_config(root)
    loaded = load_pipelines(config)
    assert not loaded.invalid, loaded.invalid
    store = Store(config.state_db)
    clock = Clock.at(NOW)
    engine = Engine(config, store, clock)
    now = clock.now()
    states, retry_at = iter(w["states"]), iter(w["retry_at"])
    me = (os.getpid(), executor.process_start(os.getpid()), executor.boot_id())
    for p in w["pipelines"]:
        pipeline = loaded.pipelines[p["name"]]
        with store.tx():
            store.upsert_pipeline(pipeline.name, spec=pipeline.to_dict(), path=pipeline.path, valid=True, error=None,
                                  anchor=NOW.isoformat())
            store.set_paused(pipeline.name, p["paused"])
        for day, (run_state, run_type) in enumerate(p["runs"], start=1):
            pk = engine.create_run(pipeline, datetime(2026, 4, day, tzinfo=UTC), run_type=run_type)
            if run_state == "queued":
                continue
            with store.tx():
                store.set_run_state(pk, RUNNING, now)
                for ti in store.task_instances(pk):
                    s = next(states, PENDING)
                    task = pipeline.tasks[ti.base]
                    if s == PENDING:
                        continue
                    if s in (UPSTREAM_FAILED, SKIPPED):
                        assert store.set_ti_state(ti.id, s, now=now, reason="trigger_rule")
                        continue
                    assert store.claim_task_instance(ti.id, now - 120) == 1
                    if s == RUNNING:
                        t = store.insert_try(ti.id, 1, launcher_pid=me[0], launcher_start=me[1], boot_id=me[2],
                                             status_path=str(root / "no-status" / str(ti.id)), log_path=str(root / "log"),
                                             timeout=None, pool=task.pool, now=now - 60)
                        store.mark_try_started(t, me[0], me[1])
                    elif s == UP_FOR_RETRY:
                        assert store.finish_task_instance(ti.id, 1, s, now=now - 60, reason="exit_code", exit_code=1,
                                                          next_try_at=now + next(retry_at, 5))
                    else:
                        assert store.finish_task_instance(ti.id, 1, s, now=now - 60, exit_code=0 if s == SUCCESS else 3,
                                                          reason=None if s == SUCCESS else "exit_code")
    return config, store, engine


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_explain_says_ready_for_exactly_what_dispatch_claims(w):
    with tempfile.TemporaryDirectory() as d:
        config, store, engine = build(Path(d), w)
        try:
            step = explain.plan(store, config, engine.clock.now())
            said_ready = {pk for pk, v in step.verdicts.items() if v.ready}
            assert not [v for v in step.verdicts.values() if v.rule == "unknown"], step.verdicts
            assert [c[2].id for c in step.starts] == sorted(said_ready, key=[c[2].id for c in step.starts].index)
            before = {t.id for t in store.active_tries()}
            with mock.patch.object(executor, "start", lambda launch: _FakeProc()):
                engine.step()
            claimed = {t.ti for t in store.active_tries() if t.id not in before}
            assert said_ready == claimed
        finally:
            store.close()


def test_a_pending_task_below_a_failure_is_explained_before_the_step_settles_it(tmp_path):
    w = {"max_parallel": 2, "warehouse": 1, "states": [FAILED, PENDING, PENDING], "retry_at": [],
         "pipelines": [{"name": "p", "max_active_runs": 1, "paused": False, "runs": [("running", "manual")],
                        "tasks": {"t0": {"needs": [], "trigger_rule": "all_success", "pool": None, "priority": 0},
                                  "t1": {"needs": ["t0"], "trigger_rule": "all_success", "pool": None, "priority": 0},
                                  "t2": {"needs": ["t1"], "trigger_rule": "all_done", "pool": None, "priority": 0}}}]}
    config, store, engine = build(tmp_path, w)
    try:
        run = store.last_run("p")
        v = {x.task: x for x in explain.explain_run(store, config, run, engine.spec_of(run), engine.clock.now())}
        assert v["t0"].why == "failed: exit 3 on try 1"
        assert v["t1"].state == "pending" and v["t1"].rule == "trigger_rule"
        assert v["t1"].why == "upstream_failed on the next step because t0 failed (exit 3)"
        # the cascade: t1 settles in the same step, so t2 (all_done) starts in it
        assert v["t2"].ready is True and v["t2"].why == "ready: try 1 starts on the next step"
    finally:
        store.close()


def test_rule_words():
    assert rules.span(42) == "42s" and rules.span(185) == "3m05s" and rules.span(7800) == "2h10m"
    now = datetime(2026, 4, 3, 14, 4, 28, tzinfo=UTC).timestamp()
    assert rules.at_words(now + 42, now, "UTC") == "14:05:10 UTC, in 42s"
    assert rules.at_words(now + 86400, now, "UTC") == "2026-04-04 14:04:28 UTC, in 1d"
    assert rules.at_words(now - 60, now, "Europe/Paris") == "16:03:28 CEST, 1m ago"
    assert rules.trigger_outcome("one_success", ["failed", "skipped"]) == UPSTREAM_FAILED
