"""``schedule: {file: GLOB}``: one run per new matching file.

On every full tick the glob (relative to the project root) is expanded; each
file whose (path, size, mtime) has not been seen by that pipeline gets a run of
type ``file`` with ``params.file`` = the path relative to the project root. A file
that is rewritten (new size or mtime) counts as new. The logical date is now;
files found in one tick get logical dates one microsecond apart (oldest mtime
first), so (pipeline, logical date) stays unique. The file is recorded in the
same transaction that creates its run: a crash never loses or duplicates one.
A paused pipeline does not look at files; what arrived meanwhile runs on unpause.
"""
from __future__ import annotations

import glob as _glob
import os
from datetime import timedelta

from pipectl.engine.context import StepContext
from pipectl.engine.rules import Paused
from pipectl.engine.runs import create_run
from pipectl.model.pipeline import FileSchedule


def trigger(ctx: StepContext, pipelines, rows, now_dt, report) -> list[int]:
    """A tick's source (tick.SOURCES): one run per new matching file."""
    created: list[int] = []
    store = ctx.store
    root = ctx.config.root
    for name, p in pipelines.items():
        scheds = [s for s in p.schedules if isinstance(s, FileSchedule)]
        row = rows.get(name)
        if not scheds or row is None or Paused.holds(row):
            continue
        found = []
        for s in scheds:
            for path in _glob.glob(os.path.join(root, s.file), recursive=True):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if os.path.isfile(path):
                    found.append((st.st_mtime_ns, os.path.relpath(path, root), st.st_size))
        ld = now_dt
        for mtime_ns, rel, size in sorted(set(found)):
            with store.tx():
                fpk = store.add_file_trigger(name, rel, size, mtime_ns, ctx.clock.now())
                if fpk is None:
                    continue
                for _ in range(10_000):
                    pk = create_run(ctx, p, ld, run_type="file", params={"file": rel})
                    ld += timedelta(microseconds=1)
                    if pk is not None:
                        break
                store.set_file_trigger_run(fpk, pk)
            created.append(pk)
            report.created.append(f"{name} file {rel}")
    return created
