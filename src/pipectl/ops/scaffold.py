"""``pipectl init``: a commented ``pipectl.toml`` and one example pipeline."""
from __future__ import annotations

from pathlib import Path

from pipectl.spec.config import CONFIG_NAME
from pipectl.model.errors import UsageError  # (table, key, value, comment); tomli-w writes the values so quoting is always right
_SETTINGS = [
    ("pipectl", "pipelines", ["pipelines/*.yaml"], "Globs of pipeline files, relative to this file."),
    ("pipectl", "state_dir", ".pipectl", "The SQLite state file and task logs live here (created 0700)."),
    ("pipectl", "timezone", "UTC", "Timezone for pipelines that name none (an IANA name)."),
    ("pipectl", "max_parallel", 8, "Task processes running at once, across all pipelines."),
    ("pipectl", "tick_budget", "50s", "Longest a `pipectl tick` stays alive; cron starts one every minute."),
    ("pools", "warehouse", 2, "At most this many tasks with `pool: warehouse` run at once."),
]

_HEADER = """\
# pipectl project settings.
# Schedule the scheduler with ONE crontab line (see `pipectl install cron --print`):
#   * * * * * cd /path/to/project && pipectl tick
"""

_TABLE_COMMENTS = {
    "pipectl": None,
    "pools": "# Optional named concurrency limits; a task joins one with `pool: NAME`.",
}

EXAMPLE_PIPELINE = """\
# An example pipeline: check it with `pipectl validate`, run it once with
# `pipectl run example`, and see what the scheduler would do with `pipectl next example`.
description: Extract, clean and report, once a day
schedule: "0 2 * * *"          # cron, @daily, {every: 15m}, {assets: [...]}, {file: GLOB} or null
timezone: UTC
start_date: 2026-01-01
catchup: false                 # true: run every missed interval after downtime
max_active_runs: 1
params: {region: all}          # `pipectl trigger example --param region=eu` overrides
defaults:                      # every task gets these unless it says otherwise
  retries: 2
  retry_delay: 1m
  retry_backoff: exponential
  timeout: 30m
tasks:
  extract:
    run: echo "extracting {{ params.region }} for {{ ds }}"
  clean:
    run: [echo, cleaning]      # a list runs without a shell
    pool: warehouse
  report:
    run: echo "report for {{ ds }} ready"
edges:
  - extract >> clean >> report
"""


def render_config() -> str:
    """The commented pipectl.toml text: values serialised by tomli-w, comments interleaved."""
    import tomli_w

    lines = [_HEADER]
    for table, comment in _TABLE_COMMENTS.items():
        if comment:
            lines.append(comment)
        lines.append(f"[{table}]")
        for t, key, value, why in _SETTINGS:
            if t == table:
                lines.append(f"# {why}")
                lines.append(tomli_w.dumps({key: value}).strip())
        lines.append("")
    return "\n".join(lines)


def init_project(dir: Path) -> list[Path]:
    """Write pipectl.toml and pipelines/example.yaml into ``dir``; refuse if a project is already there."""
    root = Path(dir)
    config = root / CONFIG_NAME
    example = root / "pipelines" / "example.yaml"
    if config.exists():
        raise UsageError(f"{config} already exists; not changing anything")
    if example.exists():
        raise UsageError(f"{example} already exists; not changing anything")
    root.mkdir(parents=True, exist_ok=True)
    example.parent.mkdir(exist_ok=True)
    example.write_text(EXAMPLE_PIPELINE)
    config.write_text(render_config())
    return [config, example]
