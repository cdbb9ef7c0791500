"""Micro-batch: land the events of [high-water mark, interval end) into raw_events."""
import sys

from wh import ACCOUNTS, connect, minutes, pick, window

start, end = sys.argv[1], sys.argv[2]
db = connect()
lo, hi = window(db, "events", end)
lo = min(lo, start)
n = 0
with db:
    for t in minutes(lo, hi, 5):
        for k in range(pick(t.isoformat()) % 3):
            acct = ACCOUNTS[pick(t.isoformat(), str(k)) % 3][0]
            db.execute("INSERT OR IGNORE INTO raw_events VALUES (?, ?, ?)", (f"evt-{t:%Y%m%d%H%M}-{k}", acct, t.isoformat()))
            n += 1
    db.execute("INSERT OR REPLACE INTO high_water VALUES ('events', ?)", (hi,))
print(f"events {lo} .. {hi}: {n} landed")
