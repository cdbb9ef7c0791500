"""pipectl import crontab: real-world crontabs become pipelines that fire when their lines did.

The fixtures in tests/fixtures/crontabs are a user's ops crontab (chains, variables, MAILTO,
nicknames, %), every schedule syntax Debian's cron accepts, and a system crontab with a user
column. Fire times are checked against cronsim, an oracle independent of pipectl's evaluator,
through `pipectl next` itself.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import REPO, make_project, run_cli
from harness import call_cli, fake_crontab
from cronsim import CronSim

from pipectl.ops.import_crontab import parse_crontab, split_percent

FIXTURES = REPO / "tests" / "fixtures" / "crontabs"
NOW = "2026-03-01T05:00:00Z"  # a week before the US DST change, four before the European one
COUNT = 40
# cron's own nicknames, spelled out here rather than borrowed from pipectl
NICK = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _import(tmp_path, fixture, *args, out="proj", **kw):
    target = tmp_path / out
    r = call_cli("import", "crontab", str(FIXTURES / fixture), "--out", target, "--timezone", "UTC", *args, **kw)
    return r, target


def _oracle(line: str, tz: str, system: bool = False) -> list[datetime]:
    """The next COUNT fire times of a raw crontab line, by cronsim."""
    words = line.split()
    expr = NICK[words[0].lower()] if words[0].startswith("@") else " ".join(words[:5])
    start = datetime.fromisoformat(NOW.replace("Z", "+00:00")).astimezone(ZoneInfo(tz))
    sim = CronSim(expr, start)
    return [next(sim).astimezone(timezone.utc) for _ in range(COUNT)]


def _next(project: Path, name: str) -> list[datetime]:
    r = call_cli("--project", project, "--now", NOW, "next", name, "--count", COUNT, "--json")
    assert r.returncode == 0, r.stderr
    return [datetime.fromisoformat(i["fire_time"]) for i in json.loads(r.stdout)]


def _zones(text: str, default: str) -> dict[int, str]:
    """Line number -> the CRON_TZ in force there."""
    tz, out = default, {}
    for no, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("CRON_TZ="):
            tz = line.split("=", 1)[1].strip()
        out[no] = tz
    return out


# --------------------------------------------------------------------------- the realistic crontab

CHAIN_YAML = """\
# Imported from {src} by `pipectl import crontab`.
# A chain: these jobs ran at staggered times on the same days. Here each starts once
# the ones before it have succeeded, from the first one's time on:
#   line 9: 0 1 * * * /opt/etl/extract.sh --source orders >> /var/log/etl/extract.log 2>&1
#   line 10: 0 2 * * * /opt/etl/clean.sh >> /var/log/etl/clean.log 2>&1
#   line 11: 0 3 * * * cd /opt/etl && ./join.py --out /data/joined
# MAILTO=ops@example.com: cron mailed the job's output there. pipectl keeps it in each try's
# log (`pipectl logs`); it sends no mail (notifications are not built yet).
name: extract_to_join
schedule: 0 1 * * *
timezone: America/New_York
catchup: false
env:
  PATH: /usr/local/bin:/usr/bin:/bin
  SHELL: /bin/bash
  MAILTO: ops@example.com
  WAREHOUSE: postgres://etl@db/warehouse
defaults:
  cwd: {home}  # cron starts jobs in $HOME
tasks:
  extract:
    # line 9: 0 1 * * * /opt/etl/extract.sh --source orders >> /var/log/etl/extract.log 2>&1
    run: ["/bin/bash", "-c", "/opt/etl/extract.sh --source orders >> /var/log/etl/extract.log 2>&1"]
  clean:
    # line 10: 0 2 * * * /opt/etl/clean.sh >> /var/log/etl/clean.log 2>&1
    run: ["/bin/bash", "-c", "/opt/etl/clean.sh >> /var/log/etl/clean.log 2>&1"]
  join:
    # line 11: 0 3 * * * cd /opt/etl && ./join.py --out /data/joined
    run: ["/bin/bash", "-c", "cd /opt/etl && ./join.py --out /data/joined"]
edges:
  - extract >> clean >> join
"""

MAIL_YAML = """\
# Imported from {src} by `pipectl import crontab`.
# line 22: 0 8 * * mon-fri mail -s "Standup at 9:30" team@example.com%Agenda:%- ETL status%- on-call handover
name: mail
schedule: 0 8 * * mon-fri
timezone: America/New_York
catchup: false
env:
  PATH: /usr/local/bin:/usr/bin:/bin
  SHELL: /bin/bash
  MAILTO: ""
  WAREHOUSE: postgres://etl@db/warehouse
defaults:
  cwd: {home}  # cron starts jobs in $HOME
tasks:
  mail:
    run: ["/bin/bash", "-c", "printf '%s\\\\n' Agenda: '- ETL status' '- on-call handover' | {{ mail -s \\"Standup at 9:30\\" team@example.com\\n}}"]
"""


def test_realistic_crontab_becomes_valid_pipelines_with_chains(tmp_path):
    r, proj = _import(tmp_path, "realistic.crontab")
    assert r.returncode == 0, r.stderr
    src = FIXTURES / "realistic.crontab"
    home = os.path.expanduser("~")
    names = sorted(p.stem for p in (proj / "pipelines").glob("*.yaml"))
    assert names == ["date", "extract_to_join", "first_monday", "healthcheck", "leap_day", "logrotate", "mail",
                     "quarterly", "rsync", "vacuum", "weekday_prep_to_weekday_report"]
    assert (proj / "pipelines" / "extract_to_join.yaml").read_text() == CHAIN_YAML.format(src=src, home=home)
    assert (proj / "pipelines" / "mail.yaml").read_text() == MAIL_YAML.format(src=src, home=home)
    weekday = yaml.safe_load((proj / "pipelines" / "weekday_prep_to_weekday_report.yaml").read_text())
    assert weekday["schedule"] == "30 2 * * 1-5" and weekday["edges"] == ["weekday_prep >> weekday_report"]
    # \% in a command is a literal %
    date = yaml.safe_load((proj / "pipelines" / "date.yaml").read_text())
    assert date["tasks"]["date"]["run"] == ["/bin/bash", "-c", "date +%Y-%m-%d >> /var/log/every_other_hour.log"]
    # @reboot: refused, said so, nothing written for it
    assert r.stderr.splitlines() == [
        f"pipectl: not imported: {src}:25: @reboot /opt/tools/warm_cache.sh: @reboot runs once at boot; "
        "pipectl has no boot trigger, so it stays with cron (or a systemd unit)"]
    assert "warm_cache" not in "".join(p.read_text() for p in (proj / "pipelines").glob("*.yaml"))
    v = call_cli("--project", proj, "--now", "2026-04-01T00:00:00Z", "validate")
    assert v.returncode == 0, v.stderr
    assert len(v.stdout.splitlines()) == 11


def test_next_gives_the_original_lines_fire_times(tmp_path):
    """Every pipeline fires when its line (a chain: its first line) did, across a DST change."""
    r, proj = _import(tmp_path, "realistic.crontab", "--json")
    assert r.returncode == 0, r.stderr
    text = (FIXTURES / "realistic.crontab").read_text()
    raw = text.splitlines()
    zones = _zones(text, "UTC")
    out = json.loads(r.stdout)
    assert len(out["pipelines"]) == 11
    for p in out["pipelines"]:
        first = p["lines"][0]
        assert _next(proj, p["name"]) == _oracle(raw[first - 1], zones[first]), p["name"]


def test_every_syntax_keeps_its_fire_times(tmp_path):
    r, proj = _import(tmp_path, "syntax.crontab", "--no-chains", "--json")
    assert r.returncode == 0, r.stderr
    text = (FIXTURES / "syntax.crontab").read_text()
    raw = text.splitlines()
    zones = _zones(text, "UTC")
    out = json.loads(r.stdout)
    jobs = [no for no, line in enumerate(raw, 1)
            if line.strip() and not line.strip().startswith("#") and not re.match(r"\s*[A-Za-z_]\w*\s*=", line)]
    reboot = [no for no in jobs if raw[no - 1].startswith("@reboot")]
    assert [s["line"] for s in out["skipped"]] == reboot == [35]
    assert sorted(no for p in out["pipelines"] for no in p["lines"]) == [no for no in jobs if no not in reboot]
    assert all(not p["chain"] for p in out["pipelines"])
    for p in out["pipelines"]:
        (no,) = p["lines"]
        assert _next(proj, p["name"]) == _oracle(raw[no - 1], zones[no]), (no, raw[no - 1])
    assert call_cli("--project", proj, "--now", NOW, "validate").returncode == 0


def test_variables_apply_to_the_lines_after_them(tmp_path):
    r, proj = _import(tmp_path, "syntax.crontab", "--no-chains", "--json")
    assert r.returncode == 0, r.stderr
    by_line = {p["lines"][0]: p for p in json.loads(r.stdout)["pipelines"]}
    doc = yaml.safe_load(Path(by_line[8]["path"]).read_text())
    assert doc["env"] == {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "GREETING": "hello   world", "QUOTED": "a b",
                          "SPACED": "value with spaces"}
    assert doc["defaults"] == {"cwd": "/tmp"} and doc["timezone"] == "UTC"
    assert doc["tasks"]["echo"]["run"] == "echo every-minute"
    berlin = yaml.safe_load(Path(by_line[37]["path"]).read_text())
    assert berlin["timezone"] == "Europe/Berlin" and "CRON_TZ" not in berlin["env"]
    last = yaml.safe_load(Path(by_line[41]["path"]).read_text())
    assert last["timezone"] == "Australia/Lord_Howe" and last["tasks"]["no_newline_at_end"]["run"] == "no-newline-at-end"


def test_system_crontab_reads_the_user_column(tmp_path):
    r, proj = _import(tmp_path, "system.crontab", "--system", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(p["name"], p["lines"]) for p in out["pipelines"]] == [
        ("run_parts", [13]), ("anacron", [14]), ("anacron_2", [15]), ("anacron_3", [16]),
        ("pg_dump_all_to_pg_verify_dump", [17, 18]), ("cron", [19])]
    doc = yaml.safe_load((proj / "pipelines" / "anacron.yaml").read_text())
    assert doc["tasks"]["anacron"]["run"] == ("test -x /usr/sbin/anacron || { cd / && run-parts --report "
                                              "/etc/cron.daily; }")
    assert doc["defaults"] == {"cwd": "/root"}
    text = (proj / "pipelines" / "pg_dump_all_to_pg_verify_dump.yaml").read_text()
    assert "# cron ran this as user postgres; pipectl runs it as the user running `pipectl tick`." in text
    raw = (FIXTURES / "system.crontab").read_text().splitlines()
    for p in out["pipelines"]:
        line = raw[p["lines"][0] - 1]
        words = line.split()
        assert _next(proj, p["name"]) == _oracle(line, "UTC"), p["name"]
        assert words[5 if not words[0].startswith("@") else 1] in ("root", "postgres", "www-data")
    # without --system the user would be read as the command: the file's name says nothing here
    r2, proj2 = _import(tmp_path, "system.crontab", "--json", out="as_user")
    doc2 = yaml.safe_load((proj2 / "pipelines" / "root.yaml").read_text())
    assert doc2["tasks"]["root"]["run"] == "root\tcd / && run-parts --report /etc/cron.hourly"


# --------------------------------------------------------------------------- %

@pytest.mark.parametrize("text, command, stdin", [
    ("cat", "cat", None),
    ("date +\\%s", "date +%s", None),
    ("cat > f%line one%line two", "cat > f", "line one\nline two\n"),
    ("cat%a\\%b%", "cat", "a%b\n"),
    ("cat%", "cat", None),
    ("cat%%", "cat", "\n"),
    ("cat%x\\y", "cat", "x\\y\n"),
    ("cat%x\\\\%y", "cat", "x\\%y\n"),
    ("cat%x\\", "cat", "x\\\n"),
    ("echo a\\\\%b", "echo a\\\\", "b\n"),
    ("echo 50\\% off %tail", "echo 50% off ", "tail\n"),
])
def test_percent_splits_as_cron_does(text, command, stdin):
    # cron's do_command.c: \% -> %, first % ends the command, later % -> newline, a newline added
    assert split_percent(text) == (command, stdin)


def test_percent_stdin_reaches_every_command_of_the_line(tmp_path):
    """Run for real: the bytes cron would have fed the job's stdin, read by both halves of `a; b`."""
    home = tmp_path / "home"
    home.mkdir()
    crontab = f'HOME={home}\n0 4 * * * read -r first; echo "$first" > first.txt; cat > rest.txt%line one%50\\% off%%last\n'
    r = call_cli("import", "crontab", "-", "--out", tmp_path / "proj", "--timezone", "UTC", input=crontab)
    assert r.returncode == 0, r.stderr
    run = run_cli("--project", tmp_path / "proj", "--now", NOW, "run", "read")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (home / "first.txt").read_bytes() == b"line one\n"
    assert (home / "rest.txt").read_bytes() == b"50% off\n\nlast\n"


# --------------------------------------------------------------------------- refusals and projects

def test_a_line_cron_would_reject_changes_nothing(tmp_path):
    r = call_cli("import", "crontab", "-", "--out", tmp_path / "proj", "--timezone", "UTC",
                input="0 2 * * * ok\n61 2 * * * bad minute\n")
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["pipectl: error: stdin:2: bad cron expression '61 2 * * *': "
                                     "minute field '61' out of range 0-59"]
    assert not (tmp_path / "proj").exists()


def test_only_reboot_lines_is_an_error_and_writes_nothing(tmp_path):
    r = call_cli("import", "crontab", "-", "--out", tmp_path / "proj", input="@reboot /usr/bin/warm\n")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "pipectl: error: nothing to import from stdin (line 1: @reboot runs once at boot; pipectl has no boot "
        "trigger, so it stays with cron (or a systemd unit))")
    assert not (tmp_path / "proj").exists()


def test_a_template_in_a_command_is_refused_not_rewritten(tmp_path):
    r = call_cli("import", "crontab", "-", "--out", tmp_path / "proj", "--timezone", "UTC", "--json",
                input="0 1 * * * echo '{{ x }}'\n0 2 * * * /bin/true\n")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(p["name"], p["lines"]) for p in out["pipelines"]] == [("true", [2])]
    assert yaml.safe_load((tmp_path / "proj" / "pipelines" / "true.yaml").read_text())["tasks"] == {"true": {"run": "/bin/true"}}
    assert out["skipped"][0]["line"] == 1 and "template" in out["skipped"][0]["reason"]


def test_import_into_an_existing_project_avoids_taken_names(tmp_path):
    proj = make_project(tmp_path / "proj", {"backup": "schedule: '@daily'\ntasks:\n  a:\n    run: 'true'\n"})
    before = (proj / "pipectl.toml").read_text()
    r = call_cli("import", "crontab", "-", "--out", proj, "--timezone", "UTC",
                input="0 5 * * * /usr/local/bin/backup.sh\n")
    assert r.returncode == 0, r.stderr
    assert (proj / "pipectl.toml").read_text() == before
    assert yaml.safe_load((proj / "pipelines" / "backup_2.yaml").read_text())["name"] == "backup_2"
    assert call_cli("--project", proj, "validate").returncode == 0


def test_no_chains_keeps_one_pipeline_per_line(tmp_path):
    r, proj = _import(tmp_path, "realistic.crontab", "--no-chains", "--json")
    out = json.loads(r.stdout)
    assert len(out["pipelines"]) == 14 and not any(p["chain"] for p in out["pipelines"])
    extract = yaml.safe_load((proj / "pipelines" / "extract.yaml").read_text())
    assert extract["schedule"] == "0 1 * * *" and "edges" not in extract


def test_chains_split_at_long_gaps_and_join_jobs_at_one_time():
    tab = parse_crontab("0 1 * * * /a/extract.sh\n0 1 * * * /a/extract_b.sh\n0 2 * * * /a/clean.sh\n"
                        "0 9 * * * /a/report.sh\n0 2 * * 1 /a/weekly.sh\n", "t", "UTC")
    from pipectl.ops.import_crontab import plan

    got = [(p.name, p.layers) for p in plan(tab)]
    assert got == [("extract_to_clean", [["extract", "extract_b"], ["clean"]]), ("report", [["report"]]),
                   ("weekly", [["weekly"]])]
    text = plan(tab)[0].text
    assert "  - '[extract, extract_b] >> clean'\n" in text


# --------------------------------------------------------------------------- the user's crontab

USER_TAB = "MAILTO=me@example.com\n0 1 * * * /opt/etl/extract.sh\n0 2 * * * /opt/etl/clean.sh\n@reboot /opt/warm.sh\n"


def _round_trip(tmp_path, env, read_table):
    proj = tmp_path / "proj"
    r = call_cli("import", "crontab", "--out", proj, "--timezone", "UTC", "--uninstall-originals", env=env)
    assert r.returncode == 0, r.stderr
    root = str(proj.resolve())
    tag = f"#pipectl-import:{root}"
    lines = read_table().splitlines()
    assert lines[:3] == [
        f"{tag}:note# the lines below marked {tag}:line# now run as pipelines in {root};",
        f"{tag}:note# `pipectl --project {root} import crontab --restore-originals` puts them back",
        f"{tag}:tick# this import added the pipectl tick line"]
    assert lines[3:7] == ["MAILTO=me@example.com", f"{tag}:line# 0 1 * * * /opt/etl/extract.sh",
                          f"{tag}:line# 0 2 * * * /opt/etl/clean.sh", "@reboot /opt/warm.sh"]
    assert len(lines) == 8 and lines[7].startswith("* * * * * ") and lines[7].endswith(f"# pipectl:{root}")
    assert "crontab: 2 imported lines commented out; tick line installed" in r.stdout
    assert call_cli("--project", proj, "validate").returncode == 0
    back = call_cli("--project", proj, "import", "crontab", "--restore-originals", env=env)
    assert back.returncode == 0, back.stderr
    assert back.stdout == "crontab: 2 lines restored; pipectl's tick line removed\n"
    assert read_table() == USER_TAB
    again = call_cli("--project", proj, "import", "crontab", "--restore-originals", env=env)
    assert again.stdout == "crontab: nothing imported from it into this project; nothing changed\n"


def test_uninstall_originals_and_restore_with_a_fake_crontab(tmp_path):
    env, table = fake_crontab(tmp_path)
    table.write_text(USER_TAB)
    _round_trip(tmp_path, env, table.read_text)


def test_uninstall_originals_and_restore_with_the_real_crontab(tmp_path):
    """Debian's crontab binary, on the crontab of user nobody (root's own crontab is never touched)."""
    crontab = shutil.which("crontab")
    if not crontab or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("crontab missing or not root: .ci/run installs Debian's cron and runs as root")
        pytest.skip("needs root and Debian's crontab (`apt-get install cron`); skipped only because CI is unset")
    if subprocess.run([crontab, "-u", "nobody", "-l"], capture_output=True, text=True).returncode == 0:
        pytest.skip("user nobody already has a crontab; not touching it")
    wrapper = tmp_path / "bin" / "crontab"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {crontab} -u nobody "$@"\n')
    wrapper.chmod(0o755)
    subprocess.run([crontab, "-u", "nobody", "-"], input=USER_TAB, text=True, check=True)

    def read_table() -> str:
        return subprocess.run([crontab, "-u", "nobody", "-l"], capture_output=True, text=True, check=True).stdout

    try:
        _round_trip(tmp_path, {"PIPECTL_CRONTAB": str(wrapper)}, read_table)
    finally:
        subprocess.run([crontab, "-u", "nobody", "-r"], capture_output=True)


def test_uninstall_originals_needs_the_users_crontab(tmp_path):
    r = call_cli("import", "crontab", str(FIXTURES / "realistic.crontab"), "--out", tmp_path / "p",
                "--uninstall-originals")
    assert r.returncode == 2
    assert r.stderr.strip() == ("pipectl: error: --uninstall-originals works on your crontab (`crontab -l`); "
                                "drop FILE to use it")
    assert not (tmp_path / "p").exists()
