#!/bin/sh
# Step the scheduler through simulated days with --now (cron would call `pipectl tick`
# every minute; here a few ticks at the moments that matter). Day 1 (ds 2026-04-25):
# the mart starts from its assets right after the 01:00 CRM load. Day 2 (ds 2026-04-26):
# the CRM is down until 06:30, the 05:00 fallback run waits in its sensor, the mart
# runs once the accounts land, never on partial data.
set -e
cd "$(dirname "$0")"
PIPECTL=${PIPECTL:-pipectl}
rm -rf .pipectl warehouse.db crm_outage sla_misses.log
tick() { $PIPECTL --now "$1" tick >/dev/null; python3 scripts/settle.py; }

for t in 2026-04-25T00:05:00Z 2026-04-25T12:00:00Z 2026-04-25T23:55:00Z 2026-04-26T00:00:00Z \
         2026-04-26T00:30:00Z 2026-04-26T01:00:00Z 2026-04-26T01:01:00Z 2026-04-26T05:00:00Z; do
  tick $t
done
touch crm_outage
for t in 2026-04-27T00:00:00Z 2026-04-27T01:00:00Z 2026-04-27T02:00:00Z 2026-04-27T05:00:00Z \
         2026-04-27T05:05:00Z 2026-04-27T06:05:00Z; do
  tick $t
done
rm crm_outage
for t in 2026-04-27T06:30:00Z 2026-04-27T07:00:00Z 2026-04-27T07:05:00Z 2026-04-27T07:10:00Z; do
  tick $t
done
N="--now 2026-04-27T08:00:00Z"
echo "== pipectl runs daily_revenue_by_account"
$PIPECTL $N runs daily_revenue_by_account
echo "== pipectl show daily_revenue_by_account --date 2026-04-25"
$PIPECTL $N show daily_revenue_by_account --date 2026-04-25
echo "== pipectl show daily_revenue_by_account --date 2026-04-26"
$PIPECTL $N show daily_revenue_by_account --date 2026-04-26
echo "== pipectl grid daily_revenue_by_account"
$PIPECTL $N grid daily_revenue_by_account --start 2026-04-24 --end 2026-04-26 || true
echo "== pipectl assets"
$PIPECTL $N assets
echo "== mart rows"
python3 -c "
import sqlite3
for r in sqlite3.connect('warehouse.db').execute('SELECT * FROM mart_daily_revenue_by_account ORDER BY 4, 1'): print(*r)"
echo "== sla_misses.log"
cat sla_misses.log 2>/dev/null || echo "(none)"
