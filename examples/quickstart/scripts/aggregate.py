"""Load orders and revenue per region for DS into warehouse.db (table orders_by_region).

The day is replaced in one transaction (DELETE + INSERT), so re-running a day,
after a retry or a backfill, gives the same rows, never duplicates.
"""
import csv
import os
import sqlite3
from collections import defaultdict

from _common import die, ds_arg, log

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders_by_region (
    ds            TEXT    NOT NULL,
    region        TEXT    NOT NULL,
    orders        INTEGER NOT NULL,
    revenue_cents INTEGER NOT NULL,
    PRIMARY KEY (ds, region)
)
"""


def main():
    ds = ds_arg(__doc__).date
    src = f"data/clean/{ds}.csv"
    if not os.path.exists(src):
        die(f"aggregate: {src} is missing (did clean_orders run?)")
    totals = defaultdict(lambda: [0, 0])
    with open(src, newline="") as f:
        for row in csv.DictReader(f):
            t = totals[row["region"]]
            t[0] += 1
            t[1] += round(float(row["amount"]) * 100)
    db = os.environ.get("WAREHOUSE", "warehouse.db")
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute(SCHEMA)
        with conn:  # one transaction: readers see the old day or the new one, never half
            conn.execute("DELETE FROM orders_by_region WHERE ds = ?", (ds,))
            conn.executemany(
                "INSERT INTO orders_by_region (ds, region, orders, revenue_cents) VALUES (?, ?, ?, ?)",
                [(ds, region, n, cents) for region, (n, cents) in sorted(totals.items())],
            )
    finally:
        conn.close()
    for region, (n, cents) in sorted(totals.items()):
        log(f"aggregate: {ds} {region:<11} {n:>4} orders {cents / 100:>10.2f}")


if __name__ == "__main__":
    main()
