"""All of pipectl's state, in one SQLite file. The only module that writes SQL.

Every state transition happens inside one transaction (``with store.tx():``),
taken with BEGIN IMMEDIATE so that ticks, ``--wait`` supervisors and task
reapers serialize their claims instead of racing: a task instance is claimed by
a conditional UPDATE, and only the writer whose UPDATE changed a row may start
the try.
"""
from __future__ import annotations

import json
import os
import sqlite3
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from pipectl.model.errors import StateError

if TYPE_CHECKING:
    from pipectl.model.records import (AssetLatest, CatchupSkip, Event, Failure, FileTrigger, FinishedRun, Pipeline,
                                       Run, SlaMiss, StateCount, TaskInstance, Try)
APP_ID = 0x70697065  # "pipe": marks the file as ours, so a foreign SQLite file is refused

# Each entry migrates from user_version i to i+1. Never edit a shipped entry; append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE pipelines(
        name TEXT PRIMARY KEY,
        paused INTEGER NOT NULL DEFAULT 0,
        cursor TEXT,            -- end of the last scheduled data interval (ISO, UTC)
        anchor TEXT,            -- first time a tick saw it: anchors `every:` without start_date
        next_due REAL,          -- epoch of the next schedule fire; lets a no-op tick stop early
        valid INTEGER NOT NULL DEFAULT 1,
        error TEXT,
        spec TEXT,              -- last valid spec (JSON), the no-op tick's cache
        path TEXT
    );
    CREATE TABLE runs(
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,  -- unique per pipeline, as in Airflow
        pipeline TEXT NOT NULL,
        logical_date TEXT NOT NULL,
        ds TEXT NOT NULL,
        data_interval_start TEXT,
        data_interval_end TEXT,
        run_type TEXT NOT NULL,
        state TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        spec TEXT NOT NULL,     -- the pipeline as it was when the run was created
        priority INTEGER NOT NULL DEFAULT 1,   -- backfill 0: scheduled work starts first
        batch TEXT,             -- backfill id: its runs share their own max_active
        max_active INTEGER,
        created REAL NOT NULL,
        start REAL,
        end REAL,
        UNIQUE(pipeline, logical_date),
        UNIQUE(pipeline, run_id)
    );
    CREATE INDEX runs_active ON runs(state) WHERE state IN ('queued', 'running');
    CREATE INDEX runs_by_pipeline ON runs(pipeline, logical_date);
    CREATE TABLE task_instances(
        id INTEGER PRIMARY KEY,
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        task TEXT NOT NULL,     -- 'name', or 'name[i]' for a mapped instance
        base TEXT NOT NULL,     -- 'name'
        map_index INTEGER,
        item TEXT,
        state TEXT NOT NULL,
        try_number INTEGER NOT NULL DEFAULT 0,
        budget_base INTEGER NOT NULL DEFAULT 0,  -- try_number when its retry budget was last renewed
        next_try_at REAL,
        exit_code INTEGER,
        reason TEXT,
        start REAL,
        end REAL,
        sensor_started REAL,
        sensor_next REAL,
        UNIQUE(run, task)
    );
    CREATE INDEX ti_active ON task_instances(state) WHERE state IN ('pending', 'running', 'up_for_retry');
    CREATE INDEX ti_by_run ON task_instances(run);
    CREATE TABLE tries(
        id INTEGER PRIMARY KEY,
        ti INTEGER NOT NULL REFERENCES task_instances(id) ON DELETE CASCADE,
        try_number INTEGER NOT NULL,
        state TEXT NOT NULL,    -- starting | running | success | failed | lost
        launcher_pid INTEGER,
        launcher_start TEXT,
        pid INTEGER,
        pid_start TEXT,
        boot_id TEXT,
        status_path TEXT,
        log_path TEXT,
        timeout REAL,
        pool TEXT,
        start REAL,
        end REAL,
        exit_code INTEGER,
        reason TEXT,
        UNIQUE(ti, try_number)
    );
    CREATE INDEX tries_active ON tries(state) WHERE state IN ('starting', 'running');
    CREATE INDEX tries_by_ti ON tries(ti);
    CREATE TABLE events(
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        pipeline TEXT,
        run INTEGER,
        task TEXT,
        kind TEXT NOT NULL,
        message TEXT
    );
    CREATE INDEX events_by_run ON events(run);
    CREATE INDEX events_by_pipeline ON events(pipeline, ts);
    """,
    # -- order of promotion within a priority; a backfill run backwards numbers its runs newest first
    """
    ALTER TABLE runs ADD COLUMN seq INTEGER;
    """,
    # -- assets, file triggers, SLA misses
    """
    CREATE TABLE asset_events(
        id INTEGER PRIMARY KEY,
        asset TEXT NOT NULL,
        ds TEXT NOT NULL,
        pipeline TEXT NOT NULL,   -- producer
        task TEXT NOT NULL,
        run INTEGER,
        complete INTEGER NOT NULL DEFAULT 1,  -- the producing run's interval reached the end of ds
        ts REAL NOT NULL
    );
    CREATE INDEX asset_events_by_asset ON asset_events(asset, ds);
    CREATE TABLE asset_consumers(
        consumer TEXT NOT NULL,
        asset TEXT NOT NULL,
        ds TEXT NOT NULL,
        event INTEGER NOT NULL,   -- the newest asset_events.id consumed
        run INTEGER,              -- the run that covers it (created or already there)
        ts REAL NOT NULL,
        PRIMARY KEY(consumer, asset, ds)
    );
    CREATE TABLE file_triggers(
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        run INTEGER,
        ts REAL NOT NULL,
        UNIQUE(pipeline, path, size, mtime_ns)
    );
    CREATE TABLE sla_misses(
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        task TEXT NOT NULL DEFAULT '',  -- '' for the run's own SLA
        deadline REAL NOT NULL,
        ts REAL NOT NULL,
        UNIQUE(run, task)
    );
    """,
    # -- the missed intervals a bounded catch-up left out (first..last: logical dates, ISO UTC)
    """
    CREATE TABLE catchup_skips(
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        first TEXT NOT NULL,
        last TEXT NOT NULL,
        count INTEGER NOT NULL,
        capped INTEGER NOT NULL DEFAULT 0,  -- count stopped at a cap: at least this many
        bound TEXT NOT NULL,                 -- the spec's bound in its words, e.g. catchup window 3d
        message TEXT NOT NULL,               -- what status shows
        ts REAL NOT NULL
    );
    CREATE INDEX catchup_skips_by_pipeline ON catchup_skips(pipeline, last);
    """,
]


_LIVE_TRY = ("EXISTS (SELECT 1 FROM tries WHERE tries.ti = task_instances.id "
             "AND tries.state IN ('starting', 'running'))")
# a run whose every task instance has finished and none of whose tries is live
_RUN_SETTLED = """ AND NOT EXISTS (SELECT 1 FROM task_instances ti WHERE ti.run = runs.id
                     AND ti.state IN ('pending', 'running', 'up_for_retry'))
                   AND NOT EXISTS (SELECT 1 FROM task_instances ti JOIN tries ON tries.ti = ti.id
                     WHERE ti.run = runs.id AND tries.state IN ('starting', 'running'))"""
_RUN_OUTCOME = """CASE WHEN EXISTS (SELECT 1 FROM task_instances ti WHERE ti.run = runs.id
                     AND ti.state IN ('failed', 'upstream_failed')) THEN 'failed' ELSE 'success' END"""

# Every record is built by one function below from a plain tuple of these columns, in this order:
# the only place that knows a column's position and storage format.
_PIPELINE_COLS = "name, paused, cursor, anchor, next_due, valid, error, spec, path"
_RUN_COLS = ("id, run_id, pipeline, logical_date, ds, data_interval_start, data_interval_end, run_type, state, "
             "params, priority, batch, max_active, created, start, end, seq")
_RUN_COLS_SPEC = _RUN_COLS + ", spec"
_TI_COLS = ("id, run, task, base, map_index, item, state, try_number, budget_base, next_try_at, exit_code, reason, "
            "start, end, sensor_started, sensor_next")
_TRY_COLS = ("tries.id, tries.ti, tries.try_number, tries.state, tries.launcher_pid, tries.launcher_start, tries.pid, "
             "tries.pid_start, tries.boot_id, tries.status_path, tries.log_path, tries.timeout, tries.pool, tries.start, "
             "tries.end, tries.exit_code, tries.reason")
_EVENT_COLS = "id, ts, pipeline, run, task, kind, message"
_ASSET_EVENT_COLS = "id, asset, ds, pipeline, task, run, complete, ts"
_FILE_TRIGGER_COLS = "id, pipeline, path, size, mtime_ns, run, ts"

_fromiso = datetime.fromisoformat
_state = None  # model.states.state, bound with the record types by _load_records


def _load_records() -> None:
    """The record types (and the state enum) are imported on the first read that builds a record,
    not with this module: the no-op tick, which opens the store on every cron minute, never builds
    one (see schedule_rows), and defining them costs a few ms of its budget."""
    global AssetLatest, Event, Failure, FileTrigger, FinishedRun, Pipeline, Run, SlaMiss, StateCount
    global TaskInstance, Try, _state
    from pipectl.model.records import (AssetLatest, Event, Failure, FileTrigger, FinishedRun, Pipeline,  # noqa: F811
                                       Run, SlaMiss, StateCount, TaskInstance, Try)
    from pipectl.model.states import state as _state


def _pipeline(r: tuple) -> Pipeline:
    return Pipeline(r[0], bool(r[1]), r[2] and _fromiso(r[2]), r[3] and _fromiso(r[3]), r[4], bool(r[5]), r[6], r[7], r[8])


def _run(r: tuple) -> Run:
    return Run(r[0], r[1], r[2], _fromiso(r[3]), r[4], r[5] and _fromiso(r[5]), r[6] and _fromiso(r[6]), r[7],
               _state(r[8]), *r[9:])


def _ti(r: tuple) -> TaskInstance:
    return TaskInstance(*r[:6], _state(r[6]), *r[7:])


def _try(r: tuple) -> Try:
    return Try(*r[:3], _state(r[3]), *r[4:])


def _logical_date(value: "datetime | str") -> str:
    """A logical date as stored: callers may pass the datetime of a record or the ISO text."""
    return value if isinstance(value, str) else value.astimezone(timezone.utc).isoformat()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


class Store:
    """One connection to the state file. Not thread-safe; one per process."""

    def __init__(self, path: str, create: bool = True, readonly: bool = False):
        """``readonly``: viewers (the live view) open the file so that no write can ever happen."""
        self.path = path
        self.readonly = readonly
        # an empty file is what a crash between create and schema leaves: treat it as new
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        memory = path == ":memory:"  # an empty state for reading commands before the first tick
        if not exists and not create and not memory:
            raise StateError(f"no state file at {path}; run `pipectl tick` first")
        if memory:
            pass
        elif not os.path.exists(path):
            from pipectl.state.files import private_open  # 0600 from the first byte: the file holds the environment of every run (SQLite
            # gives its -wal and -shm files the same mode)
            os.close(private_open(path, os.O_WRONLY))
        elif _held(path) == 0:
            # Only while this process has no connection to it: closing any descriptor of the file
            # drops every POSIX lock the process holds on it, its connections' included. Another
            # process closing last would then checkpoint and delete the write-ahead log under a
            # live connection, whose commits are lost (a timer that runs a tick opens a second
            # Store, so do commands that tick after their own transaction).
            _check_header(path)
        try:
            target, uri = (_readonly_uri(path), True) if readonly else (path, False)
            self.conn = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False, uri=uri)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA busy_timeout = 30000")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(fresh=not exists)
            # NORMAL in WAL mode survives any process crash (kill -9); only power loss can
            # drop the last commits, and never corrupts the file.
            self.conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as e:
            raise state_io_error(path, e) from None
        except sqlite3.DatabaseError as e:
            raise StateError(f"{path} is not a usable pipectl state file ({e}); it was left untouched") from None
        self._depth = 0
        self._ti_readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # see ti_changes
        self._ti_versions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # see ti_changes
        self._key = None if memory else os.path.realpath(path)
        if self._key is not None:
            _OPEN[self._key] = _OPEN.get(self._key, 0) + 1

    # -- schema ----------------------------------------------------------
    def _migrate(self, fresh: bool) -> None:
        c = self.conn
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if app_id == APP_ID and version == len(MIGRATIONS):
            return
        self._refuse_foreign(app_id, version)  # before WAL mode rewrites the file's header
        if self.readonly:
            raise StateError(f"{self.path} has an older schema; any writing command (e.g. `pipectl tick`) upgrades it")
        if c.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            c.execute("PRAGMA journal_mode = WAL")
        # Decide under the write lock: a second process opening a brand-new file while
        # the first is still creating the schema must wait for it, not call it foreign.
        c.execute("BEGIN IMMEDIATE")
        try:
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
            self._refuse_foreign(app_id, version)
            if version > len(MIGRATIONS):
                raise StateError(f"{self.path} was written by a newer pipectl (schema {version} > {len(MIGRATIONS)})")
            for i in range(version, len(MIGRATIONS)):
                for stmt in _statements(MIGRATIONS[i]):
                    c.execute(stmt)
                c.execute(f"PRAGMA user_version = {i + 1}")
            c.execute(f"PRAGMA application_id = {APP_ID}")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _refuse_foreign(self, app_id: int, version: int) -> None:
        """A file with tables but without our application id belongs to someone else.
        (An empty one is ours, still being created by another process.)"""
        if app_id == APP_ID:
            return
        tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables or version:
            raise StateError(f"{self.path} is not a pipectl state file (foreign SQLite database); it was left untouched")

    @contextmanager
    def tx(self) -> Iterator["Store"]:
        """A write transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise state_io_error(self.path, e) from None
        self._depth = 1
        try:
            yield self
        except BaseException as e:
            self._depth = 0
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass  # SQLite already rolled back (a full disk does that)
            if isinstance(e, sqlite3.OperationalError):
                raise state_io_error(self.path, e) from None
            raise
        self._depth = 0
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass
            raise state_io_error(self.path, e) from None

    def close(self) -> None:
        self.conn.close()
        key, self._key = getattr(self, "_key", None), None
        if key is not None:
            _OPEN[key] -= 1

    def _q(self, sql: str, args: Iterable = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, tuple(args)).fetchall()

    def _one(self, sql: str, args: Iterable = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, tuple(args)).fetchone()

    def _x(self, sql: str, args: Iterable = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, tuple(args))

    def _t(self, sql: str, args: Iterable = ()) -> list[tuple]:
        """Plain tuples, for the record builders (cheaper than sqlite3.Row)."""
        if _state is None:
            _load_records()
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute(sql, tuple(args)).fetchall()

    def _t1(self, sql: str, args: Iterable = ()) -> tuple | None:
        if _state is None:
            _load_records()
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute(sql, tuple(args)).fetchone()

    def integrity_check(self) -> str:
        return self._one("PRAGMA integrity_check")[0]

    # -- meta ------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._x("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- pipelines -------------------------------------------------------
    def pipeline_rows(self) -> dict[str, Pipeline]:
        return {r[0]: _pipeline(r) for r in self._t(f"SELECT {_PIPELINE_COLS} FROM pipelines")}

    def schedule_rows(self) -> list[tuple[bool, bool, float | None, str | None]]:
        """(valid, paused, next_due, spec) of every pipeline as plain tuples: all the no-op tick
        reads, without building records."""
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute("SELECT valid, paused, next_due, spec FROM pipelines").fetchall()

    def pipeline_row(self, name: str) -> Pipeline | None:
        r = self._t1(f"SELECT {_PIPELINE_COLS} FROM pipelines WHERE name = ?", (name,))
        return r and _pipeline(r)

    def upsert_pipeline(self, name: str, *, spec: dict | None, path: str, valid: bool, error: str | None, anchor: str) -> None:
        self._x(
            """INSERT INTO pipelines(name, spec, path, valid, error, anchor) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(name) DO UPDATE SET spec = coalesce(excluded.spec, pipelines.spec), path = excluded.path,
               valid = excluded.valid, error = excluded.error""",
            (name, _dumps(spec) if spec is not None else None, path, int(valid), error, anchor),
        )

    def set_cursor(self, name: str, cursor: str | None, next_due: float | None) -> None:
        self._x("UPDATE pipelines SET cursor = ?, next_due = ? WHERE name = ?", (cursor, next_due, name))

    def set_next_due(self, name: str, next_due: float | None) -> None:
        self._x("UPDATE pipelines SET next_due = ? WHERE name = ?", (next_due, name))

    def set_paused(self, name: str, paused: bool) -> bool:
        """pause/unpause: False when it already was (another operator got there first)."""
        return bool(self._x("UPDATE pipelines SET paused = ? WHERE name = ? AND paused != ?",
                            (int(paused), name, int(paused))).rowcount)

    def forget_missing_pipelines(self, present: Iterable[str]) -> None:
        """A pipeline whose file is gone keeps its history but is no longer scheduled."""
        names = list(present)
        marks = ",".join("?" * len(names)) or "''"
        self._x(f"UPDATE pipelines SET valid = 0, error = 'spec file removed', next_due = NULL WHERE name NOT IN ({marks})", names)

    # -- runs ------------------------------------------------------------
    def insert_run(self, *, run_id: str, pipeline: str, logical_date: datetime | str, ds: str,
                   interval: tuple[datetime | str | None, datetime | str | None],
                   run_type: str, params: dict, spec: dict, now: float, priority: int = 1,
                   batch: str | None = None, max_active: int | None = None) -> int | None:
        """Returns the new run's row id, or None when (pipeline, logical_date) already has a run."""
        cur = self._x(
            """INSERT OR IGNORE INTO runs(run_id, pipeline, logical_date, ds, data_interval_start, data_interval_end,
                   run_type, state, params, spec, priority, batch, max_active, created)
               VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)""",
            (run_id, pipeline, _logical_date(logical_date), ds, interval[0] and _logical_date(interval[0]),
             interval[1] and _logical_date(interval[1]), run_type, _dumps(params), _dumps(spec),
             priority, batch, max_active, now),
        )
        return cur.lastrowid if cur.rowcount else None

    def run(self, run_pk: int) -> Run | None:
        r = self._t1(f"SELECT {_RUN_COLS_SPEC} FROM runs WHERE id = ?", (run_pk,))
        return r and _run(r)

    def run_by_date(self, pipeline: str, logical_date: datetime | str) -> Run | None:
        r = self._t1(f"SELECT {_RUN_COLS_SPEC} FROM runs WHERE pipeline = ? AND logical_date = ?",
                     (pipeline, _logical_date(logical_date)))
        return r and _run(r)

    def run_by_run_id(self, pipeline: str, run_id: str) -> Run | None:
        r = self._t1(f"SELECT {_RUN_COLS_SPEC} FROM runs WHERE pipeline = ? AND run_id = ?", (pipeline, run_id))
        return r and _run(r)

    def runs_by_ds(self, pipeline: str, ds: str) -> list[Run]:
        return [_run(r) for r in self._t(f"SELECT {_RUN_COLS_SPEC} FROM runs WHERE pipeline = ? AND ds = ? "
                                         "ORDER BY logical_date", (pipeline, ds))]

    def runs_for(self, pipeline: str, limit: int | None = None, ds_from: str | None = None, ds_to: str | None = None) -> list[Run]:
        """Newest first."""
        sql = f"SELECT {_RUN_COLS_SPEC} FROM runs WHERE pipeline = ?"
        args: list = [pipeline]
        if ds_from:
            sql += " AND ds >= ?"
            args.append(ds_from)
        if ds_to:
            sql += " AND ds <= ?"
            args.append(ds_to)
        sql += " ORDER BY logical_date DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [_run(r) for r in self._t(sql, args)]

    def active_runs(self) -> list[Run]:
        """Every column but the spec snapshot (``spec`` is None): a big pipeline's snapshot is hundreds
        of KB, and this runs on every step of the supervisor. ``run_spec`` fetches it once per run."""
        return [_run(r) for r in self._t(f"SELECT {_RUN_COLS} FROM runs WHERE state IN ('queued', 'running') "
                                         "ORDER BY priority DESC, coalesce(seq, 0), logical_date, id")]

    def run_spec(self, run_pk: int) -> str | None:
        row = self._one("SELECT spec FROM runs WHERE id = ?", (run_pk,))
        return row[0] if row else None

    def count_active(self) -> tuple[int, int]:
        """(active runs, active tries): zero and zero means a tick has nothing to look after."""
        runs = self._one("SELECT count(*) FROM runs WHERE state IN ('queued', 'running')")[0]
        tries = self._one("SELECT count(*) FROM tries WHERE state IN ('starting', 'running')")[0]
        return runs, tries

    def set_run_state(self, run_pk: int, state: str, now: float) -> None:
        """Unconditional: for building fixtures (tests, benches). The engine and the operator
        commands change a run's state only through the transitions at the end of this class."""
        if state == "running":
            self._x("UPDATE runs SET state = 'running', start = coalesce(start, ?), end = NULL WHERE id = ?", (now, run_pk))
        elif state in ("success", "failed"):
            self._x("UPDATE runs SET state = ?, end = ? WHERE id = ?", (state, now, run_pk))
        else:
            self._x("UPDATE runs SET state = ?, end = NULL WHERE id = ?", (state, run_pk))

    def last_run(self, pipeline: str) -> Run | None:
        r = self._t1(f"SELECT {_RUN_COLS_SPEC} FROM runs WHERE pipeline = ? ORDER BY logical_date DESC LIMIT 1", (pipeline,))
        return r and _run(r)

    # -- task instances --------------------------------------------------
    def insert_task_instances(self, run_pk: int, rows: Iterable[tuple[str, str, int | None, str | None, str]]) -> None:
        """rows: (task, base, map_index, item, state)."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO task_instances(run, task, base, map_index, item, state) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_pk, *r) for r in rows],
        )

    def task_instances(self, run_pk: int) -> list[TaskInstance]:
        return [_ti(r) for r in self._t(f"SELECT {_TI_COLS} FROM task_instances WHERE run = ? ORDER BY id", (run_pk,))]

    def task_instance(self, ti_pk: int) -> TaskInstance | None:
        r = self._t1(f"SELECT {_TI_COLS} FROM task_instances WHERE id = ?", (ti_pk,))
        return r and _ti(r)

    def task_instances_for_runs(self, run_pks: list[int]) -> list[TaskInstance]:
        if not run_pks:
            return []
        marks = ",".join("?" * len(run_pks))
        return [_ti(r) for r in self._t(f"SELECT {_TI_COLS} FROM task_instances WHERE run IN ({marks}) ORDER BY run, id",
                                        run_pks)]

    def set_sensor_times(self, ti_pk: int, started: float | None, next_check: float | None) -> None:
        self._x("UPDATE task_instances SET sensor_started = ?, sensor_next = ? WHERE id = ?", (started, next_check, ti_pk))

    def running_counts(self) -> int:
        return self._one("SELECT count(*) FROM tries WHERE state IN ('starting', 'running')")[0]

    # -- tries -----------------------------------------------------------
    def insert_try(self, ti_pk: int, try_number: int, *, launcher_pid: int, launcher_start: str | None, boot_id: str,
                   status_path: str, log_path: str, timeout: float | None, pool: str | None, now: float) -> int:
        cur = self._x(
            """INSERT INTO tries(ti, try_number, state, launcher_pid, launcher_start, boot_id, status_path, log_path,
                   timeout, pool, start) VALUES (?, ?, 'starting', ?, ?, ?, ?, ?, ?, ?, ?)""",
            (ti_pk, try_number, launcher_pid, launcher_start, boot_id, status_path, log_path, timeout, pool, now),
        )
        return cur.lastrowid

    def mark_try_started(self, try_pk: int, pid: int, pid_start: str | None) -> bool:
        cur = self._x("UPDATE tries SET state = 'running', pid = ?, pid_start = ? WHERE id = ? AND state = 'starting'",
                      (pid, pid_start, try_pk))
        return bool(cur.rowcount)

    def finish_try(self, try_pk: int, state: str, *, now: float, exit_code: int | None, reason: str | None) -> bool:
        """Only the first writer to end a try wins, so a result is recorded exactly once."""
        cur = self._x(
            "UPDATE tries SET state = ?, end = ?, exit_code = ?, reason = ? WHERE id = ? AND state IN ('starting', 'running')",
            (state, now, exit_code, reason, try_pk),
        )
        return bool(cur.rowcount)

    def active_tries(self) -> list[Try]:
        """With ``run``, ``task`` and ``base`` of their task instance."""
        return [_try(r) for r in self._t(
            f"""SELECT {_TRY_COLS}, task_instances.run, task_instances.task, task_instances.base
                FROM tries JOIN task_instances ON task_instances.id = tries.ti
                WHERE tries.state IN ('starting', 'running') ORDER BY tries.id""")]

    def try_(self, try_pk: int) -> Try | None:
        r = self._t1(f"SELECT {_TRY_COLS} FROM tries WHERE id = ?", (try_pk,))
        return r and _try(r)

    def tries_for(self, ti_pk: int) -> list[Try]:
        return [_try(r) for r in self._t(f"SELECT {_TRY_COLS} FROM tries WHERE ti = ? ORDER BY try_number", (ti_pk,))]

    def tries_for_run(self, run_pk: int) -> list[Try]:
        """With ``run`` and ``task`` of their task instance."""
        return [_try(r) for r in self._t(
            f"""SELECT {_TRY_COLS}, task_instances.run, task_instances.task FROM tries
                JOIN task_instances ON task_instances.id = tries.ti
                WHERE task_instances.run = ? ORDER BY tries.ti, tries.try_number""", (run_pk,))]

    def running_by_pool(self) -> dict[str, int]:
        rows = self._q("SELECT pool, count(*) FROM tries WHERE state IN ('starting', 'running') AND pool IS NOT NULL GROUP BY pool")
        return {r[0]: r[1] for r in rows}

    # -- the supervisor's hot path ------------------------------------------
    def ti_states(self, run_pk: int) -> list[tuple]:
        """(id, task, base, state, next_try_at) of a run's task instances in id order, as plain
        tuples: what advancing a run reads every step, kept cheap for runs of 1000s of tasks."""
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute("SELECT id, task, base, state, next_try_at FROM task_instances WHERE run = ? ORDER BY id",
                           (run_pk,)).fetchall()

    # -- incremental advance: what changed since an engine last looked -------------
    def ti_changes(self, reader: object) -> list[tuple[int, int]] | None:
        """Change detection in one call: (ti id, run) of every task instance inserted, updated or
        deleted since ``reader`` last asked, or None when that cannot be known and the reader must
        re-read everything (its first call, or another connection committed in between).

        Two detectors: this connection's own changes are logged by TEMP triggers
        (_track_ti_changes), and a commit by any other process (a tick, a reaper, `retry`, `mark`)
        moves ``PRAGMA data_version``, read before anything else so a later commit is seen next time."""
        first = reader not in self._ti_readers
        if first:
            self._track_ti_changes(reader)
        dv = self.data_version()
        changes = self._take_ti_changes(reader)
        seen, self._ti_versions[reader] = self._ti_versions.get(reader), dv
        return None if first or dv != seen else changes

    def _track_ti_changes(self, reader: object) -> None:
        """Log this connection's own task-instance inserts, updates and deletes for ``reader``
        (see ti_changes). TEMP triggers and table: private to this connection, nothing is
        written to the state file, and a rolled-back change rolls its log entry back with it.
        Changes committed by other connections are seen through ``data_version`` instead."""
        if reader in self._ti_readers:
            return
        self._ti_readers[reader] = []
        c = self.conn
        c.execute("CREATE TEMP TABLE IF NOT EXISTS ti_changes(ti INTEGER NOT NULL, run INTEGER NOT NULL)")
        for event, row in (("insert", "new"), ("update", "new"), ("delete", "old")):
            c.execute(f"CREATE TEMP TRIGGER IF NOT EXISTS ti_changes_{event} AFTER {event.upper()} ON main.task_instances "
                      f"BEGIN INSERT INTO ti_changes(ti, run) VALUES ({row}.id, {row}.run); END")

    def data_version(self) -> int:
        """Changes whenever another connection (any process) commits to the state file;
        never for this connection's own commits."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def _take_ti_changes(self, reader: object) -> list[tuple[int, int]]:
        """(ti id, run) of this connection's task-instance changes since ``reader`` last asked
        (each reader, e.g. two engines on one store, gets every change once)."""
        cur = self.conn.cursor()
        cur.row_factory = None
        rows = cur.execute("SELECT DISTINCT ti, run FROM temp.ti_changes").fetchall()
        if rows:
            cur.execute("DELETE FROM temp.ti_changes")
            for pending in self._ti_readers.values():
                pending.extend(rows)
        mine = self._ti_readers[reader]
        self._ti_readers[reader] = []
        return mine

    def ti_states_of(self, ti_pks: list[int]) -> list[tuple]:
        """``ti_states`` tuples (id, task, base, state, next_try_at) of the given task instances (gone ones are left out)."""
        cur = self.conn.cursor()
        cur.row_factory = None
        out: list[tuple] = []
        for i in range(0, len(ti_pks), 500):
            chunk = ti_pks[i:i + 500]
            out += cur.execute("SELECT id, task, base, state, next_try_at FROM task_instances WHERE id IN (%s)"
                               % ",".join("?" * len(chunk)), chunk).fetchall()
        return out

    def earliest_wakeup(self, after: float | None = None) -> float | None:
        """The earliest time a task instance of an active run waits for: a retry's next_try_at or a
        sensor's next poke (only times >= ``after`` when given). One query on the active-TI index
        instead of a scan of every run."""
        row = self._one(
            """SELECT min(t) FROM (
                   SELECT CASE WHEN ti.state = 'up_for_retry' THEN nullif(ti.next_try_at, 0)
                               WHEN ti.state = 'pending' THEN nullif(ti.sensor_next, 0) END AS t
                   FROM task_instances ti JOIN runs ON runs.id = ti.run
                   WHERE ti.state IN ('pending', 'up_for_retry') AND runs.state IN ('queued', 'running'))
               WHERE t >= ?""", (-1e18 if after is None else after,))
        return row[0] if row else None

    # -- events ----------------------------------------------------------
    def add_event(self, kind: str, *, now: float, pipeline: str | None = None, run: int | None = None,
                  task: str | None = None, message: str = "") -> None:
        self._x("INSERT INTO events(ts, pipeline, run, task, kind, message) VALUES (?, ?, ?, ?, ?, ?)",
                (now, pipeline, run, task, kind, message))

    def add_catchup_skip(self, pipeline: str, *, now: float, first: str, last: str, count: int, capped: bool,
                         bound: str, message: str) -> None:
        self._x("INSERT INTO catchup_skips(pipeline, first, last, count, capped, bound, message, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (pipeline, first, last, count, int(capped), bound, message, now))

    def catchup_skips(self, pipeline: str, *, covering: str | None = None, since: float | None = None,
                      limit: int = 5) -> list[CatchupSkip]:
        """The newest skips of a pipeline: those recorded after ``since``, or the one whose range
        holds logical date ``covering``."""
        from pipectl.model.records import CatchupSkip
        where, args = "pipeline = ?", [pipeline]
        if covering is not None:
            where += " AND last >= ? AND first <= ?"
            args += [covering, covering]
        if since is not None:
            where += " AND ts >= ?"
            args.append(since)
        rows = self._t("SELECT pipeline, first, last, count, capped, bound, message, ts FROM catchup_skips "
                       f"WHERE {where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [CatchupSkip(r[0], _fromiso(r[1]), _fromiso(r[2]), r[3], bool(r[4]), r[5], r[6], r[7]) for r in rows]

    def max_event_id(self) -> int:
        row = self._one("SELECT max(id) FROM events")
        return (row[0] if row else None) or 0

    def events_after(self, event_id: int) -> list[Event]:
        """Every event written after event ``event_id``, in order (a rehearsal's timeline)."""
        return [Event(*r) for r in self._t(f"SELECT {_EVENT_COLS} FROM events WHERE id > ? ORDER BY id", (event_id,))]

    def events_for_run(self, run_pk: int) -> list[Event]:
        return [Event(*r) for r in self._t(f"SELECT {_EVENT_COLS} FROM events WHERE run = ? ORDER BY id", (run_pk,))]

    # -- backfill, retry ----------------------------------------------------
    def rebatch_run(self, run_pk: int, *, batch: str | None, max_active: int | None, priority: int | None = None,
                    seq: int | None = None, requeue: bool = False) -> None:
        """Put a run into a backfill batch (its own max_active); ``requeue`` re-opens a finished run."""
        self._x("UPDATE runs SET batch = ?, max_active = ?, priority = coalesce(?, priority), seq = ? WHERE id = ?",
                (batch, max_active, priority, seq, run_pk))
        if requeue:
            self.reopen_run(run_pk)

    def run_states(self, run_pks: list[int]) -> dict[int, str]:
        """State of each run, in one query: a backfill's progress bar polls hundreds of runs."""
        if not run_pks:
            return {}
        marks = ",".join("?" * len(run_pks))
        return {r[0]: r[1] for r in self._q(f"SELECT id, state FROM runs WHERE id IN ({marks})", run_pks)}

    # -- sensors, assets, file triggers, SLA misses ------------------------
    def claim_ti_check(self, ti_pk: int, now: float, hold_until: float) -> TaskInstance | None:
        """Claim a pending task instance's sensor poke (or foreach evaluation): only one process
        checks it at a time, and not before its ``sensor_next``. Returns the row as it was, or None."""
        ti = self.task_instance(ti_pk)
        if ti is None or ti.state != "pending" or (ti.sensor_next is not None and ti.sensor_next > now):
            return None
        self._x("UPDATE task_instances SET sensor_started = coalesce(sensor_started, ?), sensor_next = ? WHERE id = ?",
                (now, hold_until, ti_pk))
        return ti

    def replace_with_mapped(self, ti_pk: int, run_pk: int, base: str, items: list[str]) -> bool:
        """A pending task instance becomes one per item; False (nothing changed) if it left pending."""
        if not self._x("DELETE FROM task_instances WHERE id = ? AND state = 'pending'", (ti_pk,)).rowcount:
            return False
        self.insert_task_instances(run_pk, [(f"{base}[{i}]", base, i, item, "pending") for i, item in enumerate(items)])
        return True

    def add_asset_event(self, *, asset: str, ds: str, pipeline: str, task: str, run: int | None, complete: bool,
                        now: float) -> int:
        cur = self._x("INSERT INTO asset_events(asset, ds, pipeline, task, run, complete, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (asset, ds, pipeline, task, run, int(complete), now))
        return cur.lastrowid

    def latest_asset_events(self, assets: list[str], complete_only: bool = True) -> list[AssetLatest]:
        """Per (asset, ds): the newest event id and time."""
        if not assets:
            return []
        marks = ",".join("?" * len(assets))
        cond = " AND complete = 1" if complete_only else ""
        return [AssetLatest(*r) for r in self._t(
            f"""SELECT asset, ds, max(id), max(ts), count(*) FROM asset_events
                WHERE asset IN ({marks}){cond} GROUP BY asset, ds ORDER BY ds""", assets)]

    def asset_names(self) -> list[str]:
        return [r[0] for r in self._q("SELECT DISTINCT asset FROM asset_events ORDER BY asset")]

    def consumed(self, consumer: str) -> dict[tuple[str, str], int]:
        return {(r["asset"], r["ds"]): r["event"]
                for r in self._q("SELECT asset, ds, event FROM asset_consumers WHERE consumer = ?", (consumer,))}

    def mark_consumed(self, consumer: str, asset: str, ds: str, event: int, run: int | None, now: float) -> None:
        self._x("""INSERT INTO asset_consumers(consumer, asset, ds, event, run, ts) VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT(consumer, asset, ds) DO UPDATE SET event = excluded.event, run = excluded.run,
                   ts = excluded.ts""", (consumer, asset, ds, event, run, now))

    def add_file_trigger(self, pipeline: str, path: str, size: int, mtime_ns: int, now: float) -> int | None:
        """None when this (path, size, mtime) has been seen before."""
        cur = self._x("INSERT OR IGNORE INTO file_triggers(pipeline, path, size, mtime_ns, ts) VALUES (?, ?, ?, ?, ?)",
                      (pipeline, path, size, mtime_ns, now))
        return cur.lastrowid if cur.rowcount else None

    def set_file_trigger_run(self, pk: int, run: int | None) -> None:
        self._x("UPDATE file_triggers SET run = ? WHERE id = ?", (run, pk))

    def file_triggers(self, pipeline: str) -> list[FileTrigger]:
        return [FileTrigger(*r) for r in self._t(f"SELECT {_FILE_TRIGGER_COLS} FROM file_triggers WHERE pipeline = ? "
                                                 "ORDER BY id", (pipeline,))]

    def add_sla_miss(self, pipeline: str, run: int, task: str, deadline: float, now: float) -> bool:
        """True only for the first writer: a miss is recorded, and its hook run, once."""
        cur = self._x("INSERT OR IGNORE INTO sla_misses(pipeline, run, task, deadline, ts) VALUES (?, ?, ?, ?, ?)",
                      (pipeline, run, task, deadline, now))
        return bool(cur.rowcount)

    def sla_misses(self, pipeline: str | None = None, run: int | None = None) -> list[SlaMiss]:
        sql = """SELECT sla_misses.id, sla_misses.pipeline, sla_misses.run, sla_misses.task, sla_misses.deadline,
                        sla_misses.ts, runs.run_id, runs.ds, runs.logical_date
                 FROM sla_misses JOIN runs ON runs.id = sla_misses.run WHERE 1 = 1"""
        args: list = []
        if pipeline is not None:
            sql += " AND sla_misses.pipeline = ?"
            args.append(pipeline)
        if run is not None:
            sql += " AND sla_misses.run = ?"
            args.append(run)
        return [SlaMiss(*r[:8], _fromiso(r[8])) for r in self._t(sql + " ORDER BY sla_misses.id", args)]

    # -- retention, metrics, doctor -----------------------------------------
    def has_table(self, name: str) -> bool:
        return self._one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) is not None

    def run_counts(self) -> list[StateCount]:
        """(pipeline, state, n) for every run in the state file."""
        return [StateCount(r[0], _state(r[1]), r[2]) for r in self._t(
            "SELECT pipeline, state, count(*) FROM runs GROUP BY pipeline, state ORDER BY pipeline, state")]

    def last_success_ends(self) -> dict[str, float]:
        rows = self._q("SELECT pipeline, max(end) AS t FROM runs WHERE state = 'success' AND end IS NOT NULL GROUP BY pipeline")
        return {r["pipeline"]: r["t"] for r in rows}

    def last_finished_runs(self) -> list[FinishedRun]:
        """Per pipeline, the run that finished last (its state, start and end)."""
        # one pass over runs: a correlated subquery per run walked every run's spec snapshot
        # (overflow pages) once per run -- 30 s for 1000 runs of a 100-task pipeline
        return [FinishedRun(r[0], _state(r[1]), r[2], r[3]) for r in self._t(
            """SELECT pipeline, state, start, end FROM (
                   SELECT pipeline, state, start, end,
                          row_number() OVER (PARTITION BY pipeline ORDER BY end DESC, id DESC) AS newest
                   FROM runs WHERE state IN ('success', 'failed') AND end IS NOT NULL)
               WHERE newest = 1 ORDER BY pipeline""")]

    def active_ti_counts(self) -> list[StateCount]:
        """(pipeline, state, n) of task instances in unfinished runs: running, pending, up_for_retry."""
        return [StateCount(r[0], _state(r[1]), r[2]) for r in self._t(
            """SELECT runs.pipeline, ti.state, count(*)
               FROM task_instances ti JOIN runs ON runs.id = ti.run
               WHERE ti.state IN ('pending', 'running', 'up_for_retry') GROUP BY runs.pipeline, ti.state""")]

    def recent_failures(self, limit: int, pipeline: str | None = None) -> list[Failure]:
        """Failed task instances, the latest to end first, each with its run and the log of its last try."""
        sql = """SELECT ti.task, ti.try_number, ti.exit_code, ti.reason, ti.end, runs.pipeline, runs.run_id, runs.ds,
                        runs.logical_date,
                        (SELECT log_path FROM tries WHERE tries.ti = ti.id ORDER BY try_number DESC LIMIT 1) AS log_path
                 FROM task_instances ti JOIN runs ON runs.id = ti.run WHERE ti.state = 'failed'"""
        args: list = []
        if pipeline is not None:
            sql += " AND runs.pipeline = ?"
            args.append(pipeline)
        return [Failure(*r[:8], _fromiso(r[8]), r[9])
                for r in self._t(sql + " ORDER BY ti.end DESC, ti.id DESC LIMIT ?", [*args, limit])]

    def sla_miss_counts(self) -> dict[str, int] | None:
        """Misses per pipeline, or None when this state file has no SLA table."""
        if not self.has_table("sla_misses"):
            return None
        return {r[0]: r[1] for r in self._q("SELECT pipeline, count(*) FROM sla_misses GROUP BY pipeline")}

    # -- transitions ------------------------------------------------------
    # The state machine of model.TI_TRANSITIONS / RUN_TRANSITIONS, and the only writers of a
    # task instance's or a run's state (set_run_state aside, for fixtures). Each is one
    # conditional UPDATE from the table's expected states: a caller that read a state which
    # has changed since gets False/None back and has changed nothing.

    def _ti_change(self, name: str, to: str, assignments: str, args: tuple, ti_pk: int, guard: str = "",
                   guard_args: tuple = ()) -> bool:
        from pipectl.model.states import TI_TRANSITIONS
        froms, tos = TI_TRANSITIONS[name]
        if to not in tos:
            raise ValueError(f"no task-instance transition {name!r} to {to!r}")
        marks = ",".join("?" * len(froms))
        cur = self._x(f"UPDATE task_instances SET state = ?, {assignments} WHERE id = ? AND state IN ({marks}){guard}",
                      (to, *args, ti_pk, *froms, *guard_args))
        return bool(cur.rowcount)

    def claim_task_instance(self, ti_pk: int, now: float) -> int | None:
        """claim: pending/up_for_retry -> running; returns the new try number, or None if someone
        else won (or a try of it is still live: one task instance never has two)."""
        if not self._ti_change("claim", "running", "try_number = try_number + 1, start = coalesce(start, ?), "
                               "end = NULL, next_try_at = NULL, exit_code = NULL, reason = NULL", (now,), ti_pk,
                               f" AND NOT {_LIVE_TRY}"):
            return None
        return self._one("SELECT try_number FROM task_instances WHERE id = ?", (ti_pk,))[0]

    def finish_task_instance(self, ti_pk: int, try_number: int, state: str, *, now: float, reason: str | None,
                             exit_code: int | None, next_try_at: float | None = None) -> bool:
        """finish: the try ``try_number`` ended; False when the task instance is no longer at that try."""
        ended = state != "up_for_retry"
        return self._ti_change("finish", state, "reason = ?, exit_code = ?, next_try_at = ?, end = ?",
                               (reason, exit_code, next_try_at, now if ended else None), ti_pk,
                               " AND try_number = ?", (try_number,))

    def requeue_unstarted(self, ti_pk: int, try_number: int) -> bool:
        """requeue: try ``try_number`` was claimed but never started (its launcher died first):
        back to up_for_retry, due now, and it does not count against its retries."""
        return self._ti_change("requeue", "up_for_retry", "budget_base = budget_base + 1, next_try_at = NULL, "
                               "reason = 'lost', exit_code = NULL", (), ti_pk, " AND try_number = ?", (try_number,))

    def set_ti_state(self, ti_pk: int, state: str, *, now: float | None = None, reason: str | None = None,
                     exit_code: int | None = None, next_try_at: float | None = None) -> bool:
        """settle (trigger rule: upstream_failed, skipped) or check (sensor, foreach: success,
        failed, skipped) a pending task instance that runs no try; False if it left pending."""
        name = "settle" if reason == "trigger_rule" else "check"
        return self._ti_change(name, state, "reason = ?, exit_code = ?, next_try_at = ?, end = ?",
                               (reason, exit_code, next_try_at, now), ti_pk)

    def reset_task_instance(self, ti_pk: int) -> bool:
        """reset: a finished task instance back to pending with a fresh retry budget; try numbers
        keep counting so old logs survive. False when it is not finished (it is running, say)."""
        return self._ti_change("reset", "pending", "budget_base = try_number, next_try_at = NULL, exit_code = NULL, "
                               "reason = NULL, end = NULL, sensor_started = NULL, sensor_next = NULL", (), ti_pk,
                               f" AND NOT {_LIVE_TRY}")

    def mark_task_instance(self, ti_pk: int, state: str, *, expect: str, now: float, reason: str) -> bool:
        """mark: by hand, from the state the operator was shown (``expect``); never while a try is live."""
        return self._ti_change("mark", state, "reason = ?, exit_code = NULL, next_try_at = NULL, end = ?",
                               (reason, now), ti_pk, f" AND state = ? AND NOT {_LIVE_TRY}", (expect,))

    def promote_run(self, run_pk: int, limit: int, now: float) -> bool:
        """promote: queued -> running while fewer than ``limit`` runs of its (pipeline, batch) run,
        counted in the same statement, so two racing promoters never exceed it."""
        return self._run_change("promote", "start = coalesce(start, ?), end = NULL", (now,), run_pk,
                                """ AND (SELECT count(*) FROM runs o WHERE o.state = 'running' AND o.pipeline = runs.pipeline
                                   AND o.batch IS runs.batch) < ?""", (limit,), to="running")

    def finish_run(self, run_pk: int, now: float) -> str | None:
        """finish: running -> success/failed, decided here from its task instances; None while any
        of them is unfinished or any try of it is live (a stale view must not end a run)."""
        if not self._run_change("finish", "end = ?", (now,), run_pk, _RUN_SETTLED, to=None):
            return None
        return self._one("SELECT state FROM runs WHERE id = ?", (run_pk,))[0]

    def resettle_run(self, run_pk: int, now: float) -> str | None:
        """resettle: a finished run's state follows its task instances after a mark; returns the new
        state when it changed."""
        before = self._one("SELECT state FROM runs WHERE id = ?", (run_pk,))
        if before is None or not self._run_change("resettle", "end = ?", (now,), run_pk, _RUN_SETTLED, to=None):
            return None
        after = self._one("SELECT state FROM runs WHERE id = ?", (run_pk,))[0]
        return after if after != before[0] else None

    def reopen_run(self, run_pk: int) -> bool:
        """reopen: a finished run goes back to queued (retry, backfill); an active one is left as it is."""
        return self._run_change("reopen", "end = NULL", (), run_pk, "", (), to="queued")

    def _run_change(self, name: str, assignments: str, args: tuple, run_pk: int, guard: str, guard_args: tuple = (),
                    *, to: str | None) -> bool:
        from pipectl.model.states import RUN_TRANSITIONS
        froms, tos = RUN_TRANSITIONS[name]
        # to None: the state is decided from the run's task instances (finish, resettle)
        state = "?" if to is not None else _RUN_OUTCOME
        if to is not None and to not in tos:
            raise ValueError(f"no run transition {name!r} to {to!r}")
        marks = ",".join("?" * len(froms))
        cur = self._x(f"UPDATE runs SET state = {state}, {assignments} WHERE id = ? AND state IN ({marks}){guard}",
                      ((to,) if to is not None else ()) + (*args, run_pk, *froms, *guard_args))
        return bool(cur.rowcount)

    def prune_runs_older_than(self, cutoff: float, dry_run: bool = False) -> list[tuple[Run, list]]:
        """prune: delete the finished runs that ended before ``cutoff`` (task instances, tries and
        SLA misses by CASCADE) and their events; returns exactly the runs deleted. Selected and
        deleted in one transaction, each by a conditional DELETE: a run re-opened, or with a
        task instance unfinished or a try live, is never touched, nor is anything of it.
        Returns (run, its (task, try number) pairs) per run deleted (or, dry, that would be)."""
        from pipectl.model.states import RUN_TRANSITIONS
        froms = RUN_TRANSITIONS["prune"][0]
        marks = ",".join("?" * len(froms))
        where = f"state IN ({marks}) AND coalesce(end, created) < ?{_RUN_SETTLED}"
        with self.tx():
            rows = [_run(r) for r in self._t(f"SELECT {_RUN_COLS} FROM runs WHERE {where} ORDER BY id", (*froms, cutoff))]
            if dry_run:
                return [(r, []) for r in rows]
            gone = []
            for r in rows:
                tries = [(t.task, t.try_number) for t in self.tries_for_run(r.id)]
                if self._x(f"DELETE FROM runs WHERE id = ? AND {where}", (r.id, *froms, cutoff)).rowcount:
                    self._x("DELETE FROM events WHERE run = ?", (r.id,))
                    gone.append((r, tries))
        return gone


def _statements(script: str) -> list[str]:
    """Split a migration into statements; sqlite3 knows where one ends, even past a ';' in a comment."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def _readonly_uri(path: str) -> str:
    from urllib.parse import quote  # only viewers pay for it, never the tick

    return f"file:{quote(os.path.abspath(path))}?mode=ro"


def spec_copies(path: str) -> tuple[list[str], str | None]:
    """The last valid spec (JSON) of every pipeline and the fingerprint of the spec files they came
    from, for masking what a command prints. Its own read-only SQLite connection, and no Python-level
    open of the file: the command printing may hold a Store with locks on the same file, and closing
    any other descriptor of it would drop those (POSIX locks belong to the process). With no
    write-ahead log beside the file (nobody has it open) it is read as immutable, which leaves no
    -wal/-shm pair behind: a dry run or a reading command changes nothing on disk."""
    uri = _readonly_uri(path)
    if not os.path.exists(path + "-wal"):
        uri += "&immutable=1"
    conn = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        specs = [r[0] for r in conn.execute("SELECT spec FROM pipelines WHERE spec IS NOT NULL")]
        row = conn.execute("SELECT value FROM meta WHERE key = 'spec_fingerprint'").fetchone()
        return specs, row[0] if row else None
    finally:
        conn.close()


# realpath -> connections this process has open to it (see Store.__init__)
_OPEN: dict[str, int] = {}


def _held(path: str) -> int:
    return _OPEN.get(os.path.realpath(path), 0)


def _check_header(path: str) -> None:
    """Refuse a file that is not SQLite before sqlite3 gets a chance to touch it."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise StateError(f"cannot read state file {path}: {e.strerror}") from None
    if head and head != b"SQLite format 3\x00":
        raise StateError(f"{path} is not a pipectl state file (not SQLite); it was left untouched")


def copy_state(src: str, dst: str) -> None:
    """A consistent copy of the state file at ``src`` into a new file ``dst``, for previews that
    run the scheduler on a scratch copy. ``src`` is never written: with no write-ahead log beside
    it (nobody has it open), its bytes are copied and checked; else SQLite's backup reads it
    through a read-only connection (which would leave a -wal/-shm pair behind were there none)."""
    import shutil

    held = _held(src)  # then never open and close the file itself: see Store.__init__
    if not held:
        _check_header(src)
    try:
        if not held and not os.path.exists(src + "-wal"):
            shutil.copyfile(src, dst)
            check = sqlite3.connect(dst)
            try:
                ok = check.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            finally:
                check.close()
            if ok and not os.path.exists(src + "-wal"):
                return
            os.unlink(dst)  # a writer came in while we copied: read it properly
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
        try:
            target = sqlite3.connect(dst)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.DatabaseError as e:
        raise StateError(f"{src} is not a usable pipectl state file ({e}); it was left untouched") from None


def state_io_error(path: str, e: sqlite3.Error) -> StateError:
    """A read-only, full or failing disk (or a lock held too long) as one line naming the file.
    Nothing was written: SQLite rolled the transaction back."""
    text = str(e)
    probe = _disk_problem(os.path.dirname(path) or ".")
    if probe and "locked" not in text and "busy" not in text:
        cause = probe
    elif "readonly" in text or "read-only" in text:
        cause = "it is read-only (check the state directory's permissions and file system)"
    elif "full" in text:
        cause = "the disk is full"
    elif "disk I/O" in text:
        cause = "disk I/O error (a full or failing disk?)"
    elif "unable to open" in text:
        cause = "cannot open it (is its directory missing, read-only or not accessible?)"
    elif "locked" in text or "busy" in text:
        cause = "another pipectl held it locked for too long; try again"
    else:
        cause = text
    return StateError(f"state file {path}: {cause}; nothing was changed")


def _disk_problem(directory: str) -> str | None:
    """What SQLite's terse error most likely means, from the state directory itself."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "its file system is read-only"
    if not os.access(directory, os.W_OK):
        return "its directory is not writable (permissions)"
    if st.f_bavail == 0 or (st.f_favail == 0 and st.f_files):
        return "the disk is full"
    return None


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def open_store(config, create: bool = True) -> Store:
    """The project's state file for a command that writes: the state directory made private
    (0700) first, the file created when missing if ``create``."""
    from pipectl.state.files import private_dir
    private_dir(config.state_dir)
    return Store(config.state_db, create=create)


def existing_store(config, readonly: bool = False) -> Store | None:
    """The project's state file for a command that reads, or None when no tick has made one
    (an empty file, what a crash between creating it and its schema leaves, is none either).
    Reading never creates it, nor touches the state directory."""
    path = config.state_db
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    return Store(path, create=False, readonly=readonly)
