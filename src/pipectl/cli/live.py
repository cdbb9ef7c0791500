"""The live view (``status --watch``, ``top``): what is running, what waits and why,
SLA countdowns, the last failures.

Two halves: :func:`build` reads the state file and returns plain data (no rich, no
clock of its own: the caller passes ``now``), and :func:`frame` draws that data for
a given width. :func:`watch` loops the two under rich's Live until Ctrl-C.

Only the watch command imports this module: the tick's import path never sees it.
Everything is read from each run's own spec snapshot, so the view keeps working
while a pipeline's YAML is broken, and it never parses YAML once a second.
"""
from __future__ import annotations

import signal
import time
from datetime import datetime
from typing import Any, Callable

from pipectl.model.pipeline import Pipeline, ProjectConfig
from pipectl.model.states import FAILED, PENDING, QUEUED, RUNNING, TI_ACTIVE, UP_FOR_RETRY
from pipectl.state.store import Store, existing_store, loads
from pipectl.timing.clock import UTC
# Below this many columns each item is drawn as lines instead of a table row, so
# nothing crucial (elapsed time, the reason, a log path) is squeezed out.
NARROW = 80
WAITING_STATES = (PENDING, UP_FOR_RETRY)


# --------------------------------------------------------------------------- the view model

def open_readonly(config: ProjectConfig) -> Store | None:
    """The state file opened for reading only, or None when no tick has created it yet."""
    return existing_store(config, readonly=True)


def build(store: Store | None, config: ProjectConfig, now: float, pipeline: str | None = None,
          limit: int = 20, specs: dict | None = None) -> dict:
    """Everything one frame shows, as plain data (times are epoch seconds, spans seconds).

    ``limit`` bounds each list (its true length is in ``counts``); ``specs`` is an
    optional cache of parsed run snapshots (run id -> Pipeline) kept between frames.
    """
    specs = {} if specs is None else specs
    out: dict[str, Any] = {"now": now, "project": config.root, "pipeline": pipeline, "last_tick": None,
                           "notes": [], "running": [], "waiting": [], "sla": [], "failures": [],
                           "counts": {"running": 0, "waiting": 0, "sla": 0, "failures": 0,
                                      "runs_running": 0, "runs_queued": 0}}
    if store is None:
        out["notes"].append("no state file yet: nothing has run (`pipectl tick` creates it)")
        return out
    tick = store.get_meta("last_tick")
    out["last_tick"] = float(tick) if tick else None
    for name, row in sorted(store.pipeline_rows().items()):
        if pipeline is not None and name != pipeline:
            continue
        if row.paused:
            out["notes"].append(f"{name} is paused")
        if not row.valid and row.error:
            out["notes"].append(f"{name} spec is invalid: {row.error}")
    active = store.active_runs()
    for gone in set(specs) - {r.id for r in active}:  # finished runs leave the cache
        del specs[gone]
    runs = [r for r in active if pipeline is None or r.pipeline == pipeline]
    by_id = {r.id: r for r in runs}
    counts = out["counts"]
    counts["runs_running"] = sum(r.state == RUNNING for r in runs)
    counts["runs_queued"] = sum(r.state == QUEUED for r in runs)

    def spec(run) -> Pipeline | None:
        if run.id not in specs:
            try:
                specs[run.id] = Pipeline.from_dict(loads(store.run_spec(run.id)))
            except Exception:  # noqa: BLE001 - a snapshot this version cannot read: show the run without it
                specs[run.id] = None
        return specs[run.id]

    # running tries, oldest first: the one running longest is the one to look at
    for t in store.active_tries():
        run = by_id.get(t.run)
        if run is None:
            continue
        counts["running"] += 1
        if len(out["running"]) < limit:
            start = t.start
            out["running"].append({
                **_run_keys(run, spec(run)), "task": t.task, "try": t.try_number, "start": start,
                "elapsed": max(0.0, now - start) if start else None,
                "timeout_in": (start + t.timeout - now) if start and t.timeout else None,
                "log": t.log_path,
            })

    # waiting task instances: running runs task by task (DAG order), then queued runs one line each
    why_of = waiting_reasons(store, config, now, spec)
    for run in sorted(runs, key=lambda r: r.state != RUNNING):
        p = spec(run)
        if run.state == QUEUED:
            counts["waiting"] += 1
            if len(out["waiting"]) < limit:
                reasons = why_of(run, p)
                why = reasons[0]["why"] if reasons else "run is queued"
                out["waiting"].append({**_run_keys(run, p), "task": None, "state": QUEUED, "why": why, "due": None})
            continue
        tis = [ti for ti in store.task_instances(run.id) if ti.state in WAITING_STATES]
        counts["waiting"] += len(tis)
        room = limit - len(out["waiting"])
        if not tis or room <= 0:
            continue
        whys = {r["task"]: r["why"] for r in why_of(run, p)}
        for ti in _dag_order(tis, p)[:room]:
            due = ti.next_try_at if ti.state == UP_FOR_RETRY else ti.sensor_next
            out["waiting"].append({**_run_keys(run, p), "task": ti.task, "state": ti.state,
                                   "why": whys.get(ti.task, ti.state),
                                   "due": due, "due_in": (due - now) if due else None})

    if why_of.error:
        out["notes"].append(f"why tasks wait is unknown this frame ({why_of.error})")

    # SLA countdowns: every unfinished run or task instance with an SLA, soonest deadline first
    slas = []
    for run in runs:
        p = spec(run)
        if p is None:
            continue
        task_slas = {n: t.sla for n, t in p.tasks.items() if t.sla}
        if not p.sla and not task_slas:
            continue
        from pipectl.engine.sla import anchor
        start = anchor(run)
        if p.sla:
            slas.append({**_run_keys(run, p), "task": None, "deadline": start + p.sla})
        if task_slas:
            for ti in store.task_instances(run.id):
                if ti.base in task_slas and ti.state in TI_ACTIVE:
                    slas.append({**_run_keys(run, p), "task": ti.task, "deadline": start + task_slas[ti.base]})
    slas.sort(key=lambda s: s["deadline"])
    counts["sla"] = len(slas)
    for s in slas[:limit]:
        s["left"] = s["deadline"] - now
        out["sla"].append(s)

    # the last failures, newest first, each with the log of its last try
    fails = store.recent_failures(limit, pipeline=pipeline)
    counts["failures"] = len(fails)
    for f in fails:
        out["failures"].append({
            "pipeline": f.pipeline, "run_id": f.run_id, "ds": f.ds,
            "label": _label(f.ds, f.logical_date, None), "task": f.task, "try": f.try_number,
            "exit_code": f.exit_code, "reason": f.reason, "end": f.end,
            "ago": (now - f.end) if f.end else None, "log": f.log_path,
        })
    return out


def waiting_reasons(store: Store, config: ProjectConfig, now: float, spec_of: Callable) -> Callable:
    """``why(run, pipeline) -> [{task, state, why}]``: why a run's task instances (or a queued
    run itself, ``task`` None) are not running yet.

    The one place the live view asks: the rulebook replays one engine step over the whole
    state file (once per frame, and only when something waits), so every reason is what
    dispatch would do and what ``explain`` says.
    """
    from pipectl.engine import explain
    step: list = []

    def why(run, pipeline: Pipeline | None) -> list[dict]:
        if pipeline is None:
            return []
        if not step:
            try:
                step.append(explain.plan(store, config, now, spec_of=spec_of))
            except Exception as e:  # noqa: BLE001 - e.g. a snapshot this version cannot read: the rest still shows
                step.append(None)
                why.error = f"{type(e).__name__}: {e}"
        if step[0] is None:
            return []
        if run.id in step[0].run_notes:
            return [{"task": None, "state": run.state, "why": step[0].run_notes[run.id]}]
        return [v.as_dict() for v in explain.explain_run(store, config, run, pipeline, now, step[0])]

    why.error = None
    return why


def _dag_order(tis: list, pipeline: Pipeline | None) -> list:
    if pipeline is None:
        return tis
    order = {name: i for i, name in enumerate(_topo(pipeline))}
    return sorted(tis, key=lambda ti: (order.get(ti.base, len(order)), ti.id))


def _topo(pipeline: Pipeline) -> list[str]:
    """Tasks in dependency order, file order among equals."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: frozenset = frozenset()) -> None:
        if name in seen or name in path or name not in pipeline.tasks:
            return
        for up in pipeline.tasks[name].needs:
            visit(up, path | {name})
        seen.add(name)
        done.append(name)

    for name in pipeline.tasks:
        visit(name)
    return done


def _run_keys(run, pipeline: Pipeline | None) -> dict:
    tz = pipeline.timezone if pipeline is not None else None
    return {"pipeline": run.pipeline, "run_id": run.run_id, "ds": run.ds,
            "label": _label(run.ds, run.logical_date, tz), "timezone": tz or "UTC"}


def _label(ds: str, logical_date: datetime, tz: str | None) -> str:
    """A run as people name it: its ds, plus the time of day when it is not midnight
    (a pipeline that runs several times a day has several runs per ds)."""
    dt = logical_date
    try:
        if tz:
            from zoneinfo import ZoneInfo

            dt = dt.astimezone(ZoneInfo(tz))
    except (TypeError, ValueError, KeyError):
        return ds
    if (dt.hour, dt.minute, dt.second) == (0, 0, 0) or dt.date().isoformat() != ds:
        return ds
    return f"{ds} {dt:%H:%M}"


# --------------------------------------------------------------------------- drawing

def span(seconds: float | None) -> str:
    """A compact span: ``45s``, ``2m05s``, ``1h02m``, ``3d04h``."""
    from pipectl.cli import render
    return render.human_age(seconds, precise=True)


def _clock_time(ts: float, now: float, tz: str) -> str:
    """``HH:MM ZONE`` in the pipeline's timezone, with the date when it is not today there."""
    from zoneinfo import ZoneInfo

    try:
        zone = ZoneInfo(tz)
    except Exception:  # noqa: BLE001 - a snapshot naming a zone this machine lacks
        zone = ZoneInfo("UTC")
    dt = datetime.fromtimestamp(ts, zone)
    day = "" if dt.date() == datetime.fromtimestamp(now, zone).date() else f"{dt:%m-%d} "
    return f"{day}{dt:%H:%M} {dt:%Z}"


def _sla_words(s: dict, now: float) -> str:
    when = _clock_time(s["deadline"], now, s["timezone"])
    if s["left"] < 0:
        return f"MISSED {span(s['left'])} ago ({when})"
    return f"{span(s['left'])} left ({when})"


def _fail_words(f: dict) -> str:
    bits = []
    if f["exit_code"] is not None:
        bits.append(f"exit {f['exit_code']}")
    if f["reason"] and f["reason"] != "exit_code":
        bits.append(f["reason"])
    if f["try"]:
        bits.append(f"try {f['try']}")
    if f["ago"] is not None:
        bits.append(f"{span(f['ago'])} ago")
    return ", ".join(bits)


SECTIONS = ("running", "waiting", "sla", "failures")


def frame(model: dict, width: int, caps: dict | None = None, live: bool = True, console=None):
    """The rich renderable of one frame at ``width`` columns; ``caps`` shows at most that many
    items of a section (its heading says how many are left out).

    One item per line with its facts in columns; what needs room (why a task waits, a
    log path) goes on a line of its own and wraps rather than being cut. Below
    ``NARROW`` columns nothing is padded and a log path starts at column 0, so it
    breaks across as few lines as possible. ``console`` decides Unicode or ASCII glyphs
    (under Live, sys.stdout is Live's proxy and says nothing about the terminal).
    """
    from rich.console import Group
    from rich.text import Text

    from pipectl.cli import render
    now = model["now"]
    narrow = width < NARROW
    caps = caps or {}
    shown = {k: model[k][:caps.get(k, len(model[k]))] for k in SECTIONS}
    c = model["counts"]
    parts: list = []
    head = Text()
    head.append("pipectl live", style="bold")
    if model["pipeline"]:
        head.append(f" {model['pipeline']}", style="bold")
    head.append(f"  {datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M:%S} UTC")
    tick = model["last_tick"]
    head.append(f"  last tick {'never' if tick is None else span(now - tick) + ' ago'}")
    parts.append(head)
    parts.append(Text(f"runs: {c['runs_running']} running, {c['runs_queued']} queued"
                      + ("  (Ctrl-C quits)" if live else ""), style="dim"))
    parts.append(Text(f"project: {model['project']}", style="dim", overflow="fold"))
    for n in model["notes"]:
        parts.append(Text(n, style="yellow", overflow="fold"))

    def heading(title: str, key: str) -> Text:
        total, n = c[key], len(shown[key])
        more = f", {total - n} not shown" if total > n else ""
        return Text(f"\n{title} ({total}{more})", style="bold")

    def columns(rows: list[list[tuple[str, str]]]) -> list:
        """Lines of (text, style) cells, padded to align when there is room; a line too long
        for the terminal wraps under its own indent."""
        widths = [max((len(r[i][0]) for r in rows), default=0) for i in range(len(rows[0]))] if rows else []
        out = []
        for r in rows:
            cells = [(txt if narrow or i == len(r) - 1 else txt.ljust(widths[i]), style) for i, (txt, style) in enumerate(r)]
            while cells and not cells[-1][0].strip():
                cells.pop()
            line = Text()
            for i, (txt, style) in enumerate(cells):
                if i:
                    line.append(" " if narrow else "  ")
                line.append(txt, style=style)
            line.rstrip()
            out.append(_indent(line, 2))
        return out

    glyph = {k: render.state_glyph(k, console) for k in (RUNNING, PENDING, UP_FOR_RETRY, QUEUED, FAILED)}
    parts.append(heading("Running", "running"))
    parts += columns([[(glyph[RUNNING], "bold cyan"), (r["pipeline"], ""), (r["label"], ""), (r["task"], "bold"),
                       (f"try {r['try']}", ""), (span(r["elapsed"]), "bold cyan"),
                       (f"timeout in {span(r['timeout_in'])}" if r["timeout_in"] is not None else "", "dim")]
                      for r in shown["running"]])

    parts.append(heading("Waiting", "waiting"))
    rows = [[(glyph.get(w["state"], "-"), render.state_style(w["state"])), (w["pipeline"], ""), (w["label"], ""),
             (w["task"] or "(whole run)", "bold"), (w["state"], render.state_style(w["state"]))]
            for w in shown["waiting"]]
    for w, line in zip(shown["waiting"], columns(rows)):
        parts.append(line)
        # the rulebook's words carry the times (retry at, next check, in how long)
        parts.append(_indent(Text(w["why"], style="yellow" if w["due"] else "dim"), 4 if narrow else 6))

    parts.append(heading("SLA", "sla"))
    parts += columns([[(s["pipeline"], ""), (s["label"], ""), (s["task"] or "(run)", "bold"),
                       (_sla_words(s, now), "bold red" if s["left"] < 0 else "")] for s in shown["sla"]])

    parts.append(heading("Last failures", "failures"))
    rows = [[(glyph[FAILED], "bold red"), (f["pipeline"], ""), (f["label"], ""), (f["task"], "bold red"),
             (_fail_words(f), "")] for f in shown["failures"]]
    for f, line in zip(shown["failures"], columns(rows)):
        parts.append(line)
        path = render.short_path(f["log"], model["project"])
        if narrow and len(path) + 4 > width:
            parts.append(Text(path, overflow="fold"))  # from column 0: it breaks across as few lines as possible
        else:
            parts.append(_indent(Text(("log: " if not narrow else "") + path, overflow="fold"), 4 if narrow else 6))
    return Group(*parts)


def fitted(model: dict, console):
    """The frame, with the longest lists shortened until it fits the terminal's height
    (failures, whose log paths matter most, are shortened last)."""
    caps = {k: len(model[k]) for k in SECTIONS}
    options = console.options.update(height=None)
    for _ in range(12):
        r = frame(model, console.width, caps, console=console)
        excess = len(console.render_lines(r, options, pad=False)) - console.height
        if excess <= 0:
            return r
        k = max(caps, key=lambda k: caps[k] - (4 if k == "failures" else 0))
        if caps[k] <= 1:
            return r
        per_item = 2 if k in ("waiting", "failures") else 1  # these draw a second line per item
        caps[k] = max(1, caps[k] - max(1, excess // per_item))
    return frame(model, console.width, caps, console=console)


def _indent(renderable, n: int = 2):
    from rich.padding import Padding

    return Padding(renderable, (0, 0, 0, n), expand=False)


# --------------------------------------------------------------------------- the loop

def watch(config: ProjectConfig, clock: Callable[[], float], console, interval: float = 1.0,
          pipeline: str | None = None, once: bool = False) -> None:
    """Redraw every ``interval`` seconds until Ctrl-C (or draw one frame with ``once``).

    Ctrl-C only sets a flag: the frame being drawn finishes, Live restores the
    cursor, and the command returns normally (exit 0, no traceback).
    """
    specs: dict = {}

    def current():
        store = open_readonly(config)
        try:
            model = build(store, config, clock(), pipeline=pipeline, specs=specs)
        finally:
            if store is not None:
                store.close()
        return model

    if once or not console.is_terminal:
        console.print(frame(current(), console.width, live=False, console=console))
        return
    from rich.live import Live

    stop = {"now": False}

    def on_signal(signum, _frame):
        stop["now"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Live(fitted(current(), console), console=console, auto_refresh=False, transient=False,
                  vertical_overflow="ellipsis") as live:
            while not stop["now"]:
                deadline = time.monotonic() + interval
                while not stop["now"] and time.monotonic() < deadline:
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                if not stop["now"]:
                    live.update(fitted(current(), console), refresh=True)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
