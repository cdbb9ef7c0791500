"""Daily full refresh of the CRM accounts. `touch crm_outage` makes the CRM unreachable."""
import os
import sys

from wh import ACCOUNTS, connect, fail

ds = sys.argv[1]
if os.path.exists("crm_outage"):
    fail("CRM unreachable (crm_outage present)")
db = connect()
with db:
    db.execute("DELETE FROM raw_accounts")
    db.executemany("INSERT INTO raw_accounts VALUES (?, ?, ?, ?)", [(*a, ds) for a in ACCOUNTS])
print(f"accounts for {ds}: {len(ACCOUNTS)}")
