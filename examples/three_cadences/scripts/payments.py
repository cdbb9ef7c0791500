"""Every 15 minutes: fetch payments of [high-water mark, interval end) into raw_payments."""
import sys

from wh import ACCOUNTS, connect, minutes, pick, window

start, end = sys.argv[1], sys.argv[2]
db = connect()
lo, hi = window(db, "payments", end)
lo = min(lo, start)
n = 0
with db:
    for t in minutes(lo, hi, 15):
        if pick("pay", t.isoformat()) % 4 == 0:
            acct = ACCOUNTS[pick("acct", t.isoformat()) % 2][0]  # a3 never pays
            db.execute("INSERT OR IGNORE INTO raw_payments VALUES (?, ?, ?, ?)",
                       (f"pay-{t:%Y%m%d%H%M}", acct, 500 + pick("amt", t.isoformat()) % 2000, t.isoformat()))
            n += 1
    db.execute("INSERT OR REPLACE INTO high_water VALUES ('payments', ?)", (hi,))
print(f"payments {lo} .. {hi}: {n} landed")
