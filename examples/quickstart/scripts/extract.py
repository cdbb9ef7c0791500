"""Generate one day of fake orders into data/raw/DS.csv, deterministically (seeded by DS).

A few rows are deliberately broken (missing region, bad amount, negative amount)
so that clean.py has something to do.
"""
import csv
import io
import random

from _common import ds_arg, log, write_atomic

REGIONS = ["us-east", "us-west", "eu-central", "ap-south"]


def main():
    ds = ds_arg(__doc__).date
    rng = random.Random(f"orders-{ds}")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["order_id", "ds", "region", "amount"])
    n = rng.randint(80, 120)
    for i in range(n):
        region = rng.choice(REGIONS)
        amount = f"{rng.uniform(5, 250):.2f}"
        roll = rng.random()
        if roll < 0.03:
            region = ""
        elif roll < 0.06:
            amount = "n/a"
        elif roll < 0.08:
            amount = f"-{amount}"
        w.writerow([f"{ds.replace('-', '')}-{i:04d}", ds, region, amount])
    write_atomic(f"data/raw/{ds}.csv", out.getvalue())
    log(f"extract: wrote {n} orders to data/raw/{ds}.csv")


if __name__ == "__main__":
    main()
