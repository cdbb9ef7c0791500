"""Terminal output: rich consoles, state colours, cells, tables, the DAG drawing, JSON.

Imported by commands only (never at CLI import). rich is imported inside the
functions that draw, so ``--json`` output never pays for it; JSON never goes
through rich: it must stay byte-for-byte plain for scripts.
"""
from __future__ import annotations

import json
import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from pipectl.model.states import FAILED, PENDING, QUEUED, RUNNING, SKIPPED, SUCCESS, UPSTREAM_FAILED, UP_FOR_RETRY
from pipectl.timing.clock import UTC

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree

# Task instance states and run states share one palette: a colour means the same
# thing in `status`, `grid`, `graph` and `show`.
STATE_STYLES: dict[str, str] = {
    # task instances
    PENDING: "grey62",
    RUNNING: "bold cyan",
    UP_FOR_RETRY: "yellow",
    SUCCESS: "green",
    FAILED: "bold red",
    UPSTREAM_FAILED: "dark_orange",
    SKIPPED: "magenta",
    # runs
    QUEUED: "grey62",
    # pipelines
    "paused": "yellow",
    "invalid": "bold red",
    "active": "green",
}

# One glyph per state so a cell still says its state with colour off (NO_COLOR,
# pipes, colour-blind readers); ASCII twins for terminals that cannot show Unicode.
STATE_GLYPHS: dict[str, tuple[str, str]] = {
    PENDING: ("·", "."),
    QUEUED: ("○", "o"),
    RUNNING: ("▶", ">"),
    UP_FOR_RETRY: ("↻", "r"),
    SUCCESS: ("✔", "+"),
    FAILED: ("✘", "X"),
    UPSTREAM_FAILED: ("⊘", "^"),
    SKIPPED: ("»", "s"),
}
NO_STATE = ("-", "-")


def make_console(color: bool = True, stderr: bool = False, width: int | None = None) -> Console:
    """A Console that honours ``--no-color`` and ``NO_COLOR`` and never highlights numbers on its own."""
    from rich.console import Console

    no_color = not color or bool(os.environ.get("NO_COLOR"))
    file = sys.stderr if stderr else sys.stdout
    if width is None and not file.isatty() and not os.environ.get("COLUMNS"):
        # Piped output is read by people in logs and mails: don't squeeze tables into 80 columns.
        width = 160
    return _masking_console()(
        file=file,
        no_color=no_color,
        color_system=None if no_color else "auto",
        highlight=False,
        emoji=False,
        width=width,
        soft_wrap=False,
    )


_MASKING_CONSOLE = None


def _masking_console():
    """A Console class that masks secrets in every string and Text before laying it out.

    The stream under it masks too, but a table may wrap a long cell over two lines, and
    a secret cut in half is no longer one string the stream can find.
    """
    global _MASKING_CONSOLE
    if _MASKING_CONSOLE is None:
        from rich.console import Console
        from rich.text import Text

        from pipectl.spec.secrets import current, mask
        class MaskingConsole(Console):
            def render_str(self, text: str, **kw):
                return super().render_str(mask(text, current()), **kw)

            def render(self, renderable, options=None):
                if isinstance(renderable, Text):
                    values = current()
                    plain = renderable.plain
                    if values and mask(plain, values) != plain:
                        # the spans no longer fit the text: keep the base style only
                        renderable = Text(mask(plain, values), style=renderable.style, justify=renderable.justify,
                                          overflow=renderable.overflow, no_wrap=renderable.no_wrap, end=renderable.end)
                return super().render(renderable, options)

        _MASKING_CONSOLE = MaskingConsole
    return _MASKING_CONSOLE


def _unicode_ok(console: Console | None) -> bool:
    enc = (console.encoding if console is not None else getattr(sys.stdout, "encoding", None)) or ""
    return enc.lower().replace("-", "").startswith("utf")


def state_style(state: str | None) -> str:
    return STATE_STYLES.get(state or "", "")


def state_text(state: str | None, label: str | None = None) -> Text:
    """The state's name (or ``label``) in the state's colour."""
    from rich.text import Text

    return Text(label if label is not None else (state or "-"), style=state_style(state))


def state_glyph(state: str | None, console: Console | None = None) -> str:
    pair = STATE_GLYPHS.get(state or "", NO_STATE)
    return pair[0] if _unicode_ok(console) else pair[1]


def state_cell(state: str | None, console: Console | None = None) -> Text:
    """A one-character coloured cell for grids and "recent runs" strips."""
    from rich.text import Text

    return Text(state_glyph(state, console), style=state_style(state))


def state_cells(states: Iterable[str | None], console: Console | None = None) -> Text:
    """A strip of cells, oldest first, e.g. the recent runs of a pipeline."""
    from rich.text import Text

    out = Text()
    for s in states:
        out.append_text(state_cell(s, console))
    return out


def legend(states: Iterable[str], console: Console | None = None) -> Text:
    from rich.text import Text

    out = Text()
    for i, s in enumerate(states):
        if i:
            out.append("  ")
        out.append_text(state_cell(s, console))
        out.append(" " + s, style="dim")
    return out


def table(*columns: str, title: str | None = None, right: Iterable[str] = ()) -> Table:
    """A quiet table: bold header, no box lines between rows; ``right`` columns right-aligned."""
    from rich import box
    from rich.table import Table

    right = set(right)
    t = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0),
              show_edge=False, title_justify="left", expand=False)
    for c in columns:
        # fold, never cut: a time or a path cut to "2026-12-02T00…" is useless
        t.add_column(c, justify="right" if c in right else "left", no_wrap=False, overflow="fold")
    return t


def narrow(console: Console) -> bool:
    """Below 80 columns the wide tables give way to one block per item."""
    return console.width < 80


def dash(value: Any = None) -> str:
    """Empty cells print as ``-`` so columns stay readable."""
    return "-" if value is None or value == "" else str(value)


# --------------------------------------------------------------------------- times and paths

def _aware(value: Any) -> datetime | None:
    """An ISO string, an epoch or a datetime as an aware datetime (None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def local_time(value: Any, tz: str | None = None, now: datetime | None = None, seconds: bool = False,
               date: bool = True, year: bool = False) -> str:
    """A compact wall-clock time in ``tz`` (the pipeline's zone): ``04-03 02:00``.

    The year shows only when it differs from ``now``'s; tables stay narrow and the
    time of day always survives. ``-`` for no time.
    """
    dt = _aware(value)
    if dt is None:
        return "-"
    if tz:
        from zoneinfo import ZoneInfo

        try:
            dt = dt.astimezone(ZoneInfo(tz))
        except Exception:  # an unknown zone in an old snapshot: UTC is still the truth
            dt = dt.astimezone(UTC)
    clock = dt.strftime("%H:%M:%S" if seconds else "%H:%M")
    if not date:
        return clock
    ref = _aware(now) or datetime.now(UTC)
    day = dt.strftime("%m-%d") if not year and dt.year == ref.astimezone(dt.tzinfo).year else dt.strftime("%Y-%m-%d")
    return f"{day} {clock}"


_INSTANT = None


def local_due_times_in(text: str, clock) -> str:
    """``text`` with each due time in it ("retry at 2026-04-10T09:01:00.016+00:00") spelled by
    ``clock``, the view's compact local form. Only instants after "at " change: a logical date
    in a message ("manual run for 2026-04-01T00:00:00+00:00") names a run, and a local wall time
    would misname it. The stored message and JSON keep ISO."""
    global _INSTANT
    if _INSTANT is None:
        import re

        _INSTANT = re.compile(r"(?<=\bat )\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})")
    return _INSTANT.sub(lambda m: clock(m.group(0)), text)


def human_age(seconds: float | None, precise: bool = False) -> str:
    """A duration as people say it: ``45s``, ``3m``, ``5h12m``, ``240d``; ``precise`` keeps the
    next unit down (``2m05s``, ``3d04h``) for countdowns that tick while one watches."""
    if seconds is None:
        return "-"
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if precise else f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m:02d}m" if m or precise else f"{h}h"
    d, h = divmod(s // 3600, 24)
    if precise:
        return f"{d}d{h:02d}h"
    if d >= 10:  # at this scale hours are noise: the nearest day
        return f"{round(s / 86400)}d"
    return f"{d}d{h}h" if h else f"{d}d"


def ago(value: Any, now: datetime) -> str:
    """``3m ago`` / ``in 5h`` relative to ``now``."""
    dt = _aware(value)
    if dt is None:
        return "-"
    delta = (now - dt).total_seconds()
    return f"{human_age(delta)} ago" if delta >= 0 else f"in {human_age(delta)}"


def short_path(path: str | None, base: Any = None) -> str:
    """A log path to copy: relative to ``base`` (the working directory) when under it,
    else whole. Never cut."""
    if not path:
        return "-"
    if base is not None:
        try:
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(str(base)))
        except ValueError:
            return path
        if not rel.startswith(".."):
            return rel
    return path


# --------------------------------------------------------------------------- graph

def layers(pipeline: Any) -> list[list[str]]:
    """Tasks in topological layers: a task sits one layer below its deepest upstream.

    Within a layer tasks keep file order. Assumes a validated (acyclic) pipeline;
    a cycle is broken rather than looped on.
    """
    tasks = pipeline.tasks
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def d(name: str) -> int:
        if name in depth:
            return depth[name]
        if name in visiting:
            return 0
        visiting.add(name)
        ups = [u for u in tasks[name].needs if u in tasks]
        depth[name] = 1 + max((d(u) for u in ups), default=-1)
        visiting.discard(name)
        return depth[name]

    for name in tasks:
        d(name)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in tasks:
        out[depth[name]].append(name)
    return out


def _task_kind(task: Any) -> str:
    bits = []
    if getattr(task, "sensor", None) is not None:
        bits.append(f"sensor: {task.sensor.kind}")
    fe = getattr(task, "foreach", None)
    if isinstance(fe, tuple):
        bits.append(f"foreach ×{len(fe)}")
    elif fe is not None:
        bits.append("foreach: command")
    if getattr(task, "pool", None):
        bits.append(f"pool {task.pool}")
    if getattr(task, "trigger_rule", "all_success") != "all_success":
        bits.append(task.trigger_rule)
    return ", ".join(bits)


def _state_of(name: str, states: Mapping[str, str] | None) -> str | None:
    """A task's state; a mapped task's instances (``t[0]``, ``t[1]``) summarised by the worst."""
    if not states:
        return None
    if name in states:
        return states[name]
    mapped = [s for k, s in states.items() if k.startswith(name + "[")]
    for s in (FAILED, UPSTREAM_FAILED, RUNNING, UP_FOR_RETRY, PENDING, QUEUED, SKIPPED, SUCCESS):
        if s in mapped:
            return s
    return None


def graph(pipeline: Any, states: Mapping[str, str] | None = None, console: Console | None = None) -> Tree:
    """The DAG as a tree of layers; each task shows its upstreams (``← a, b``).

    A chain reads top to bottom one task per layer; a fan-in shows the joining task
    one layer below all its inputs, listing them.
    """
    from rich.text import Text
    from rich.tree import Tree

    n = len(pipeline.tasks)
    root = Tree(Text.assemble((pipeline.name, "bold"), f"  ({n} task{'s' if n != 1 else ''})"), guide_style="dim")
    arrow = "←" if _unicode_ok(console) else "<-"
    for i, layer in enumerate(layers(pipeline), 1):
        branch = root.add(Text(f"layer {i}", style="dim"))
        for name in layer:
            task = pipeline.tasks[name]
            state = _state_of(name, states)
            line = Text()
            if states is not None:
                line.append_text(state_cell(state, console))
                line.append(" ")
            line.append(name, style=state_style(state) or "bold")
            if task.needs:
                line.append(f"  {arrow} {', '.join(task.needs)}", style="dim")
            kind = _task_kind(task)
            if kind:
                line.append(f"  [{kind}]", style="dim italic")
            if states is not None and state:
                line.append(f"  {state}", style=state_style(state))
            branch.add(line)
    return root


def graph_data(pipeline: Any, states: Mapping[str, str] | None = None) -> dict:
    """``graph --json``: layers plus each task's upstreams and downstreams."""
    return {
        "pipeline": pipeline.name,
        "layers": layers(pipeline),
        "tasks": {
            name: {
                "needs": list(t.needs),
                "downstream": list(pipeline.downstream(name)),
                **({"state": _state_of(name, states)} if states is not None else {}),
            }
            for name, t in pipeline.tasks.items()
        },
    }


def graph_text(pipeline: Any, fmt: str, states: Mapping[str, str] | None = None) -> str:
    """The DAG as Graphviz ``dot`` or a Mermaid flowchart, one edge per line, tasks in file order.
    Names are quoted, so any task name is a node id; with ``states`` each node says its state."""
    def label(name: str) -> str:
        state = _state_of(name, states) if states is not None else None
        return f"{name} ({state})" if state else name

    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    names = list(pipeline.tasks)
    edges = [(up, name) for name, t in pipeline.tasks.items() for up in t.needs]
    if fmt == "dot":
        lines = [f"digraph {q(pipeline.name)} {{", "  rankdir=LR;"]
        lines += [f"  {q(n)} [label={q(label(n))}];" for n in names]
        lines += [f"  {q(a)} -> {q(b)};" for a, b in edges]
        return "\n".join(lines + ["}"])
    ids = {n: f"t{i}" for i, n in enumerate(names)}  # mermaid ids are words; the label carries the name
    lines = ["flowchart LR"]
    lines += ['  ' + ids[n] + '["' + label(n).replace('"', "#quot;") + '"]' for n in names]
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in edges]
    return "\n".join(lines)


def lineage_text(lineage: dict, fmt: str) -> str:
    """``graph --assets``: producer task -> asset -> consumer pipeline, as text, dot or mermaid."""
    assets = lineage["assets"]
    if fmt == "text":
        if not assets:
            return "no assets: no task declares `produces` and no schedule waits on one"
        lines = []
        for name, sides in assets.items():
            lines.append(name)
            lines.append("  produced by " + (", ".join(sides["producers"]) or "nothing (no task produces it)"))
            lines.append("  consumed by " + (", ".join(sides["consumers"]) or "nothing"))
        return "\n".join(lines)
    edges = [(prod, name) for name, sides in assets.items() for prod in sides["producers"]]
    edges += [(name, cons) for name, sides in assets.items() for cons in sides["consumers"]]
    nodes = list(dict.fromkeys([n for e in edges for n in e] + list(assets)))
    if fmt == "dot":
        def q(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines = ['digraph "assets" {', "  rankdir=LR;"]
        lines += [f"  {q(n)} [shape={'ellipse' if n in assets else 'box'}];" for n in nodes]
        lines += [f"  {q(a)} -> {q(b)};" for a, b in edges]
        return "\n".join(lines + ["}"])
    ids = {n: f"n{i}" for i, n in enumerate(nodes)}
    lines = ["flowchart LR"]
    lines += ["  " + ids[n] + ('(["' if n in assets else '["') + n.replace('"', "#quot;") + ('"])' if n in assets else '"]')
              for n in nodes]
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in edges]
    return "\n".join(lines)


# --------------------------------------------------------------------------- JSON

def _json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, date):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Mapping):
        return dict(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False)


def print_json(obj: Any) -> None:
    """The one way pipectl prints JSON: plain ``json.dumps``, indent 2, newline, stdout."""
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()
