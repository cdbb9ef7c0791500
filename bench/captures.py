"""Plain-text terminal captures of the on-call surface, for notes and reviews.

Builds a project in a temporary directory with one run failed, one task running
and one waiting on its retry, then shows `status`, `show`, `explain` and the live
view (`status --watch`) in real tmux panes 100 and 60 columns wide and saves what
the panes show (`tmux capture-pane -p`: the text, no colours).

    .venv/bin/python bench/captures.py --out /work/notes/captures.txt

Rerun it after the code changes: it uses this checkout's pipectl. Needs tmux.
Prints one verdict line (on stderr when --out is not given).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent

SPECS = {
    "nightly": """
        schedule: "0 2 * * *"
        start_date: 2026-04-09
        tasks:
          extract: {run: "echo extracted"}
          load_dims: {run: "echo loading dims; exit 3", needs: [extract]}
          report: {run: "echo report", needs: [load_dims]}
    """,
    "flaky": """
        tasks:
          call_api: {run: "echo boom; exit 4", retries: 2, retry_delay: 1h}
          store: {run: "echo stored", needs: [call_api]}
    """,
    "ingest": """
        sla: 2h
        tasks:
          fetch: {run: "sleep 600", sla: 1h}
          publish: {run: "echo published", needs: [fetch]}
    """,
}
VIEW_AT = "2026-04-10T08:03:30Z"
WIDTHS = (100, 60)


def pipectl(root: Path, *args: str, now: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPECTL_") and k not in ("COLUMNS", "LINES")}
    return subprocess.run([PYTHON, "-m", "pipectl", "--project", str(root), "--now", now, *args],
                          capture_output=True, text=True, env=env, timeout=120)


def query(root: Path, sql: str) -> list:
    conn = sqlite3.connect(str(root / ".pipectl" / "state.db"), timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def wait_until(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def build_project(base: Path) -> Path:
    """nightly: scheduled run failed; flaky: call_api up_for_retry; ingest: fetch running."""
    root = base / "proj"
    (root / "pipelines").mkdir(parents=True)
    (root / "pipectl.toml").write_text('[pipectl]\npipelines = ["pipelines/*.yaml"]\nstate_dir = ".pipectl"\n'
                                       'timezone = "UTC"\n')
    for name, text in SPECS.items():
        (root / "pipelines" / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
    steps = [(("tick", "--wait"), "2026-04-10T02:05:00Z", 1),
             (("trigger", "flaky", "--date", "2026-04-09"), "2026-04-10T08:01:00Z", 0)]
    for args, now, want in steps:
        r = pipectl(root, *args, now=now)
        if r.returncode != want:
            raise SystemExit(f"captures: `pipectl {' '.join(args)}` exited {r.returncode}: {r.stderr.strip()}")
    if not wait_until(lambda: query(root, "SELECT state FROM task_instances WHERE task = 'call_api'")[0][0] == "up_for_retry"):
        raise SystemExit("captures: call_api never reached up_for_retry")
    r = pipectl(root, "trigger", "ingest", "--date", "2026-04-09", now="2026-04-10T08:02:00Z")
    if r.returncode != 0:
        raise SystemExit(f"captures: trigger ingest exited {r.returncode}: {r.stderr.strip()}")
    if not wait_until(lambda: query(root, "SELECT 1 FROM tries WHERE state = 'running'")):
        raise SystemExit("captures: ingest's fetch never started")
    pipectl(root, "tick", now="2026-04-10T08:03:00Z")
    return root


class Tmux:
    def __init__(self, sock: Path):
        self.base = ["tmux", "-u", "-S", str(sock)]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], check=True, capture_output=True, text=True, timeout=30).stdout

    def run(self, name: str, root: Path, args: list[str], width: int, height: int) -> None:
        cmd = (f"cd {shlex.quote(str(root))} && env -u COLUMNS -u LINES LC_ALL=C.UTF-8 PIPECTL_NOW={VIEW_AT} "
               f"{shlex.quote(PYTHON)} -m pipectl {' '.join(map(shlex.quote, args))}; "
               f"echo \"[exit $?]\"; exec sleep 600")
        self("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), cmd)

    def text(self, name: str, history: bool = False) -> str:
        return self("capture-pane", "-p", "-t", name, *(["-S", "-"] if history else []))

    def wait_for(self, name: str, needle: str, timeout: float = 30.0) -> str:
        end = time.monotonic() + timeout
        text = self.text(name, history=True)
        while needle not in text and time.monotonic() < end:
            time.sleep(0.1)
            text = self.text(name, history=True)
        return text


def trim(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the captures here (default: stdout)")
    opts = ap.parse_args()
    if shutil.which("tmux") is None:
        print("captures: FAILED: tmux is not installed (apt-get install tmux)", file=sys.stderr)
        return 1
    static = [["status"], ["show", "nightly"], ["show", "flaky"], ["show", "ingest"],
              ["explain", "nightly"], ["explain", "flaky"], ["explain", "ingest"]]
    out: list[str] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pipectl-captures-") as tmp:
        base = Path(tmp)
        tmux = Tmux(base / "tmux.sock")
        root = build_project(base)
        try:
            for width in WIDTHS:
                for i, args in enumerate(static):
                    name = f"w{width}s{i}"
                    tmux.run(name, root, args, width, 60)
                    text = tmux.wait_for(name, "[exit ")
                    if "[exit 0]" not in text or "Traceback" in text:
                        problems.append(f"`{' '.join(args)}` at {width} columns")
                    out.append(f"==== pipectl {' '.join(args)}   ({width} columns)\n$ pipectl {' '.join(args)}\n"
                               + trim(text))
                name = f"w{width}live"
                tmux.run(name, root, ["status", "--watch"], width, 30)
                tmux.wait_for(name, "Last failures")
                time.sleep(2.5)  # a few redraws in
                frame = tmux.text(name)
                tmux("send-keys", "-t", name, "C-c")
                after = tmux.wait_for(name, "[exit ")
                if "[exit 0]" not in after or "Traceback" in after:
                    problems.append(f"live view at {width} columns: {after.strip().splitlines()[-1:]}")
                out.append(f"==== pipectl status --watch   ({width} columns x 30 rows; a frame, then Ctrl-C)\n"
                           f"$ pipectl status --watch\n" + trim(frame) + "\n^C\n" + trim(after).splitlines()[-1])
        finally:
            subprocess.run([*tmux.base, "kill-server"], capture_output=True, timeout=30)
            for (pid,) in query(root, "SELECT pid FROM tries WHERE state IN ('starting', 'running') AND pid IS NOT NULL"):
                try:
                    os.killpg(pid, signal.SIGKILL)  # the wrapper leads its own session and group
                except OSError:
                    pass
    header = (f"# tmux captures (capture-pane -p), clock at {VIEW_AT} via PIPECTL_NOW; regenerate with "
              f"`.venv/bin/python bench/captures.py --out FILE`\n"
              "# project: nightly's scheduled run failed (load_dims exit 3), flaky's call_api waits on its retry,\n"
              "# ingest's fetch is running (sla 1h on the task, 2h on the run)\n")
    body = header + "\n\n".join(out) + "\n"
    verdict = (f"captures: {'OK' if not problems else 'PROBLEMS'}: {len(out)} captures at {'/'.join(map(str, WIDTHS))} "
               f"columns" + (f"; failed: {', '.join(problems)}" if problems else ""))
    if opts.out:
        Path(opts.out).write_text(body)
        print(verdict + f" -> {opts.out}")
    else:
        sys.stdout.write(body)
        print(verdict, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
