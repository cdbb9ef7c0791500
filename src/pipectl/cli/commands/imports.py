"""Adoption: import crontab."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from pipectl.cli.app import app, get_ctx

import_app = typer.Typer(help="Turn what you run today into pipelines.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("crontab")
def crontab(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Argument(
        metavar="[FILE|-]", show_default=False,
        help="A crontab file, or - for stdin (default: your crontab, `crontab -l`).")] = None,
    out: Annotated[Optional[str], typer.Option(
        "--out", metavar="DIR",
        help="Project to write into (created when it has no pipectl.toml; default: --project, else .).")] = None,
    no_chains: Annotated[bool, typer.Option(
        "--no-chains", help="One pipeline per line; never join staggered jobs into a chain.")] = False,
    system: Annotated[Optional[bool], typer.Option(
        "--system/--no-system",
        help="Lines have a user column (default: yes for /etc/crontab and /etc/cron.d/*).")] = None,
    timezone: Annotated[Optional[str], typer.Option(
        "--timezone", metavar="TZ", help="Zone cron reads the schedules in (default: the machine's).")] = None,
    uninstall_originals: Annotated[bool, typer.Option(
        "--uninstall-originals",
        help="Comment the imported lines out of your crontab and install pipectl's tick line.")] = False,
    restore_originals: Annotated[bool, typer.Option(
        "--restore-originals",
        help="Undo --uninstall-originals: the lines back, the tick line gone if the import added it.")] = False,
) -> None:
    """Write pipelines that fire when a crontab's lines did (staggered jobs proposed as chains)."""
    from pathlib import Path

    from pipectl.ops import import_crontab as imp

    c = get_ctx(ctx)
    root = Path(out or c.project or ".")
    if restore_originals:
        from pipectl.spec.config import load_config

        n, removed = imp.restore_originals(load_config(root))
        if c.json:
            from pipectl.cli.render import print_json

            print_json({"restored": n, "tick_line_removed": removed})
            return
        print(f"crontab: {n} line{'s' if n != 1 else ''} restored" + ("; pipectl's tick line removed" if removed else "")
              if n or removed else "crontab: nothing imported from it into this project; nothing changed")
        return
    stdin_text = sys.stdin.read() if source == "-" else None
    res = imp.run(source, root, stdin_text=stdin_text, chains=not no_chains, system=system, timezone=timezone,
                  uninstall=uninstall_originals)
    for w in res.crontab.warnings:
        print(f"pipectl: warning: {w}", file=sys.stderr)
    for s in res.crontab.skipped:
        print(f"pipectl: not imported: {res.crontab.source}:{s.line}: {s.text.strip()}: {s.reason}", file=sys.stderr)
    if c.json:
        from pipectl.cli.render import print_json

        print_json({
            "project": str(res.root), "created_project": res.created_project,
            "pipelines": [{"name": p.name, "path": str(p.path), "schedule": p.first.expr, "timezone": p.first.timezone,
                           "tasks": [t.name for t in p.tasks], "lines": [t.job.line for t in p.tasks],
                           "chain": p.chain} for p in res.pipelines],
            "skipped": [{"line": s.line, "text": s.text, "reason": s.reason} for s in res.crontab.skipped],
            "warnings": res.crontab.warnings,
            "commented_out": res.commented_out, "tick": res.tick,
        })
        return
    from pipectl.cli.app import _rel

    if res.created_project:
        print(f"created {_rel(res.root / 'pipectl.toml')}")
    for p in res.pipelines:
        lines = ", ".join(str(t.job.line) for t in p.tasks)
        what = (f"chain of {len(p.tasks)} tasks ({' >> '.join('+'.join(layer) for layer in p.layers)})"
                if p.chain else "1 task")
        print(f"wrote {_rel(p.path)}: {what}, {p.first.expr!s} ({p.first.timezone}), from line{'s' if len(p.tasks) > 1 else ''} {lines}")
    if res.tick is not None:
        print(f"crontab: {res.commented_out} imported line{'s' if res.commented_out != 1 else ''} commented out; "
              f"tick line {res.tick}")
    chains = [p for p in res.pipelines if p.chain]
    if chains:
        print("chains are a proposal: check their order (or import again with --no-chains)")
    hint = "" if _rel(res.root) == "." else f"--project {_rel(res.root)} "
    print(f"next: pipectl {hint}validate" + ("" if res.tick else f" && pipectl {hint}install cron"))
