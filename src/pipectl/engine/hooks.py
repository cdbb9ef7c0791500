"""What a task's processes see, and the hooks that run beside its tries.

A try, a hook, a sensor's command and a foreach command all get the same
environment: this process's, without the simulated clock, with the pipeline's
``env``/``env_file`` resolved only now and the ``PIPECTL_*`` variables of the try.
"""
from __future__ import annotations

import os

from pipectl.engine.context import StepContext
from pipectl.engine.runs import template_values
from pipectl.exec import executor, layout
from pipectl.model.pipeline import Pipeline, Task
from pipectl.model.states import FAILED, SUCCESS, UP_FOR_RETRY

HOOK_STATE = {"on_success": SUCCESS, "on_retry": UP_FOR_RETRY, "on_failure": FAILED}


def task_environment(pipeline: Pipeline, task: Task, values: dict) -> dict[str, str]:
    from pipectl.spec.secrets import launch_env
    from pipectl.spec.templates import task_env
    env = dict(os.environ)
    env.pop("PIPECTL_NOW", None)  # the task's own clock is the real one
    env.update(launch_env(pipeline, task, os.environ))  # ${VAR} and env_file resolved only now
    env.update(task_env(values))
    return env


def owner_of(pipeline: Pipeline, task: Task | None) -> str:
    """Who answers for a task: its own owner, else its pipeline's ("" when neither says)."""
    return (task.owner if task is not None else None) or pipeline.owner or ""


def spawn(ctx: StepContext, command: str, env: dict[str, str], log_path: str, label: str) -> None:
    """Start a hook detached; this process waits for it before it exits (see step.drive)."""
    proc = ctx.executor.run_hook(command, cwd=ctx.config.root, env=env, log_path=log_path, label=label)
    if proc is not None:
        ctx.children[proc.pid] = proc


def run_try_hook(ctx: StepContext, which: str, run, pipeline: Pipeline, ti, t, exit_code: int | None) -> None:
    """``on_success``/``on_retry``/``on_failure`` after try ``t`` ended (the task's, else the pipeline's)."""
    task = pipeline.tasks[ti.base]
    command = getattr(task, which) or getattr(pipeline, which)
    if not command:
        return
    from pipectl.spec.templates import runnable_command
    values = template_values(run, ti, t.try_number)
    env = task_environment(pipeline, task, values)
    command, refs = runnable_command(command, values)
    env.update(refs)
    env.update(PIPECTL_STATE=HOOK_STATE.get(which, which), PIPECTL_EXIT_CODE="" if exit_code is None else str(exit_code),
               PIPECTL_LOG=t.log_path or "", PIPECTL_OWNER=owner_of(pipeline, task))
    spawn(ctx, command, env, layout.hooks_log(ctx.config, run), which)
