"""The test harness: build a project on disk, drive it, read its state.

Two ways to run the command line, both returning a ``subprocess.CompletedProcess``
(text ``stdout``/``stderr``, ``returncode``) and never raising on an exit code:

- :func:`call_cli` runs ``pipectl`` in this process: the real entry point
  (``pipectl.__main__.main``, quicktick included) with argv, environment, working
  directory and the standard streams swapped for the length of the call. No
  interpreter start and no imports per call; the default for what a command does.
- :func:`run_cli` runs ``python -m pipectl`` as a real subprocess, for tests where
  the process is the point: kill -9, processes racing for the lock, cron, import
  cost and latency, the detached timer and wrappers outliving their tick.

Tasks are real processes either way (the executor starts the wrapper as a
subprocess), and state is the real SQLite file.

:class:`Project` bundles a project directory with both and with the library-level
drivers ``tick``/``step`` and the state reads ``runs``/``tis``/``tries``.
The module-level readers (``q``, ``tis``, ``tries``, ``runs``, ...) take the project
root first, for tests written against a bare directory.
"""
from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "examples" / "quickstart"
ERROR_PREFIX = "pipectl: error: "

# Environment that would make a test depend on the developer's shell.
_SCRUB = ("PIPECTL_PROJECT", "PIPECTL_NOW", "PIPECTL_DEBUG", "NO_COLOR", "FORCE_COLOR", "COLUMNS")

BASE_TOML = """\
[pipectl]
pipelines = ["pipelines/*.yaml"]
state_dir = ".pipectl"
timezone = "UTC"
"""


# --------------------------------------------------------------------------- project on disk

def make_project(tmp_path: Path, specs: dict[str, str], toml_extra: str = "") -> Path:
    """Write ``pipectl.toml`` and ``pipelines/<name>.yaml`` for each spec; return the project dir.

    Keys are file names under ``pipelines/`` (``.yaml`` added when missing, so
    ``{"etl": "..."}`` writes ``pipelines/etl.yaml``); values are YAML text,
    dedented. ``toml_extra`` is appended to the toml (e.g. a ``[pools]`` table).
    """
    root = Path(tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipectl.toml").write_text(BASE_TOML + (textwrap.dedent(toml_extra) if toml_extra else ""))
    pdir = root / "pipelines"
    pdir.mkdir(exist_ok=True)
    for name, text in specs.items():
        fname = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
        path = pdir / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


# --------------------------------------------------------------------------- the command line

def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI call: the current one, scrubbed, plus ``env`` (a None value unsets)."""
    base = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    base["PYTHONUNBUFFERED"] = "1"
    base["COLUMNS"] = "200"  # stable line widths for output assertions
    for k, v in (env or {}).items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = str(v)
    return base


def run_cli(*args: object, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
            timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    """``python -m pipectl ARGS`` as a subprocess, text stdout/stderr captured.

    ``cwd`` defaults to a directory with no pipectl.toml above it (the system temp
    dir), so a test never picks up a stray project by accident.
    """
    return subprocess.run(
        [sys.executable, "-m", "pipectl", *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=str(cwd) if cwd is not None else tempfile.gettempdir(),
        timeout=timeout,
        input=input,
    )


class _Stream(io.StringIO):
    """A captured standard stream that looks like the pipe a subprocess would write to:
    not a terminal, UTF-8 (the CLI draws ``←`` rather than ``<-`` for a UTF-8 stream)."""

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return "strict"

    def isatty(self) -> bool:
        return False


def call_cli(*args: object, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
             timeout: float | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """``pipectl ARGS`` in this process, with :func:`run_cli`'s signature and result.

    For the call, ``os.environ`` is :func:`cli_env` (so tasks started by the command
    inherit it as they would from a real process), the working directory is ``cwd``
    (default: the system temp dir), stdin is ``input`` and stdout/stderr are
    captured. Everything is restored afterwards, including what the CLI keeps in
    module globals (the masking source, the command context). An exception that
    escapes ``main`` becomes exit 1 with its traceback on stderr, as the
    interpreter would report it. ``timeout`` is accepted for symmetry and ignored.
    """
    from pipectl.spec import secrets

    argv = [str(a) for a in args]
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_argv = sys.argv
    saved_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_secrets = secrets._source, secrets._known, secrets.reporting_error
    out, err = _Stream(), _Stream()
    code: Any = 0
    try:
        os.environ.clear()
        os.environ.update(cli_env(env))
        os.chdir(str(cwd) if cwd is not None else tempfile.gettempdir())
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(input or ""), out, err
        sys.argv = ["pipectl", *argv]
        secrets.set_source(None)
        secrets.reporting_error = False
        from pipectl.__main__ import main
        try:
            with process_begins_now():
                main()
        except SystemExit as e:
            code = e.code
        except Exception:  # noqa: BLE001 - what the interpreter would print and exit with
            traceback.print_exc(file=err)
            code = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for s, h in saved_handlers.items():
            signal.signal(s, h)
        secrets._source, secrets._known, secrets.reporting_error = saved_secrets
        _reset_cli_globals()
    if code is None:
        code = 0
    elif not isinstance(code, int):
        err.write(f"{code}\n")
        code = 1
    return subprocess.CompletedProcess(["pipectl", *argv], code, out.getvalue(), err.getvalue())


@contextmanager
def process_begins_now() -> Iterator[None]:
    """For the block, "when this process began" (a tick's budget counts from it) is now.

    A tick's time budget starts at its process's start; in process, that is
    pytest's start, and every tick past the budget's length would find itself
    out of time before it began.
    """
    try:
        from pipectl.engine import tick as tick_module
    except ImportError:
        yield
        return
    original = getattr(tick_module, "process_started", None)
    if original is None:
        yield
        return
    began = time.time()
    tick_module.process_started = lambda: began
    try:
        yield
    finally:
        tick_module.process_started = original


def _reset_cli_globals() -> None:
    app = sys.modules.get("pipectl.cli.app")
    if app is not None and hasattr(app, "_CTX"):
        app._CTX = None


def assert_ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def one_error_line(r) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# --------------------------------------------------------------------------- root-first CLI helpers

def cli(root, *args, now: str | None = None, env=None, timeout: float = 60, input: str | None = None,
        process: bool = False) -> subprocess.CompletedProcess:
    """``pipectl --project ROOT [--now NOW] ARGS`` in process (``process=True``: as a subprocess)."""
    pre = ["--project", str(root)] + (["--now", now] if now else [])
    call = run_cli if process else call_cli
    return call(*pre, *args, env=env, timeout=timeout, input=input)


def ok(root, *args, **kw) -> subprocess.CompletedProcess:
    return assert_ok(cli(root, *args, **kw))


def jcli(root, *args, **kw):
    return json.loads(ok(root, "--json", *args, **kw).stdout)


# --------------------------------------------------------------------------- state reads

def state_db(root) -> Path:
    return Path(root) / ".pipectl" / "state.db"


def db(root) -> sqlite3.Connection:
    conn = sqlite3.connect(str(state_db(root)), timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def q(root, sql: str, args=()) -> list[sqlite3.Row]:
    """Rows of a read-only query on the state file (``row["col"]``, ``row[0]``, ``dict(row)``)."""
    conn = db(root)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def qd(root, sql: str, args=()) -> list[dict]:
    """:func:`q` as plain dicts (comparable with ``==``)."""
    return [dict(r) for r in q(root, sql, args)]


def runs(root, pipeline: str, now: str | None = None) -> list[dict]:
    """``runs P --json``, oldest first."""
    return list(reversed(jcli(root, "runs", pipeline, "--limit", "1000", now=now)))


def run_rows(root, pipeline: str) -> list[dict]:
    """The pipeline's run rows, by logical date."""
    return qd(root, "SELECT * FROM runs WHERE pipeline = ? ORDER BY logical_date", (pipeline,))


def tries(root, pipeline: str | None = None) -> list[sqlite3.Row]:
    """Every try with its run's ds and its task instance's name, in start order."""
    sql = """SELECT tries.*, task_instances.task AS task, runs.ds AS ds, runs.pipeline AS pipeline
             FROM tries JOIN task_instances ON task_instances.id = tries.ti JOIN runs ON runs.id = task_instances.run"""
    args: tuple = ()
    if pipeline:
        sql += " WHERE runs.pipeline = ?"
        args = (pipeline,)
    return q(root, sql + " ORDER BY tries.id", args)


def tries_of(root, pipeline: str) -> list[dict]:
    """The pipeline's try rows (the try table's columns only), as dicts."""
    return qd(root, """SELECT tries.* FROM tries JOIN task_instances ON task_instances.id = tries.ti
                       JOIN runs ON runs.id = task_instances.run WHERE runs.pipeline = ?""", (pipeline,))


def tis(root, pipeline: str | None = None) -> dict[tuple[str, str], sqlite3.Row]:
    """(ds, task) -> task instance row (with its run's ``ds``)."""
    sql = "SELECT task_instances.*, runs.ds AS ds FROM task_instances JOIN runs ON runs.id = task_instances.run"
    args: tuple = ()
    if pipeline:
        sql += " WHERE runs.pipeline = ?"
        args = (pipeline,)
    return {(r["ds"], r["task"]): r for r in q(root, sql, args)}


def tis_by_task(root, pipeline: str | None = None, ds: str | None = None) -> dict[str, dict]:
    """task -> task instance row (a dict, with its run's ``ds``) of one pipeline and/or one ds.

    Several runs in scope: the last created wins for each task.
    """
    sql = "SELECT task_instances.*, runs.ds AS ds FROM task_instances JOIN runs ON runs.id = task_instances.run WHERE 1"
    args: list = []
    if pipeline:
        sql += " AND runs.pipeline = ?"
        args.append(pipeline)
    if ds:
        sql += " AND runs.ds = ?"
        args.append(ds)
    return {r["task"]: r for r in qd(root, sql + " ORDER BY task_instances.id", args)}


def counts(root, task) -> list[str]:
    """What a counting task appended to counts/TASK: one word per time its command ran."""
    p = Path(root) / "counts" / task
    return p.read_text().split() if p.exists() else []


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- processes and waiting

def wait_for(fn, timeout: float = 10.0, interval: float = 0.02):
    """Poll ``fn`` until it returns something truthy; that value, or the last one at the deadline.

    A synchronisation point with real processes (a task started, a file written),
    never a timing assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def session_pids(sid: int) -> list[int]:
    from pipectl.exec.executor import session_members
    return session_members(sid)


def kill_session(sid: int) -> None:
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    from pipectl.exec.executor import process_start
    return process_start(pid) is not None


# --------------------------------------------------------------------------- the project object

def utc(text: str | datetime | None) -> datetime | None:
    """An ISO text (``Z`` or naive means UTC) or a datetime, as an aware UTC datetime."""
    if text is None or isinstance(text, datetime):
        return text if text is None or text.tzinfo else text.replace(tzinfo=timezone.utc)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Project:
    """A project on disk under ``tmp_path`` and the ways to drive and read it.

    ``Project(tmp_path, {"etl": SPEC})``; ``toml_extra`` is appended to
    pipectl.toml, ``env`` is added to every CLI call's environment.
    Drive it with the CLI (:meth:`cli`/:meth:`ok`/:meth:`jcli` in process,
    :meth:`run_cli` as a subprocess) or with the library (:meth:`tick`,
    :meth:`step`); read it through the store (:meth:`runs`, :meth:`tis`,
    :meth:`tries`) or with SQL (:meth:`q`).
    """

    def __init__(self, tmp_path: Path, specs: dict[str, str] | None = None, toml_extra: str = "",
                 env: dict[str, str] | None = None):
        self.root = make_project(tmp_path, specs or {}, toml_extra)
        self.env = dict(env or {})

    @classmethod
    def existing(cls, root: Path, env: dict[str, str] | None = None) -> "Project":
        """A project already on disk (an example copied into the test's directory)."""
        project = cls.__new__(cls)
        project.root, project.env = Path(root), dict(env or {})
        return project

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return str(self.root)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def write_spec(self, name: str, text: str) -> Path:
        fname = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
        p = self.root / "pipelines" / fname
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        return p

    # -- the command line --------------------------------------------------
    def cli(self, *args, now: str | None = None, env=None, **kw) -> subprocess.CompletedProcess:
        return cli(self.root, *args, now=now, env={**self.env, **(env or {})}, **kw)

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        return assert_ok(self.cli(*args, **kw))

    def jcli(self, *args, **kw):
        return json.loads(self.ok("--json", *args, **kw).stdout)

    def run_cli(self, *args, now: str | None = None, env=None, **kw) -> subprocess.CompletedProcess:
        return self.cli(*args, now=now, env=env, process=True, **kw)

    # -- the library ---------------------------------------------------------
    @property
    def config(self):
        from pipectl.spec.config import load_config
        return load_config(self.root)

    @contextmanager
    def store(self) -> Iterator[Any]:
        """The project's Store, opened (created if need be) for the block."""
        from pipectl.state.store import open_store
        store = open_store(self.config)
        try:
            yield store
        finally:
            store.close()

    def clock(self, now: str | datetime | None = None):
        from pipectl.engine.step import Clock
        return Clock.at(utc(now))

    def tick(self, now: str | datetime | None = None, *, wait: bool = False):
        """One scheduler pass through the library (what ``pipectl tick`` does); its TickResult."""
        from pipectl.engine.tick import tick
        with process_begins_now():
            return tick(self.config, self.clock(now), wait=wait)

    def step(self, now: str | datetime | None = None):
        """One engine step over the runs already in the state file (no new runs); its StepReport."""
        from pipectl.engine.step import Engine
        with self.store() as store:
            return Engine(self.config, store, self.clock(now)).step()

    # -- state reads -----------------------------------------------------------
    def runs(self, pipeline: str | None = None) -> list:
        """The store's run records (``model.records.Run``) of one pipeline or all, oldest logical date first."""
        with self.store() as store:
            names = [pipeline] if pipeline else sorted(store.pipeline_rows())
            out = [r for name in names for r in store.runs_for(name)]
        return sorted(out, key=lambda r: (r.logical_date, r.pipeline))

    def tis(self, pipeline: str | None = None, ds: str | None = None) -> dict:
        """Task instance records: ``{(ds, task): ti}``, or ``{task: ti}`` when ``ds`` is given."""
        out: dict = {}
        with self.store() as store:
            for run in self._runs(store, pipeline, ds):
                for ti in store.task_instances(run.id):
                    out[ti.task if ds is not None else (run.ds, ti.task)] = ti
        return out

    def states(self, pipeline: str | None = None, ds: str | None = None) -> dict:
        """:meth:`tis` reduced to the state names (plain strings)."""
        return {k: str(ti.state) for k, ti in self.tis(pipeline, ds).items()}

    def tries(self, pipeline: str | None = None, ds: str | None = None) -> list:
        """Try records (with their task instance's ``run`` and ``task``), in start order."""
        with self.store() as store:
            out = [t for run in self._runs(store, pipeline, ds) for t in store.tries_for_run(run.id)]
        return sorted(out, key=lambda t: t.id)

    @staticmethod
    def _runs(store, pipeline: str | None, ds: str | None) -> list:
        names = [pipeline] if pipeline else sorted(store.pipeline_rows())
        return [r for name in names for r in store.runs_for(name) if ds is None or r.ds == ds]

    def q(self, sql: str, args=()) -> list[sqlite3.Row]:
        return q(self.root, sql, args)

    def counts(self, task: str) -> list[str]:
        return counts(self.root, task)


# A stand-in for crontab(1) (pipectl finds it through PIPECTL_CRONTAB): -l prints the table
# file, - replaces it, as the real one does for the invoking user.
FAKE_CRONTAB = """#!/bin/sh
f="$FAKE_CRONTAB_FILE"
case "$1" in
  -l) if [ -f "$f" ]; then cat "$f"; else echo "no crontab for tester" >&2; exit 1; fi ;;
  -) cat > "$f" ;;
  *) echo "fake crontab: bad usage" >&2; exit 2 ;;
esac
"""


def fake_crontab(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment that points pipectl at a fake crontab, and the file holding its table."""
    prog = tmp_path / "bin" / "crontab"
    prog.parent.mkdir(exist_ok=True)
    prog.write_text(FAKE_CRONTAB)
    prog.chmod(0o755)
    table = tmp_path / "crontab.txt"
    return {"PIPECTL_CRONTAB": str(prog), "FAKE_CRONTAB_FILE": str(table)}, table
