"""One row per account for ds: events and revenue of that day. Idempotent (replaces the day)."""
import sys

from wh import connect

ds = sys.argv[1]
db = connect()
with db:
    db.execute("DELETE FROM mart_daily_revenue_by_account WHERE revenue_date = ?", (ds,))
    db.execute("""
        INSERT INTO mart_daily_revenue_by_account
        SELECT a.account_id, a.account_name, a.region, :ds,
               (SELECT count(*) FROM raw_events e WHERE e.account_id = a.account_id AND date(e.ts) = :ds),
               coalesce((SELECT sum(amount_cents) FROM raw_payments p
                         WHERE p.account_id = a.account_id AND date(p.ts) = :ds), 0) / 100.0
        FROM raw_accounts a""", {"ds": ds})
for row in db.execute("SELECT * FROM mart_daily_revenue_by_account WHERE revenue_date = ? ORDER BY 1", (ds,)):
    print(*row)
