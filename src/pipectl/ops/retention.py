"""``pipectl prune``: forgetting old runs (see :mod:`pipectl.engine.retention`, where the
tick's automatic prune and this command share one implementation)."""
from __future__ import annotations

from pipectl.engine.retention import PRUNE_EVERY, PruneResult, maybe_prune, prune  # noqa: F401
from pipectl.exec.layout import run_log_dir  # noqa: F401
