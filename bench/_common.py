"""Helpers shared by the bench scripts (not a test module)."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable
PIPECTL = str(VENV_BIN / "pipectl") if (VENV_BIN / "pipectl").exists() else None

sys.path.insert(0, str(REPO / "src"))


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PIPECTL_")}
    e.update(extra)
    return e


def timed(argv: list[str], cwd: str | None = None, check: bool = True, environ: dict | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=environ or env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout.decode()}{p.stderr.decode()}")
    return dt


def median_of(argv: list[str], n: int, cwd: str | None = None, warmup: int = 2) -> tuple[float, float, float]:
    """(median, min, max) wall seconds over n runs, runs of argv interleaved by the caller if needed."""
    for _ in range(warmup):
        timed(argv, cwd)
    xs = [timed(argv, cwd) for _ in range(n)]
    return statistics.median(xs), min(xs), max(xs)


def interleaved(commands: dict[str, list[str]], n: int, cwd: str | None = None, warmup: int = 2) -> dict[str, list[float]]:
    """Each command n times, round-robin, so drift in machine load hits all of them alike."""
    for _ in range(warmup):
        for argv in commands.values():
            timed(argv, cwd)
    out: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(n):
        for k, argv in commands.items():
            out[k].append(timed(argv, cwd))
    return out


def peak_rss_kb(argv: list[str], cwd: str | None = None) -> int:
    """Peak resident set size of one run, in KiB (GNU time's %M)."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], cwd=cwd, env=env(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    return int(p.stderr.strip().splitlines()[-1])


def write_toml(root: Path, extra: str = "") -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipectl.toml").write_text(
        '[pipectl]\npipelines = ["pipelines/*.yaml"]\nstate_dir = ".pipectl"\ntimezone = "UTC"\n' + extra)
    (root / "pipelines").mkdir(exist_ok=True)


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"
