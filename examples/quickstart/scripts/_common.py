"""Shared bits of the quickstart scripts (stdlib only)."""
import argparse
import datetime
import os
import sys


def ds_arg(description):
    """The day to process: --date, else PIPECTL_DS (pipectl sets it for every task)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--date", default=os.environ.get("PIPECTL_DS"), help="YYYY-MM-DD")
    p.add_argument("--min-amount", type=float, default=0.0)
    a = p.parse_args()
    if not a.date:
        p.error("--date YYYY-MM-DD is required (or PIPECTL_DS)")
    try:
        datetime.date.fromisoformat(a.date)
    except ValueError:
        p.error(f"bad --date {a.date!r}")
    return a


def write_atomic(path, text):
    # A task killed half-way must not leave a half-written file for the next task.
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def log(msg):
    print(msg, flush=True)


def die(msg, code=1):
    print(msg, file=sys.stderr, flush=True)
    sys.exit(code)
