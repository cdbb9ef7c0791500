"""Where things live under the project's state directory.

Every path a try, a hook or a supervisor writes is named here, so the engine,
``logs``, ``prune`` and the wrapper agree on one layout.
"""
from __future__ import annotations

import os


def logs_root(config) -> str:
    """Every run's log directory lies below this one (prune deletes nothing outside it)."""
    return os.path.join(config.state_dir, "logs")


def run_log_dir(config, run) -> str:
    """A run's log directory: its tries' logs and its hooks.log."""
    safe = run.run_id.replace(":", "").replace("+", "_")
    return os.path.join(logs_root(config), run.pipeline, safe)


def log_path(config, run, task: str, try_number: int) -> str:
    return os.path.join(run_log_dir(config, run), f"{task}.{try_number}.log")


def hooks_log(config, run) -> str:
    """Where the output of a run's hooks (on_success, on_sla_miss, ...) goes."""
    return os.path.join(run_log_dir(config, run), "hooks.log")


def status_path(config, ti_pk: int, try_number: int) -> str:
    """The file a try's wrapper writes its exit status to."""
    return os.path.join(config.state_dir, "status", f"{ti_pk}.{try_number}")


def supervisors_dir(config) -> str:
    """One empty file per live ``--wait`` supervisor, named by its pid. A finishing
    wrapper looks here with shell builtins only (``kill -0``): no extra process on
    the path from one task's end to the next one's start."""
    return os.path.join(config.state_dir, "supervisors")
