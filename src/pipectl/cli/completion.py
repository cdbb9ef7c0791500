"""Shell completion: `pipectl completion bash|zsh|fish` prints the script; the shell then runs
`pipectl` with ``_PIPECTL_COMPLETE`` set, and these callbacks name the project's pipelines,
their tasks and their runs. Nothing here is imported by a tick; a callback that fails
completes nothing rather than print an error into the user's prompt."""
from __future__ import annotations

import os

COMPLETE_VAR = "_PIPECTL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


class _Project:
    """The project of the command line being completed (``--project``, else the usual search)."""

    def __init__(self, click_ctx):
        from pipectl.spec.config import find_project, load_config
        project = click_ctx.find_root().params.get("project") or None
        self._config = load_config(find_project(project, os.getcwd(), os.environ))

    def config(self):
        return self._config

    def load(self):
        from pipectl.spec.loader import load_pipelines
        return load_pipelines(self._config)


def _ctx(click_ctx) -> _Project:
    return _Project(click_ctx)


def pipelines(ctx, incomplete: str) -> list[str]:
    try:
        loaded = _ctx(ctx).load()
        names = sorted(set(loaded.pipelines) | set(loaded.invalid))
    except Exception:
        return []
    return [n for n in names if n.startswith(incomplete)]


def _pipeline_named(ctx, known) -> str:
    """The PIPELINE argument of the command line being completed. Click leaves it unparsed while
    an option's value is completed, so it is also looked for among the shell's words."""
    name = ctx.params.get("pipeline")
    if name:
        return name
    words = (os.environ.get("COMP_WORDS") or os.environ.get("_TYPER_COMPLETE_ARGS") or "").split()
    return next((w for w in words if w in known), "")


def tasks(ctx, incomplete: str) -> list[str]:
    try:
        loaded = _ctx(ctx).load()
        p = loaded.pipelines.get(_pipeline_named(ctx, loaded.pipelines))
    except Exception:
        return []
    return [t for t in (p.tasks if p else ()) if t.startswith(incomplete)]


def run_ids(ctx, incomplete: str) -> list[str]:
    try:
        c = _ctx(ctx)
        loaded = c.load()
        name = _pipeline_named(ctx, set(loaded.pipelines) | set(loaded.invalid))
        from pipectl.state.store import existing_store
        store = existing_store(c.config(), readonly=True)
        if store is None:
            return []
        try:
            ids = [r.run_id for r in store.runs_for(name, limit=100)]
        finally:
            store.close()
    except Exception:
        return []
    return [i for i in ids if i.startswith(incomplete)]


def script(shell: str, command) -> str:
    """The completion script for ``shell`` (typer's completion classes over click's protocol)."""
    import typer._completion_classes as classes
    from typer._click.shell_completion import get_completion_class
    classes.completion_init()
    return get_completion_class(shell)(command, {}, "pipectl", COMPLETE_VAR).source()


def wanted() -> bool:
    return COMPLETE_VAR in os.environ
