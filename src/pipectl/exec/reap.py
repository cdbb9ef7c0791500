"""``python -m pipectl.exec.reap PROJECT OFFSET``: what a task wrapper runs when it
ends and no ``--wait`` supervisor is alive, so that downstream tasks start within
a second of their upstream's end even between ticks. It records results and
starts ready work from the runs' spec snapshots: no YAML, no schedules."""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import os

    try:
        # The wrapper that started us leads its try's session, and whoever records the
        # try kills what is left of that session: leave it first.
        os.setsid()
    except OSError:
        pass  # already a session leader: run by hand
    from pipectl.spec.config import load_config
    from pipectl.engine.step import Clock, Engine
    from pipectl.state.store import open_store
    from pipectl.exec.timer import hand_off
    config = load_config(argv[0])
    store = open_store(config, create=False)
    try:
        engine = Engine(config, store, Clock(float(argv[1])))
        began = engine.clock.now()
        engine.step()
        hand_off(engine, began)  # e.g. the retry this step scheduled, due in a few seconds
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:  # nobody reads this process's output; the next tick will catch up
        sys.exit(1)
