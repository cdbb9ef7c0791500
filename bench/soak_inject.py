"""Soak: hostile template values and secrets through the real CLI.

Injection: every payload goes in as ``trigger inj --param x=PAYLOAD --wait`` to a
pipeline whose tasks, hooks, command sensor and foreach command each use
``{{ params.x }}`` in a different shell context. Each context writes what it
received to a file; the value must arrive byte-exact, and no payload may create
its marker file (every payload tries to ``touch`` one).

Secrets: a project whose env holds secrets from ``${VAR}`` and an ``env_file``,
tasks and hooks that print them, a command sensor whose command holds one, a run
triggered with a secret as a param. Every reading command (plain and --json),
error lines that echo their input, and hook logs must not show any secret, and
the state directory's files must not hold any.

    .venv/bin/python bench/soak_inject.py            # full size
    .venv/bin/python bench/soak_inject.py --quick    # a few payloads

Prints ONE verdict line; exits 1 when anything leaked.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

MARK = "@M@"  # replaced by the payload's marker file path

# Every family of shell metacharacter, quoting trick, expansion, and some plain oddities.
PAYLOADS = [
    "$(touch @M@)", "`touch @M@`", "; touch @M@", "| touch @M@", "&& touch @M@", "|| touch @M@",
    "& touch @M@", "\ntouch @M@", "x\ntouch @M@\n", "'; touch @M@; '", '"; touch @M@; "', "'\"$(touch @M@)\"'",
    "\"'`touch @M@`'\"", "$(touch${IFS}@M@)", "${IFS}touch${IFS}@M@", "$((1+1))", "$((x[$(touch @M@)]))",
    "a[$(touch @M@)]", "> @M@", ">> @M@", "2>@M@", "< /etc/hostname", "<(touch @M@)", "*", "?", "[a-z]*", "~",
    "~root", "{a,b}", "\\", "\\\\", "\\$(touch @M@)", "\\`touch @M@\\`", "#", "x # $(touch @M@)", " lead",
    "trail ", "tab\there", "cr\r\nlf", "EOF\ntouch @M@\nEOF", "EOF", "!", "!!", "%s%n%d", "-n", "--", "=",
    "a=b", "$HOME", "${HOME}", "$PIPECTL_DS", "$0 $@ $* $$ $? $!", '"', "'", "''", '""', "}", "{", ")", "(",
    "${x:-$(touch @M@)}", "unicode é ☃ 漢字 🎉", "\u202ertl\u202c", "\x01\x07\x1b[31mred\x1b[0m",
    "\n\n\n", "", "$(touch @M@)\n", "%", "$'\\x41'", "$\"x\"", "'$(touch @M@)'", "\"`touch @M@`\"",
    "x; sh -c 'touch @M@'", "$(printf '\\164ouch @M@' | sh)", "A" * 10000 + "$(touch @M@)",
]

# context -> what the task writes for payload P (the suffix/prefix its command adds)
CONTEXTS = {
    "bare": ("", ""), "dquote": ("", ""), "squote": ("a", "b"), "subst_dq": ("", "."), "subst_bare": ("", "."),
    "backticks": ("", "."), "heredoc": ("", "\n"), "default_dq": ("", ""), "default_bare": ("", ""),
    "hook_success": ("", ""), "hook_failure": ("", ""), "hook_retry": ("", "\n"), "sensor": ("", "."),
    "foreach": ("", ""), "list": ("", ""),
}

INJECT_SPEC = r"""
name: inj
params: {x: ""}
max_active_runs: 500
defaults: {retries: 0}
tasks:
  bare:
    run: |
      printf %s {{ params.x }} > "out/$PIPECTL_DS.bare"
  dquote:
    run: |
      printf %s "{{ params.x }}" > "out/$PIPECTL_DS.dquote"
  squote:
    run: |
      printf %s 'a{{ params.x }}b' > "out/$PIPECTL_DS.squote"
  subst_dq:
    run: |
      printf %s "$(printf '%s.' "{{ params.x }}")" > "out/$PIPECTL_DS.subst_dq"
  subst_bare:
    run: |
      printf %s "$(printf '%s.' {{ params.x }})" > "out/$PIPECTL_DS.subst_bare"
  backticks:
    run: |
      printf %s "`printf '%s.' {{ params.x }}`" > "out/$PIPECTL_DS.backticks"
  heredoc:
    run: |
      cat > "out/$PIPECTL_DS.heredoc" <<EOF
      {{ params.x }}
      EOF
  default_dq:
    run: |
      printf %s "${PIPECTL_UNSET_V:-{{ params.x }}}" > "out/$PIPECTL_DS.default_dq"
  default_bare:
    run: |
      printf %s ${PIPECTL_UNSET_V:-{{ params.x }}} > "out/$PIPECTL_DS.default_bare"
  hooked:
    run: "true"
    on_success: |
      printf %s "{{ params.x }}" > "out/$PIPECTL_DS.hook_success"
  failing:
    run: exit 3
    on_failure: printf %s {{ params.x }} > "out/$PIPECTL_DS.hook_failure"
  retried:
    run: '[ "$PIPECTL_TRY_NUMBER" -ge 2 ]'
    retries: 1
    retry_delay: 0s
    on_retry: |
      cat > "out/$PIPECTL_DS.hook_retry" <<EOF
      {{ params.x }}
      EOF
  sensed:
    sensor:
      command: |
        printf %s "$(printf '%s.' "{{ params.x }}")" > "out/$PIPECTL_DS.sensor"
    poke_interval: 1s
    timeout: 5m
  fanned:
    foreach:
      command: |
        printf %s {{ params.x }} > "out/$PIPECTL_DS.foreach"; echo one
    run: "true"
  listed:
    run: [sh, -c, 'printf %s "$1" > "out/$PIPECTL_DS.list"', sh, "{{ params.x }}"]
"""

TOML = '[pipectl]\npipelines = ["pipelines/*.yaml"]\nstate_dir = ".pipectl"\ntimezone = "UTC"\nmax_parallel = 16\n'


def _env(extra: dict | None = None) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PIPECTL_") and k not in ("NO_COLOR", "COLUMNS")}
    e.update(extra or {})
    return e


def cli(root: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipectl", "--project", str(root), *args], capture_output=True,
                          text=True, env=_env(env), timeout=timeout, cwd=str(root))


def project(root: Path, specs: dict[str, str], files: dict[str, str] | None = None) -> Path:
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    (root / "pipectl.toml").write_text(TOML)
    for name, text in specs.items():
        (root / "pipelines" / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    return root


# -- injection ---------------------------------------------------------------
def inject(root: Path, payloads: list[str]) -> dict:
    """Run every payload through every context; returns counts and the first few problems."""
    project(root, {"inj": INJECT_SPEC})
    (root / "out").mkdir()
    problems: list[str] = []
    r = cli(root, "validate")
    if r.returncode != 0:
        return {"payloads": len(payloads), "contexts": len(CONTEXTS), "injections": 0, "wrong": 0,
                "problems": [f"validate failed: {r.stdout}{r.stderr}"], "failed": True}
    day0 = date(2020, 1, 1)
    cases = []
    for i, template in enumerate(payloads):
        marker = root / f"pwned{i}"
        payload = template.replace(MARK, str(marker))
        ds = (day0 + timedelta(days=i)).isoformat()
        cases.append((i, payload, ds, marker))
        r = cli(root, "trigger", "inj", "--date", ds, "--param", f"x={payload}", "--wait")
        if r.returncode not in (0, 1) or "Traceback" in r.stderr:
            problems.append(f"payload {i}: trigger exited {r.returncode}: {r.stderr.strip()[-300:]}")
    # hooks are detached: give the last ones a moment to write
    deadline = time.time() + 20
    wrong = 0
    while True:
        missing = [(i, ctx) for i, _, ds, _ in cases for ctx in CONTEXTS if not (root / "out" / f"{ds}.{ctx}").exists()]
        if not missing or time.time() > deadline:
            break
        time.sleep(0.2)
    for i, payload, ds, marker in cases:
        for ctx, (pre, post) in CONTEXTS.items():
            path = root / "out" / f"{ds}.{ctx}"
            want = (pre + payload + post).encode()
            try:
                got = path.read_bytes()
            except OSError:
                wrong += 1
                problems.append(f"payload {i} {ctx}: no output")
                continue
            if got != want:
                wrong += 1
                problems.append(f"payload {i} {ctx}: got {got[:80]!r}, want {want[:80]!r}")
    injections = sorted(p.name for p in root.glob("pwned*"))
    for name in injections:
        problems.append(f"marker created: {name} (payload {payloads[int(name[5:])]!r})")
    return {"payloads": len(payloads), "contexts": len(CONTEXTS), "injections": len(injections), "wrong": wrong,
            "problems": problems, "failed": bool(problems)}


# -- secrets -----------------------------------------------------------------
SECRETS = {
    "SOAK_TOKEN": "tok-9f8e7d6c5b4a",  # from ${SOAK_TOKEN}
    "SOAK_QUOTED": 'p@ss"w\\rd-é-Zq',  # JSON escapes it: the raw text is not what --json prints
}
FILE_SECRET = "filesecret-77aa55"  # from env_file

SECRET_SPEC = r"""
name: sec
params: {token: none}
env:
  TOKEN: ${SOAK_TOKEN}
  QUOTED: ${SOAK_QUOTED}
env_file: secrets.env
on_success: echo "hook sees $TOKEN $QUOTED $FILE_SECRET"
tasks:
  leak:
    run: echo "task sees $TOKEN $QUOTED $FILE_SECRET {{ params.token }}"; exit 0
  sense:
    sensor: {command: 'test -n "{{ params.token }}"'}
    poke_interval: 1s
    timeout: 1h
  after:
    run: echo done
    needs: [leak]
"""


def secrets(root: Path) -> dict:
    project(root, {"sec": SECRET_SPEC}, {"secrets.env": f"FILE_SECRET={FILE_SECRET}\n"})
    env = dict(SECRETS)
    values = [*SECRETS.values(), FILE_SECRET]
    token = SECRETS["SOAK_TOKEN"]
    problems: list[str] = []
    cli(root, "trigger", "sec", "--date", "2026-01-01", "--param", "token=plain", "--wait", env=env)
    time.sleep(0.5)  # the run's hook is detached
    # every file of the state dir (the db, its journal, tick log ...) except the tasks' own logs,
    # which hold what the tasks printed
    stored: list[str] = []
    for path in (root / ".pipectl").rglob("*"):
        if path.is_file() and "logs" not in path.relative_to(root / ".pipectl").parts:
            data = path.read_bytes()
            for v in values:
                if v.encode() in data:
                    stored.append(f"{path.name} holds secret {v[:4]}…")
    # a param equal to a secret is a secret too when printed (stored as given, so after the scan)
    cli(root, "trigger", "sec", "--date", "2026-01-02", "--param", f"token={token}", env=env)
    reads = [
        ("status",), ("status", "sec"), ("runs", "sec"), ("show", "sec", "--date", "2026-01-01"),
        ("show", "sec", "--date", "2026-01-02"), ("grid", "sec"), ("graph", "sec", "--date", "2026-01-01"),
        ("explain", "sec", "--date", "2026-01-02"), ("logs", "sec", "leak", "--date", "2026-01-01"),
        ("logs", "sec", "--hooks", "--date", "2026-01-01"), ("next", "sec"), ("assets",), ("validate",),
        ("metrics",), ("doctor",), ("logs", "--tick"),
    ]
    errors = [
        ("trigger", "sec", "--param", token), ("show", "sec", "--date", token), ("logs", "sec", token, "--date",
                                                                                  "2026-01-01"),
        ("backfill", "sec", "--start", "2026-01-01", "--end", "2026-01-01", "--tasks", "(" + token),
        ("runs", token), ("trigger", "sec", "--date", values[1]),
    ]
    outputs = 0
    for args in reads:
        for extra in ((), ("--json",)):
            if extra and args[0] in ("logs", "metrics"):
                continue
            r = cli(root, *args, *extra, env=env)
            outputs += 1
            text = r.stdout + r.stderr
            if "Traceback" in text:
                problems.append(f"{' '.join(args + extra)}: traceback")
            for v in values:
                for spelled in {v, json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1]}:
                    if spelled in text:
                        problems.append(f"{' '.join(args + extra)} printed secret {v[:4]}…")
    for args in errors:
        r = cli(root, *args, env=env)
        outputs += 1
        text = r.stdout + r.stderr
        if r.returncode == 0:
            problems.append(f"{' '.join(a[:20] for a in args)}: expected an error")
        for v in values:
            if v in text:
                problems.append(f"error line of {args[0]} printed secret {v[:4]}…")
    unmasked = sum(1 for p in problems if "printed secret" in p)
    return {"outputs": outputs, "secrets": len(values), "unmasked": unmasked, "stored": stored,
            "problems": problems + stored, "failed": bool(problems or stored)}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    payloads = PAYLOADS[:4] + PAYLOADS[-1:] if quick else PAYLOADS
    with tempfile.TemporaryDirectory(prefix="soak-inject-") as tmp:
        a = inject(Path(tmp) / "inj", payloads)
        b = secrets(Path(tmp) / "sec")
    for p in (a["problems"] + b["problems"])[:20]:
        print("  " + p, file=sys.stderr)
    db = "secret absent" if not b["stored"] else f"secret PRESENT ({len(b['stored'])})"
    print(f"soak_inject: {a['payloads']} payloads x {a['contexts']} contexts: {a['injections']} injections, "
          f"{a['wrong']} wrong values; {b['outputs']} outputs x {b['secrets']} secrets: {b['unmasked']} unmasked; "
          f"state dir: {db}")
    return 1 if a["failed"] or b["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
