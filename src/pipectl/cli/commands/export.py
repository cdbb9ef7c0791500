"""`pipectl export airflow`: the project's pipelines as Airflow DAG files (the growth path off one machine)."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from pipectl.cli.app import PROG, app, exit_with, get_ctx, resolve_pipeline
from pipectl.model.errors import UsageError

export_app = typer.Typer(help="Write the pipelines for another scheduler.", no_args_is_help=True,
                         rich_markup_mode=None, add_completion=False)
app.add_typer(export_app, name="export")


@export_app.command("airflow")
def airflow(
    ctx: typer.Context,
    pipelines: Annotated[Optional[list[str]], typer.Argument(metavar="PIPELINE",
                                                             help="Pipelines to export (default: all).")] = None,
    out: Annotated[str, typer.Option("--out", metavar="DIR", help="Directory for the DAG files (made if missing).")] = "",
    version: Annotated[str, typer.Option("--airflow", metavar="MAJOR", help="Airflow major version.")] = "3",
    lossy: Annotated[bool, typer.Option("--lossy", help="Export what cannot be carried faithfully, approximated "
                                                        "under a warning block, instead of refusing.")] = False,
) -> None:
    """Airflow DAG files: same tasks, edges, data intervals, ds, retries, sensors and fan-out."""
    from pipectl.export.airflow import ExportError, export_airflow

    if not out:
        raise UsageError("missing --out DIR")
    c = get_ctx(ctx)
    res = c.load()
    if pipelines:
        chosen = [resolve_pipeline(res, name) for name in dict.fromkeys(pipelines)]
    else:
        if res.errors:
            for err in res.errors:
                print(str(err), file=sys.stderr)
            exit_with(1)
        chosen = [res.pipelines[name] for name in sorted(res.pipelines)]
        if not chosen:
            raise UsageError("no pipelines to export")
    try:
        result = export_airflow(c.config(), chosen, res.pipelines, out, lossy=lossy, now=c.now(), airflow=version)
    except ExportError as e:
        raise UsageError(str(e)) from None
    if result.refusals and not lossy:
        for r in result.refusals:
            print(str(r), file=sys.stderr)
        exit_with(2)
    for d in result.dags:
        for note in d.notes:
            print(f"{PROG}: warning: {d.pipeline}: {note}", file=sys.stderr)
    if c.json:
        from pipectl.cli.render import print_json

        print_json({"written": result.written, "dags": [d.path for d in result.dags],
                    "refused": [str(r) for r in result.refusals]})
        return
    for path in result.written:
        print(f"wrote {path}")
