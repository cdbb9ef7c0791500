"""The registry of live ``--wait`` supervisors (see :func:`layout.supervisors_dir`).

A wrapper whose try ends leaves reaping to a live supervisor; with none alive it
starts ``pipectl.exec.reap`` itself.
"""
from __future__ import annotations

import os

from pipectl.exec import executor
from pipectl.exec.layout import supervisors_dir
from pipectl.state.files import private_dir, write_private


def register_supervisor(config) -> str:
    path = os.path.join(private_dir(supervisors_dir(config)), str(os.getpid()))
    write_private(path, executor.process_start(os.getpid()) or "")
    return path


def forget_dead_supervisors(config) -> int:
    """Remove the pid files of supervisors killed before they could: a reused pid would
    otherwise look alive to every wrapper, which would then leave reaping to the next tick."""
    d = supervisors_dir(config)
    try:
        names = os.listdir(d)
    except OSError:
        return 0
    gone = 0
    for name in names:
        path = os.path.join(d, name)
        try:
            with open(path) as f:
                started = f.read().strip()
        except OSError:
            continue
        if not name.isdigit() or executor.process_start(int(name)) != started:
            unregister_supervisor(path)
            gone += 1
    return gone


def unregister_supervisor(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
