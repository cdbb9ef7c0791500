"""``python -m pipectl.exec.timer PROJECT OFFSET``: due times kept between cron ticks, with no daemon.

cron ticks once a minute, yet a retry's delay, a sensor's next poke, work left by a
tick that reached its budget, or made ready by an operator command must be acted on
within a second. Whichever pipectl process leaves such work behind calls
:func:`hand_off`: when something is due within the coming minute and no timer is
alive, it starts this process, detached. The timer sleeps until the earliest due
time in the state file, steps the engine as a wrapper's reaper does (without the
tick lock, so a tick is never refused on its account), and repeats. It exits once
nothing is due within ``HORIZON`` seconds.

- One per project: it holds an flock on ``state_dir/timer.lock`` for its whole life;
  another one started meanwhile exits at once. A sleeping timer re-reads the state
  file whenever another process committed to it (``PRAGMA data_version``, every
  ``POLL`` seconds), so work handed off to a live timer is seen too.
- Killing it (kill -9 included) loses nothing: every due time lives in the state
  file, and the next tick, reaper or command hands off again.
- Before it exits it lets go of the lock and looks once more, so a hand-off that
  found the lock still held is never lost: either that look sees the new work, or
  the hand-off came later and started a new timer.
- ``OFFSET`` is the clock offset of ``--now`` / ``PIPECTL_NOW`` (as for wrappers and
  reapers): due times are compared on that timeline, sleeps are real.
- The one exception to "no tick lock": after ``unpause`` found a tick running, the
  scheduling pass it wants is run here (taking the lock without waiting, so only when
  no tick holds it, and with a budget of at most ``WANTED_TICK_BUDGET``).
"""
from __future__ import annotations

import fcntl
import os
import sys
import time

from pipectl.exec.handoff import (  # noqa: F401  (callers hand off through this module too)
    HORIZON, LOCK_NAME, POLL, WANTED_TICK_BUDGET, _try_lock, act_now, hand_off, lock_path, running, start, wanted)


class Timer:
    def __init__(self, config, clock, fd: int):
        self.config, self.clock, self.fd = config, clock, fd
        self.since = 0.0  # engine clock at the start of the last step
        self.stepped = 0.0  # real time of the same
        self._open()

    def _open(self) -> None:
        from pipectl.engine.step import Engine
        from pipectl.state.store import Store
        self.store = Store(self.config.state_db, create=False)
        self.engine = Engine(self.config, self.store, self.clock)

    def close(self) -> None:
        self.store.close()

    def run(self) -> None:
        while True:
            if wanted(self.store, "tick_wanted") > wanted(self.store, "tick_began"):
                self._tick()
            self.since, self.stepped = self.clock.now(), time.time()
            self.engine.step()
            self.engine.collect_children()
            if not self._sleep():
                return

    def _tick(self) -> None:
        import dataclasses

        from pipectl.engine.tick import tick
        config = dataclasses.replace(self.config, tick_budget=min(self.config.tick_budget, WANTED_TICK_BUDGET))
        # the tick opens the state file itself: never two connections to it in one process (closing
        # either one's file would drop the other's POSIX locks, and SQLite relies on them)
        self.close()
        try:
            tick(config, self.clock)  # returns at once when a tick holds the lock; then we try again later
        finally:
            self._open()

    def _due(self) -> float | None:
        """The engine-clock time of the next step, None when nothing is due within HORIZON."""
        store = self.store
        if wanted(store, "step_wanted") > self.stepped:
            return self.clock.now()  # a caller left ready work undone after our last step began
        if wanted(store, "tick_wanted") > wanted(store, "tick_began"):
            return self.since + POLL  # until a tick has begun since it was wanted
        wake = store.earliest_wakeup(after=self.since)
        if wake is None or wake - self.clock.now() > HORIZON:
            return None
        return wake

    def _sleep(self) -> bool:
        """Sleep until the next due time; False when the timer should exit."""
        store = self.store
        due = self._due()
        seen = store.data_version()
        while True:
            if due is None:
                # let go first, then look once more: a hand-off that found the lock held is seen now
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                due = self._due()
                if due is None:
                    return False
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return False  # a new timer took over
            now = self.clock.now()
            if due <= now:
                return True
            time.sleep(min(POLL, due - now))
            if not os.path.exists(self.config.state_db):
                return False  # the project is gone
            dv = store.data_version()
            if dv != seen:
                seen = dv
                due = self._due()
            if due is not None and due - self.clock.now() > HORIZON:
                due = None


def main(argv: list[str]) -> int:
    from pipectl.spec.config import load_config
    from pipectl.engine.step import Clock
    config = load_config(argv[0])
    fd = _try_lock(lock_path(config))
    if fd is None:
        return 0  # one timer per project
    try:
        timer = Timer(config, Clock(float(argv[1])), fd)
        try:
            timer.run()
        finally:
            timer.close()
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:  # nobody reads this process's output; the next tick takes over
        sys.exit(1)
