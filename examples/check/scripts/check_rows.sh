#!/bin/sh
# Exit 3 (bad data: do not retry) when the day's CSV has fewer than $2 rows.
ds=$1 min=$2
rows=$(awk 'NR > 1' "data/orders_$ds.csv" | wc -l)
echo "$rows rows for $ds (need $min)"
[ "$rows" -ge "$min" ] || exit 3
