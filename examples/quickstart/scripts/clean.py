"""Clean data/raw/DS.csv into data/clean/DS.csv: drop rows with no region or a bad amount.

Exit 3 when no row survives: that is a data problem, and the pipeline marks
exit code 3 as not worth retrying.
"""
import csv
import io
import os

from _common import die, ds_arg, log, write_atomic


def main():
    a = ds_arg(__doc__)
    src = f"data/raw/{a.date}.csv"
    if not os.path.exists(src):
        die(f"clean: {src} is missing (did extract_orders run?)")
    kept, dropped = [], 0
    with open(src, newline="") as f:
        for row in csv.DictReader(f):
            try:
                amount = float(row["amount"])
            except (TypeError, ValueError):
                amount = None
            if not row.get("region") or amount is None or amount < a.min_amount or amount < 0:
                dropped += 1
                continue
            kept.append((row["order_id"], row["ds"], row["region"], f"{amount:.2f}"))
    if not kept:
        die(f"clean: no usable rows in {src} ({dropped} dropped)", code=3)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["order_id", "ds", "region", "amount"])
    w.writerows(kept)
    write_atomic(f"data/clean/{a.date}.csv", out.getvalue())
    log(f"clean: kept {len(kept)} rows, dropped {dropped}, wrote data/clean/{a.date}.csv")


if __name__ == "__main__":
    main()
