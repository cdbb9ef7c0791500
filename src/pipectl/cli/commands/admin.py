"""Install and operate: install, uninstall, doctor, prune, metrics."""
from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from pipectl.cli.app import app, get_ctx
from pipectl.model.errors import PipectlError, UsageError
TargetArg = Annotated[str, typer.Argument(metavar="cron|systemd", help="What makes ticks arrive.", show_default=False)]
PrintOpt = Annotated[bool, typer.Option("--print", help="Print what would be installed; change nothing.")]
UserOpt = Annotated[bool, typer.Option("--user", help="systemd: a user unit (~/.config/systemd/user), not a system one.")]


def _target(value: str) -> str:
    if value not in ("cron", "systemd"):
        raise UsageError(f"unknown target {value!r}: expected cron or systemd")
    return value


@app.command()
def install(ctx: typer.Context, target: TargetArg, print_: PrintOpt = False, user: UserOpt = False) -> None:
    """Install (or --print) the crontab line, or a systemd service + timer, that runs `pipectl tick` every minute."""
    from pipectl.ops import install as inst
    c = get_ctx(ctx)
    config = c.config()
    if _target(target) == "cron":
        if user:
            raise UsageError("--user applies to systemd only")
        line = inst.cron_line(config)
        if print_:
            print(line)
            return
        outcome = inst.install_cron(config)
        if c.json:
            from pipectl.cli.render import print_json
            print_json({"target": "cron", "outcome": outcome, "line": line})
            return
        print(f"crontab: {outcome}")
        print(line)
        return
    units = inst.systemd_units(config, user)
    if user:
        _linger_hint()
    if print_:
        d = inst.unit_dir(user)
        print(f"# {d / (units.name + '.service')}")
        print(units.service)
        print(f"# {d / (units.name + '.timer')}")
        print(units.timer, end="")
        return
    written, problem = inst.install_systemd(config, user)
    for p in written:
        print(f"wrote {p}")
    if problem:
        flag = "--user " if user else ""
        raise PipectlError(f"units written but the timer is not enabled: {problem}; "
                           f"run: systemctl {flag}daemon-reload && systemctl {flag}enable --now {units.name}.timer")
    print(f"enabled {units.name}.timer")


def _linger_hint() -> None:
    """A --user timer stops at logout (and never starts after a reboot) unless lingering is on."""
    import getpass

    name = os.environ.get("USER") or getpass.getuser()
    if os.path.exists(f"/var/lib/systemd/linger/{name}"):
        return
    print(f"note: a --user timer runs only while {name} is logged in; to keep ticks coming after logout "
          f"and reboots, run once: loginctl enable-linger {name}", file=sys.stderr)


@app.command()
def uninstall(ctx: typer.Context, target: TargetArg, user: UserOpt = False) -> None:
    """Remove this project's crontab line, or its systemd service + timer."""
    from pipectl.ops import install as inst
    c = get_ctx(ctx)
    config = c.config()
    if _target(target) == "cron":
        removed = inst.uninstall_cron(config)
        print("crontab: line removed" if removed else "crontab: no line for this project; nothing changed")
        return
    removed_files = inst.uninstall_systemd(config, user)
    for p in removed_files:
        print(f"removed {p}")
    if not removed_files:
        print("no units for this project; nothing changed")


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the setup: specs, state dir and file, ticks arriving, cron/timer, tzdata, disk."""
    from pipectl.ops.doctor import run_checks
    c = get_ctx(ctx)
    config = c.config()
    checks = run_checks(config, c.now().timestamp())
    ok = all(ch.ok for ch in checks)
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"ok": ok, "project": config.root, "checks": [ch.to_dict() for ch in checks]})
    else:
        for ch in checks:
            print(ch.line())
    if not ok:
        bad = sum(not ch.ok for ch in checks)
        # the checks above are the report; this line is what cron mail and scripts see
        raise PipectlError(f"doctor found {bad} problem{'s' if bad != 1 else ''}")


@app.command()
def prune(
    ctx: typer.Context,
    older_than: Annotated[Optional[str], typer.Option("--older-than", metavar="AGE",
                                                      help="Delete finished runs that ended longer ago than this (90d, 12h); "
                                                           "default: retention in pipectl.toml.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted.")] = False,
) -> None:
    """Delete old finished runs (task instances, tries, events) and their log directories."""
    from pipectl.timing.durations import DurationError, parse_duration
    from pipectl.ops.retention import prune as do_prune
    from pipectl.state.store import open_store
    c = get_ctx(ctx)
    config = c.config()
    if older_than is None:
        if not config.retention:
            raise UsageError("prune needs --older-than AGE (or retention = \"90d\" in pipectl.toml)")
        age = config.retention
    else:
        try:
            age = parse_duration(older_than)
        except DurationError as e:
            raise UsageError(f"bad --older-than {older_than!r}: {e}") from None
        if age <= 0:
            raise UsageError("--older-than must be positive")
    if not os.path.exists(config.state_db):
        result_runs: list[str] = []
        dirs = 0
        tries: dict = {}
    else:
        store = open_store(config, create=False)
        try:
            res = do_prune(config, store, age, c.now().timestamp(), dry_run=dry_run)
        finally:
            store.close()
        result_runs, dirs, tries = res.runs, res.log_dirs, res.tries
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"dry_run": dry_run, "runs": result_runs, "log_dirs": dirs,
                    "tries": {} if dry_run else _by_pipeline(tries)})
        return
    verb = "would delete" if dry_run else "deleted"
    for r in result_runs:
        print(f"{verb} {r}")
    print(f"{verb} {len(result_runs)} run(s)" + ("" if dry_run else f", {dirs} log dir(s)"))


def _by_pipeline(tries: dict) -> dict:
    out: dict = {}
    for (pipeline, run_id), ts in tries.items():
        out.setdefault(pipeline, {})[run_id] = [list(t) for t in ts]
    return out


@app.command()
def metrics(
    ctx: typer.Context,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE",
                                                  help="Write atomically to FILE (node_exporter textfile collector).")] = None,
) -> None:
    """Prometheus text format: runs by state, last success, durations, running/waiting tasks, last tick, SLA misses."""
    from pipectl.ops.metrics import collect, publish
    from pipectl.state.store import open_store
    c = get_ctx(ctx)
    config = c.config()
    if os.path.exists(config.state_db):
        store = open_store(config, create=False)
    else:
        # nothing has run yet: the same metrics, all zero, rather than an error a scraper retries forever
        from pipectl.state.store import Store
        store = Store(":memory:")
    try:
        text = collect(config, store)
    finally:
        store.close()
    if output:
        if os.path.isdir(output):
            raise UsageError(f"--output {output} is a directory; give a file name, e.g. {os.path.join(output, 'pipectl.prom')}")
        try:
            publish(config, text, output)
        except OSError as e:
            raise PipectlError(f"cannot write metrics to {output}: {e.strerror or e}") from None
        return
    sys.stdout.write(text)


@app.command()
def completion(ctx: typer.Context, shell: Annotated[str, typer.Argument(metavar="bash|zsh|fish",
                                                                        help="The shell to complete in.")]) -> None:
    """Print a completion script: `eval "$(pipectl completion bash)"` in ~/.bashrc (zsh: ~/.zshrc;
    fish: `pipectl completion fish | source`). Completes commands, options, pipeline, task and run names."""
    from pipectl.cli import completion as comp
    if shell not in comp.SHELLS:
        raise UsageError(f"shell must be one of {', '.join(comp.SHELLS)}; got {shell!r}")
    import typer.main

    from pipectl.cli.app import app as root
    sys.stdout.write(comp.script(shell, typer.main.get_command(root)))
