#!/bin/sh
# The day's orders as CSV: as many rows as the day of the month modulo 5 (a stand-in
# for a source that is sometimes short).
set -e
ds=$1
day=$(echo "$ds" | cut -d- -f3 | sed 's/^0//')
mkdir -p data
{
  echo "order_id,amount"
  i=1
  while [ "$i" -le $((day % 5)) ]; do echo "$ds-$i,$((i * 10))"; i=$((i + 1)); done
} > "data/orders_$ds.csv"
