"""The engine keeps each running run's task-instance states in memory between steps and
refreshes only what changed: these tests change state behind its back (another
connection, its own connection outside its own code paths, a second engine) and
check it still decides exactly what a fresh look would."""
from __future__ import annotations

import random
import time
from datetime import datetime, timezone

import pytest

from harness import make_project

from pipectl.spec.config import load_config
from pipectl.engine.step import Clock, Engine, StepReport, register_supervisor, trigger_outcome
from pipectl.spec.loader import load_pipelines
from pipectl.engine.tick import open_store
D = datetime(2026, 4, 1, tzinfo=timezone.utc)
RULES = ["all_success", "all_done", "all_failed", "one_failed", "one_success", "none_failed"]


def _engine(root):
    """An engine in this process, registered as the supervisor so that finishing wrappers
    leave everything to it (no `pipectl.exec.reap` process steps behind the test's back)."""
    config = load_config(root)
    store = open_store(config)
    register_supervisor(config)
    return config, store, Engine(config, store, Clock())


def _start(engine, config, name):
    pk = engine.create_run(load_pipelines(config).pipelines[name], D, run_type="manual")
    engine.promote()
    return pk


def _states(store, pk):
    return {ti.task: ti.state for ti in store.task_instances(pk)}


def _step_until(engine, cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        engine.step()
        engine.collect_children()
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("seed", range(6))
def test_random_dag_ends_as_trigger_rules_say(tmp_path, seed):
    """Random DAGs, rules and exit codes (a mapped task among them): the states the engine
    reaches step by step are the ones a single topological pass of trigger_outcome gives."""
    rnd = random.Random(seed)
    n = 14
    names = [f"t{i}" for i in range(n)]
    needs = {t: sorted(rnd.sample(names[:i], rnd.randint(0, min(i, 3)))) for i, t in enumerate(names)}
    rules = {t: rnd.choice(RULES) for t in names}
    codes = {t: rnd.choice([0, 0, 1]) for t in names}
    mapped = rnd.choice(names)
    lines = ["tasks:"]
    for t in names:
        lines.append(f"  {t}:")
        lines.append(f"    run: \"exit {codes[t]}\"")
        lines.append(f"    trigger_rule: {rules[t]}")
        if needs[t]:
            lines.append(f"    needs: [{', '.join(needs[t])}]")
        if t == mapped:
            lines.append("    foreach: [x, y]")
    root = make_project(tmp_path, {"p": "\n".join(lines) + "\n"})
    config, store, engine = _engine(root)
    try:
        pk = _start(engine, config, "p")
        engine.drive({pk}, StepReport())
        got = _states(store, pk)
        run_state = store.run(pk).state
    finally:
        store.close()
    want: dict[str, str] = {}
    for t in names:  # names are in topological order
        ups = [want[u] for u in needs[t] for _ in (range(2) if u == mapped else range(1))]
        outcome = trigger_outcome(rules[t], ups)
        want[t] = ("success" if codes[t] == 0 else "failed") if outcome == "ready" else outcome
    expected = {}
    for t in names:
        if t == mapped:
            expected.update({f"{t}[0]": want[t], f"{t}[1]": want[t]})
        else:
            expected[t] = want[t]
    assert got == expected
    assert run_state == ("failed" if any(s in ("failed", "upstream_failed") for s in want.values()) else "success")


FAIL_THEN_PASS = """
tasks:
  a: {run: "test -e ok"}
  b: {run: "true", needs: [a]}
  c: {run: "true", needs: [b]}
  slow: {run: "while [ ! -e go ]; do sleep 0.02; done"}
"""


@pytest.mark.parametrize("who", ["other connection", "same connection", "second engine"])
def test_tasks_reset_behind_the_engines_back_are_started_again(tmp_path, who):
    """Like `retry` while a supervisor drives the run: a failed task and its upstream_failed
    downstream go back to pending, written by someone else; the engine starts them again."""
    root = make_project(tmp_path, {"p": FAIL_THEN_PASS})
    config, store, engine = _engine(root)
    try:
        pk = _start(engine, config, "p")
        assert _step_until(engine, lambda: _states(store, pk)["c"] == "upstream_failed")
        assert _states(store, pk) == {"a": "failed", "b": "upstream_failed", "c": "upstream_failed", "slow": "running"}
        for _ in range(3):  # the engine has settled views of this run
            engine.step()
        (root / "ok").touch()
        ids = {ti.task: ti.id for ti in store.task_instances(pk)}
        if who == "other connection":
            other = open_store(config)
            try:
                with other.tx():
                    for t in "abc":
                        other.reset_task_instance(ids[t])
            finally:
                other.close()
        else:
            writer = store if who == "same connection" else Engine(config, store, Clock())
            if who == "second engine":
                writer.step()  # it has views of its own, and reads the change log too
            with store.tx():
                for t in "abc":
                    store.reset_task_instance(ids[t])
        assert _step_until(engine, lambda: _states(store, pk)["c"] == "success")
        assert _states(store, pk) == {"a": "success", "b": "success", "c": "success", "slow": "running"}
        (root / "go").touch()
        assert _step_until(engine, lambda: store.run(pk).state == "success")
        tries = {t.task: t.try_number for t in store.tries_for_run(pk)}
        assert tries == {"a": 2, "b": 1, "c": 1, "slow": 1}
    finally:
        (root / "go").touch()
        store.close()


def test_task_finished_by_another_process_starts_its_downstream(tmp_path):
    """Another process (a wrapper's reaper, a tick) records an upstream's end: the engine's
    next step starts the downstream from that, not from its own stale view."""
    root = make_project(tmp_path, {"p": """
        tasks:
          a: {run: "while [ ! -e go ]; do sleep 0.02; done"}
          b: {run: "true", needs: [a]}
    """})
    config, store, engine = _engine(root)
    other_store = open_store(config)
    try:
        pk = _start(engine, config, "p")
        for _ in range(3):
            engine.step()
        assert _states(store, pk) == {"a": "running", "b": "pending"}
        (root / "go").touch()
        other = Engine(config, other_store, Clock())
        assert _step_until(other, lambda: _states(store, pk)["a"] == "success" and _states(store, pk)["b"] != "pending")
        # `other` launched b itself; our engine only has to see it through to the end
        assert _step_until(engine, lambda: store.run(pk).state == "success")
        assert [(t.task, t.try_number) for t in store.tries_for_run(pk)] == [("a", 1), ("b", 1)]
    finally:
        other_store.close()
        store.close()
