"""Secrets from ${NAME} and env_file never reach what pipectl prints."""
from __future__ import annotations

import time

import pytest

from conftest import call_cli, make_project
from pipectl.model.pipeline import Pipeline, Task, frozen_map
from pipectl.spec.secrets import MASK, mask, mask_obj, read_masked, secret_values
TOKEN = "s3cr3t-Tok3n-value"
API_KEY = "k-9f8e7d6c"


def test_mask_longest_first_and_short_values_left_alone():
    assert mask("a=abcdef b=abc", ["abc", "abcdef"]) == "a=*** b=***"
    assert mask("x=ab y=1", ["ab", "1", ""]) == "x=ab y=1"  # under MIN_LENGTH: not masked
    assert mask("p=a.b*c", ["a.b*c"]) == "p=***"  # regex metacharacters are literal
    assert mask("", ["abc"]) == "" and mask("abc", []) == "abc"


def test_secret_values_from_pipeline_and_snapshot():
    p = Pipeline(
        name="p", path="p.yaml",
        tasks=frozen_map({"t": Task(name="t", run="true", env=frozen_map({"TASK_SECRET": "line-one\nline-two", "PLAIN": "visible"}))}),
        env=frozen_map({"TOKEN": TOKEN, "HOST": "db.local"}),
        secret_env=("TOKEN", "TASK_SECRET"),
    )
    vals = secret_values(p)
    assert vals == sorted(vals, key=lambda v: (-len(v), v))
    assert set(vals) == {TOKEN, "line-one\nline-two", "line-one", "line-two"}
    assert secret_values(p.to_dict()) == vals
    out = mask_obj(p, {"env": {"TOKEN": TOKEN, "HOST": "db.local"}, "log": [f"x {TOKEN} y", "line-two"], "n": 3})
    assert out == {"env": {"TOKEN": MASK, "HOST": "db.local"}, "log": [f"x {MASK} y", MASK], "n": 3}
    assert mask_obj(None, {"a": TOKEN}) == {"a": TOKEN}


SPEC = """
schedule: null
env:
  TOKEN: "${MY_TOKEN}"
  HOST: db.local
env_file: secrets.env
on_success: "echo hook saw $TOKEN and $API_KEY"
tasks:
  hello:
    run: echo "token=$TOKEN key=$API_KEY host=$HOST"
"""


def test_secret_never_printed_by_logs_show_or_hook_output(tmp_path):
    proj = make_project(tmp_path, {"sec": SPEC})
    (proj / "secrets.env").write_text(f"API_KEY={API_KEY}\n")
    env = {"MY_TOKEN": TOKEN}
    now = "2026-04-05T03:00:00Z"
    r = call_cli("--project", proj, "--now", now, "trigger", "sec", "--date", "2026-04-04", "--wait", env=env)
    assert r.returncode == 0, r.stderr
    for secret in (TOKEN, API_KEY):
        assert secret not in r.stdout + r.stderr

    logs = call_cli("--project", proj, "--now", now, "logs", "sec", "hello", "--date", "2026-04-04", env=env)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "token=*** key=*** host=db.local\n"

    show = call_cli("--project", proj, "--now", now, "show", "sec", "--date", "2026-04-04", "--json", env=env)
    assert show.returncode == 0, show.stderr
    for secret in (TOKEN, API_KEY):
        assert secret not in show.stdout

    # the task's own log holds what it printed; masking is at display time
    raw = next((proj / ".pipectl" / "logs" / "sec").glob("*/hello.1.log"))
    assert TOKEN in raw.read_text()

    hooks = raw.parent / "hooks.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "hook saw" not in (hooks.read_text() if hooks.exists() else ""):
        time.sleep(0.1)
    assert TOKEN in hooks.read_text()  # the hook really printed it...
    from pipectl.spec.config import load_config
    from pipectl.state.store import Store, loads
    store = Store(load_config(proj).state_db, create=False)
    try:
        run = store.runs_for("sec")[0]
    finally:
        store.close()
    spec = loads(run.spec)  # the run's own snapshot: it names the secrets, never holds them
    assert TOKEN not in run.spec and API_KEY not in run.spec
    with pytest.MonkeyPatch.context() as mp:  # the reader resolves ${MY_TOKEN} from its own environment
        mp.setenv("MY_TOKEN", TOKEN)
        text, offset = read_masked(str(hooks), spec)
    assert text == "hook saw *** and ***\n"  # ...and pipectl shows it masked
    assert offset == hooks.stat().st_size
    r = call_cli("--project", proj, "--now", now, "logs", "sec", "--hooks", "--date", "2026-04-04", env=env)
    assert (r.returncode, r.stdout) == (0, "hook saw *** and ***\n"), r.stderr

    tick_log = call_cli("--project", proj, "logs", "--tick", env=env)
    assert TOKEN not in tick_log.stdout and API_KEY not in tick_log.stdout
