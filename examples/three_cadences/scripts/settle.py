"""For simulate.sh: wait until no try is starting or running (tasks chain through their reapers)."""
import sqlite3
import sys
import time

db = sqlite3.connect(".pipectl/state.db", timeout=30)
quiet_since, deadline = None, time.time() + float(sys.argv[1] if len(sys.argv) > 1 else 60)
while time.time() < deadline:
    busy = db.execute("SELECT count(*) FROM tries WHERE state IN ('starting', 'running')").fetchone()[0]
    if busy:
        quiet_since = None
    elif quiet_since is None:
        quiet_since = time.time()
    elif time.time() - quiet_since > 0.6:
        break
    time.sleep(0.1)
