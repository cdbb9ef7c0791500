"""The command line as users meet it: exit codes, one-line errors, output formats."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from conftest import QUICKSTART, call_cli, make_project, run_cli

from pipectl.cli import app as cli
from pipectl.cli import main as cli_main
from pipectl.model.errors import ConfigError, UsageError
ERROR_LINE = re.compile(r"^pipectl: error: \S.*$")
SPEC_LINE = re.compile(r"^(?P<file>[^:\n]+\.ya?ml):(?P<line>\d+):(?P<col>\d+): \S.*$")

GOOD = """
name: etl
schedule: "0 2 * * *"
start_date: 2026-04-01
tasks:
  extract:
    run: echo extract {{ ds }}
  load:
    run: echo load
edges:
  - extract >> load
"""

FAN_IN = """
schedule: "@hourly"
tasks:
  a: {run: echo a}
  b: {run: echo b}
  c: {run: echo c, needs: [a]}
  join: {run: echo join, needs: [b, c]}
"""

BROKEN = """
name: broken
schedule: "61 2 * * *"
tasks:
  extract:
    run: echo hi
    retrys: 3
edges:
  - extract >> nowhere
"""


def one_error_line(p: subprocess.CompletedProcess) -> str:
    """stderr must be exactly one `pipectl: error: ...` line and never a traceback."""
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert ERROR_LINE.match(lines[0]), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


# --------------------------------------------------------------------------- help and usage

def test_help_lists_every_command_with_a_description():
    p = run_cli("--help")
    assert p.returncode == 0, p.stderr
    for name in ("init", "validate", "graph", "cron"):
        assert re.search(rf"^\s+{name}\s+\S", p.stdout, re.M), f"{name} missing from:\n{p.stdout}"
    # every registered command has a one-line description in the listing
    for info in cli.app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", p.stdout, re.M), f"{name} has no description"
    for opt in ("--project", "--now", "--json", "--no-color"):
        assert opt in p.stdout


def test_no_arguments_prints_help_and_exits_2():
    p = run_cli()
    assert p.returncode == 2
    assert "validate" in p.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["validate", "--bogus"], ["nosuchcommand"], ["cron"]])
def test_usage_errors_exit_2_with_one_line(args):
    p = call_cli(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    one_error_line(p)


@pytest.mark.parametrize("now", ["yesterday", "2026-13-01T00:00:00", "2026-04-05T25:00"])
def test_bad_now_exits_2_with_one_line(now):
    p = call_cli("--now", now, "cron", "0 2 * * *")
    assert p.returncode == 2
    assert one_error_line(p).startswith("pipectl: error: bad --now value")
    assert p.stdout == ""


def test_bad_now_from_environment_exits_2():
    p = call_cli("cron", "0 2 * * *", env={"PIPECTL_NOW": "soon"})
    assert p.returncode == 2
    assert "bad --now value 'soon'" in one_error_line(p)


def test_missing_project_is_one_line_exit_2(tmp_path):
    p = call_cli("validate", cwd=tmp_path)
    assert p.returncode == 2
    assert "pipectl.toml" in one_error_line(p)


# --------------------------------------------------------------------------- main(): error funnel

def _main(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main.main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_internal_error_is_one_line_without_debug(monkeypatch, capsys, tmp_path):
    make_project(tmp_path, {"etl": GOOD})
    monkeypatch.delenv("PIPECTL_DEBUG", raising=False)
    monkeypatch.setattr(cli.Ctx, "load", lambda self: {}["boom"])
    code, out, err = _main(["--project", str(tmp_path), "validate"], capsys)
    assert code == 1
    assert err.splitlines() == ["pipectl: error: internal error: KeyError: 'boom' (set PIPECTL_DEBUG=1 for a traceback)"]


def test_internal_error_shows_traceback_with_debug(monkeypatch, capsys, tmp_path):
    make_project(tmp_path, {"etl": GOOD})
    monkeypatch.setenv("PIPECTL_DEBUG", "1")
    monkeypatch.setattr(cli.Ctx, "load", lambda self: {}["boom"])
    code, out, err = _main(["--project", str(tmp_path), "validate"], capsys)
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert "KeyError: 'boom'" in err


@pytest.mark.parametrize("exc, code", [(UsageError("bad thing\nsecond line"), 2), (ConfigError("cfg"), 2),
                                       (cli.PipectlError("work failed"), 1)])
def test_pipectl_errors_become_one_line_with_their_exit_code(monkeypatch, capsys, tmp_path, exc, code):
    make_project(tmp_path, {"etl": GOOD})

    def raise_it(self):
        raise exc

    monkeypatch.setattr(cli.Ctx, "load", raise_it)
    got, out, err = _main(["--project", str(tmp_path), "validate"], capsys)
    assert got == code
    assert len(err.splitlines()) == 1 and err.startswith("pipectl: error: ")


# --------------------------------------------------------------------------- validate

def test_validate_broken_project_reports_positions_and_exits_1(tmp_path):
    make_project(tmp_path, {"broken": BROKEN, "etl": GOOD})
    p = call_cli("validate", cwd=tmp_path)
    assert p.returncode == 1, (p.stdout, p.stderr)
    spec_lines = [ln for ln in p.stderr.splitlines() if SPEC_LINE.match(ln)]
    # the bad cron, the unknown key and the unknown edge target: all reported, not just the first
    assert len(spec_lines) >= 3, p.stderr
    assert all("broken.yaml" in ln for ln in spec_lines)
    assert any("minute" in ln for ln in spec_lines), p.stderr
    assert any("retrys" in ln for ln in spec_lines), p.stderr
    assert any("nowhere" in ln for ln in spec_lines), p.stderr
    assert "Traceback" not in p.stderr
    # the valid pipeline is still listed
    assert re.search(r"^ok\s+etl\s+2 tasks\s+", p.stdout, re.M), p.stdout


def test_validate_fixed_project_exits_0_with_one_line_per_pipeline(tmp_path):
    make_project(tmp_path, {"etl": GOOD, "fan_in": FAN_IN})
    p = call_cli("validate", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2
    assert re.match(r"^ok  etl     2 tasks  .*02:00", lines[0]), lines
    assert re.match(r"^ok  fan_in  4 tasks  ", lines[1]), lines
    assert p.stderr == ""


def test_validate_json(tmp_path):
    make_project(tmp_path, {"etl": GOOD, "broken": BROKEN})
    p = call_cli("validate", "--json", cwd=tmp_path)
    assert p.returncode == 1
    data = json.loads(p.stdout)
    assert data["ok"] is False
    assert [r["name"] for r in data["pipelines"]] == ["etl"]
    assert data["pipelines"][0]["tasks"] == 2
    assert data["errors"] and all(isinstance(e["line"], int) for e in data["errors"])


# --------------------------------------------------------------------------- cron

def test_cron_json_exact_fire_times():
    p = call_cli("cron", "0 2 * * *", "--now", "2026-04-05T03:00:00Z", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [
        "2026-04-06T02:00:00+00:00",
        "2026-04-07T02:00:00+00:00",
        "2026-04-08T02:00:00+00:00",
        "2026-04-09T02:00:00+00:00",
        "2026-04-10T02:00:00+00:00",
    ]


def test_cron_global_options_before_the_command_and_count():
    p = call_cli("--now", "2026-04-05T03:00:00Z", "--json", "cron", "*/15 * * * *", "--count", "3")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == ["2026-04-05T03:15:00+00:00", "2026-04-05T03:30:00+00:00",
                                    "2026-04-05T03:45:00+00:00"]


def test_cron_in_a_timezone_prints_local_offsets():
    p = call_cli("cron", "0 2 * * *", "--tz", "America/Los_Angeles", "--count", "2", "--json",
                env={"PIPECTL_NOW": "2026-04-05T03:00:00Z"})
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == ["2026-04-05T02:00:00-07:00", "2026-04-06T02:00:00-07:00"]


def test_cron_text_output():
    p = call_cli("--now", "2026-04-05T03:00:00Z", "cron", "0 2 * * *", "-n", "2")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("0 2 * * *: ") and "02:00" in lines[0]
    assert "2026-04-06T02:00:00+00:00" in p.stdout and "2026-04-07T02:00:00+00:00" in p.stdout


@pytest.mark.parametrize("args, needle", [(["61 * * * *"], "minute"), (["0 2 * *"], ""),
                                          (["0 2 * * *", "--tz", "Mars/Olympus"], "Mars/Olympus")])
def test_cron_bad_input_exits_2(args, needle):
    p = call_cli("cron", *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert needle in one_error_line(p)


# --------------------------------------------------------------------------- init

def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_then_validate(tmp_path):
    target = tmp_path / "proj"
    p = call_cli("init", target, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (target / "pipectl.toml").is_file()
    assert list((target).rglob("*.yaml")), "init wrote no example pipeline"
    v = call_cli("validate", cwd=target)
    assert v.returncode == 0, v.stderr
    assert v.stdout.startswith("ok  ")


def test_init_twice_exits_2_and_changes_nothing(tmp_path):
    assert call_cli("init", cwd=tmp_path).returncode == 0
    before = _snapshot(tmp_path)
    p = call_cli("init", cwd=tmp_path)
    assert p.returncode == 2
    assert "already exists" in one_error_line(p)
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- graph

def test_graph_of_the_quickstart_chain():
    p = call_cli("--project", QUICKSTART, "graph", "daily_orders_by_region", "--no-color")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.index("extract_orders") < out.index("clean_orders") < out.index("aggregate_orders")
    assert re.search(r"clean_orders\s+(←|<-) extract_orders", out), out
    assert re.search(r"aggregate_orders\s+(←|<-) clean_orders", out), out
    assert "layer 3" in out and "\x1b[" not in out


def test_graph_of_a_fan_in(tmp_path):
    make_project(tmp_path, {"fan_in": FAN_IN})
    p = call_cli("graph", "fan_in", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert re.search(r"join\s+(←|<-) b, c", p.stdout), p.stdout
    j = call_cli("graph", "fan_in", "--json", cwd=tmp_path)
    assert json.loads(j.stdout)["layers"] == [["a", "b"], ["c"], ["join"]]


def test_unknown_pipeline_is_a_usage_error(tmp_path):
    make_project(tmp_path, {"etl": GOOD, "fan_in": FAN_IN})
    p = call_cli("graph", "nope", cwd=tmp_path)
    assert p.returncode == 2
    assert one_error_line(p) == "pipectl: error: unknown pipeline 'nope' (known: etl, fan_in)"


# --------------------------------------------------------------------------- helpers

def test_hoist_global_options():
    h = cli_main.hoist_global_options
    assert h(["runs", "p", "--json"]) == ["--json", "runs", "p"]
    assert h(["tick", "--now", "2026-04-05", "--wait"]) == ["--now", "2026-04-05", "tick", "--wait"]
    assert h(["tick", "--project=x"]) == ["--project=x", "tick"]
    assert h(["trigger", "p", "--", "--json"]) == ["trigger", "p", "--", "--json"]


def test_parse_now():
    assert cli.parse_now("2026-04-05T03:00:00Z") == datetime(2026, 4, 5, 3, tzinfo=timezone.utc)
    assert cli.parse_now("2026-04-05T03:00:00") == datetime(2026, 4, 5, 3, tzinfo=timezone.utc)
    assert cli.parse_now("2026-04-05T05:00:00+02:00") == datetime(2026, 4, 5, 3, tzinfo=timezone.utc)
    assert cli.parse_now("2026-04-05T03:00:00Z").tzinfo is timezone.utc
    with pytest.raises(UsageError):
        cli.parse_now("nope")


def test_parse_date_arg():
    assert cli.parse_date_arg("2026-04-05") == date(2026, 4, 5)
    assert not isinstance(cli.parse_date_arg("2026-04-05"), datetime)
    assert cli.parse_date_arg("2026-04-05T02:00:00", tz="America/Los_Angeles") == \
        datetime(2026, 4, 5, 9, tzinfo=timezone.utc)
    assert cli.parse_date_arg("2026-04-05T02:00:00+00:00") == datetime(2026, 4, 5, 2, tzinfo=timezone.utc)
    for bad in ("2026-02-30", "April 5", "", "2026-04-05T99"):
        with pytest.raises(UsageError):
            cli.parse_date_arg(bad)
    with pytest.raises(UsageError, match="before"):
        cli.parse_date_range("2026-04-05", "2026-04-01")
    assert cli.parse_params(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError):
        cli.parse_params(["novalue"])


def test_cli_import_stays_lean():
    code = ("import sys, pipectl.cli.main; heavy = {'rich', 'yaml', 'croniter', 'sqlite3', 'filelock', 'pydantic'};"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_help_does_not_import_rich():
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipectl", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in {"rich", "yaml", "croniter", "sqlite3"}}


# --------------------------------------------------------------------------- quickstart

def test_quickstart_validates():
    p = run_cli("--project", QUICKSTART, "validate")
    assert p.returncode == 0, p.stderr
    assert re.match(r"^ok  daily_orders_by_region  3 tasks  at 02:00", p.stdout), p.stdout
    assert "America/Los_Angeles" in p.stdout


def test_quickstart_scripts_are_deterministic_and_idempotent(quickstart):
    def day(ds: str) -> None:
        for script in ("extract", "clean", "aggregate"):
            r = subprocess.run(["python3", f"scripts/{script}.py", "--date", ds], cwd=quickstart,
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr

    def rows():
        with sqlite3.connect(quickstart / "warehouse.db") as conn:
            return conn.execute("SELECT ds, region, orders, revenue_cents FROM orders_by_region "
                                "ORDER BY ds, region").fetchall()

    day("2026-04-03")
    raw = (quickstart / "data/raw/2026-04-03.csv").read_bytes()
    first = rows()
    assert len(first) == 4 and {r[0] for r in first} == {"2026-04-03"}
    day("2026-04-03")  # a re-run replaces the day, never duplicates it
    assert rows() == first
    assert (quickstart / "data/raw/2026-04-03.csv").read_bytes() == raw
    day("2026-04-02")
    assert len(rows()) == 8
    # the cleaner drops the deliberately bad rows
    n_raw = len((quickstart / "data/raw/2026-04-03.csv").read_text().splitlines())
    n_clean = len((quickstart / "data/clean/2026-04-03.csv").read_text().splitlines())
    assert n_clean < n_raw


def test_quickstart_clean_without_raw_fails_and_uses_pipectl_ds(quickstart):
    r = subprocess.run(["python3", "scripts/clean.py"], cwd=quickstart, capture_output=True, text=True,
                       env={"PIPECTL_DS": "2026-04-01", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1
    assert "data/raw/2026-04-01.csv is missing" in r.stderr


@pytest.mark.parametrize("args", [["cron", "0 2 * * *", "--json", "-n", "2"],
                                  ["--project", str(QUICKSTART), "validate"]])
def test_commands_do_not_import_pydantic(args):
    # typer coerces parameters with pydantic (~65 ms to import); cli_main.install_fast_coercion avoids it
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipectl", *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in {"pydantic", "rich"}}


@pytest.mark.parametrize("count, message", [("0", "0 is not in the range 1<=x<=10000"), ("x", "'x' is not a valid integer")])
def test_integer_options_are_checked(count, message):
    p = call_cli("cron", "0 2 * * *", "--count", count)
    assert p.returncode == 2
    assert message in one_error_line(p)
