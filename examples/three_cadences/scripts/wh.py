"""The local SQLite warehouse shared by the example's scripts (stdlib only)."""
import hashlib
import sqlite3
import sys
from datetime import datetime, timedelta

ACCOUNTS = [("a1", "Acme", "US"), ("a2", "Globex", "US"), ("a3", "Initech", "EU")]


def connect():
    db = sqlite3.connect("warehouse.db", timeout=30)
    db.executescript("""
        CREATE TABLE IF NOT EXISTS raw_events(event_id TEXT PRIMARY KEY, account_id TEXT, ts TEXT);
        CREATE TABLE IF NOT EXISTS raw_payments(payment_id TEXT PRIMARY KEY, account_id TEXT, amount_cents INT, ts TEXT);
        CREATE TABLE IF NOT EXISTS raw_accounts(account_id TEXT PRIMARY KEY, account_name TEXT, region TEXT, ds TEXT);
        CREATE TABLE IF NOT EXISTS high_water(source TEXT PRIMARY KEY, mark TEXT);
        CREATE TABLE IF NOT EXISTS mart_daily_revenue_by_account(
            account_id TEXT, account_name TEXT, region TEXT, revenue_date TEXT, event_count INT, revenue_usd REAL,
            PRIMARY KEY(account_id, revenue_date));
    """)
    return db


def window(db, source, end):
    """From the source's high-water mark (or one interval back) to ``end``: a failed or skipped batch
    is picked up by the next one, so the last batch of the day leaves the whole day loaded."""
    row = db.execute("SELECT mark FROM high_water WHERE source = ?", (source,)).fetchone()
    return (row[0] if row else end), end


def minutes(start, end, step):
    t = datetime.fromisoformat(start)
    while t < datetime.fromisoformat(end):
        yield t
        t += timedelta(minutes=step)


def pick(*parts):
    return int(hashlib.sha1("|".join(parts).encode()).hexdigest(), 16)


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)
