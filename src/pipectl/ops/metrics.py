"""``pipectl metrics``: the state file in Prometheus text exposition format (0.0.4).

Meant for node_exporter's textfile collector: run ``pipectl metrics --output
/var/lib/node_exporter/textfile_collector/pipectl.prom`` from cron or a hook;
the file is replaced atomically so the collector never reads half of it.

Run counts are gauges, not counters: ``prune`` deletes old runs, so the
numbers can go down. Every sample carries a ``project`` label so several
projects can share one collector directory.
"""
from __future__ import annotations

import os
import tempfile

from pipectl.model.states import RUN_STATES, RUNNING


def escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


class _Writer:
    def __init__(self, project: str):
        self.project = project
        self.out: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples: list[tuple[dict, float]]) -> None:
        self.out.append(f"# HELP {name} {help_}")
        self.out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            all_labels = {"project": self.project, **labels}
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in all_labels.items())
            self.out.append(f"{name}{{{text}}} {_fmt(value)}")

    def text(self) -> str:
        return "\n".join(self.out) + "\n"


def collect(config, store, pipelines: list[str] | None = None) -> str:
    """The exposition text. ``pipelines``: names to report even with no runs yet."""
    w = _Writer(config.root)
    w.family("pipectl_build_info", "gauge", "1, with the version of pipectl that wrote these metrics.",
             [({"version": _version()}, 1)])
    names = sorted(set(pipelines or ()) | set(store.pipeline_rows()))

    counts: dict[tuple[str, str], int] = {}
    for r in store.run_counts():
        counts[(r.pipeline, r.state)] = r.n
        if r.pipeline not in names:
            names.append(r.pipeline)
    names = sorted(names)
    w.family("pipectl_runs", "gauge", "Runs in the state file, by pipeline and state.",
             [({"pipeline": p, "state": s}, counts.get((p, s), 0)) for p in names for s in RUN_STATES])

    last_ok = store.last_success_ends()
    w.family("pipectl_last_success_timestamp_seconds", "gauge",
             "When the pipeline's most recent successful run ended (Unix time).",
             [({"pipeline": p}, last_ok[p]) for p in names if p in last_ok])

    finished = [r for r in store.last_finished_runs() if r.start is not None and r.end is not None]
    w.family("pipectl_last_run_duration_seconds", "gauge",
             "Duration of the pipeline's most recently finished run.",
             [({"pipeline": r.pipeline, "state": r.state}, max(r.end - r.start, 0.0)) for r in finished])

    ti: dict[tuple[str, str], int] = {}
    for r in store.active_ti_counts():
        kind = "running" if r.state == RUNNING else "waiting"
        ti[(r.pipeline, kind)] = ti.get((r.pipeline, kind), 0) + r.n
    w.family("pipectl_task_instances", "gauge",
             "Task instances of unfinished runs: running, or waiting (pending, up_for_retry).",
             [({"pipeline": p, "state": s}, ti.get((p, s), 0)) for p in names for s in ("running", "waiting")])

    rows = store.pipeline_rows()
    w.family("pipectl_pipeline_paused", "gauge", "1 when the pipeline is paused.",
             [({"pipeline": p}, int(rows[p].paused)) for p in names if p in rows])
    w.family("pipectl_pipeline_valid", "gauge", "0 when the pipeline's spec is invalid and ticks skip it.",
             [({"pipeline": p}, int(rows[p].valid)) for p in names if p in rows])
    # the owner as an info series (join on pipeline), not a label on every series: an owner
    # change would otherwise split each series in two
    owners = {p: _owner(rows[p].spec) for p in names if p in rows}
    w.family("pipectl_pipeline_info", "gauge", "1 per pipeline, with its owner (the spec's owner: key).",
             [({"pipeline": p, "owner": owners[p]}, 1) for p in names if owners.get(p)])

    last_tick = store.get_meta("last_tick")
    w.family("pipectl_last_tick_timestamp_seconds", "gauge", "When the last tick ran (Unix time).",
             [({}, float(last_tick))] if last_tick else [])

    misses = store.sla_miss_counts()
    if misses is not None:
        w.family("pipectl_sla_misses", "gauge", "SLA misses recorded, by pipeline.",
                 [({"pipeline": p}, misses.get(p, 0)) for p in sorted(set(names) | set(misses))])
    return w.text()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("pipectl")
    except PackageNotFoundError:
        return "unknown"


def _owner(spec) -> str | None:
    from pipectl.state.store import loads
    try:
        snapshot = loads(spec) if spec else None
    except ValueError:
        return None
    return snapshot.get("owner") if isinstance(snapshot, dict) else None


def publish(config, text: str, output: str) -> None:
    """Write the exposition to ``output`` in one rename; private when it sits in the state
    directory, readable by a collector running as another user elsewhere. OSError on failure."""
    inside = os.path.realpath(output).startswith(os.path.realpath(config.state_dir) + os.sep)
    write_atomic(output, text, mode=0o600 if inside else 0o644)


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` in one rename, as the textfile collector requires."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".pipectl-metrics.", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)  # the collector runs as another user; metrics hold no secrets
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
