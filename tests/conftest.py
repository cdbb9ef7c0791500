"""Shared test helpers: build a project on disk, run the real CLI in a subprocess.

Both are plain functions (importable: ``from conftest import make_project``) and
fixtures of the same name that hand the function over, for tests that prefer
fixture injection.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "examples" / "quickstart"

# Environment that would make a test depend on the developer's shell.
_SCRUB = ("PIPECTL_PROJECT", "PIPECTL_NOW", "PIPECTL_DEBUG", "NO_COLOR", "FORCE_COLOR", "COLUMNS")

BASE_TOML = """\
[pipectl]
pipelines = ["pipelines/*.yaml"]
state_dir = ".pipectl"
timezone = "UTC"
"""


def make_project(tmp_path: Path, specs: dict[str, str], toml_extra: str = "") -> Path:
    """Write ``pipectl.toml`` and ``pipelines/<name>.yaml`` for each spec; return the project dir.

    Keys are file names under ``pipelines/`` (``.yaml`` added when missing, so
    ``{"etl": "..."}`` writes ``pipelines/etl.yaml``); values are YAML text,
    dedented. ``toml_extra`` is appended to the toml (e.g. a ``[pools]`` table).
    """
    root = Path(tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipectl.toml").write_text(BASE_TOML + (textwrap.dedent(toml_extra) if toml_extra else ""))
    pdir = root / "pipelines"
    pdir.mkdir(exist_ok=True)
    for name, text in specs.items():
        fname = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
        path = pdir / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment for a CLI subprocess: the current one, scrubbed, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    base["PYTHONUNBUFFERED"] = "1"
    base["COLUMNS"] = "200"  # stable line widths for output assertions
    for k, v in (env or {}).items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = str(v)
    return base


def run_cli(*args: object, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
            timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    """``python -m pipectl ARGS`` with text stdout/stderr captured; never raises on exit codes.

    ``cwd`` defaults to a directory with no pipectl.toml above it (the system temp
    dir), so a test never picks up a stray project by accident.
    """
    import tempfile

    return subprocess.run(
        [sys.executable, "-m", "pipectl", *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=str(cwd) if cwd is not None else tempfile.gettempdir(),
        timeout=timeout,
        input=input,
    )


@pytest.fixture(name="make_project")
def _make_project_fixture():
    return make_project


@pytest.fixture(name="run_cli")
def _run_cli_fixture():
    return run_cli


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """A private copy of examples/quickstart (without state or data) to run things in."""
    import shutil

    dst = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, dst, ignore=shutil.ignore_patterns(".pipectl", "data", "warehouse.db", "__pycache__"))
    return dst
