"""Fixtures over the test harness (tests/harness.py), which holds the helpers themselves.

``from conftest import make_project, run_cli`` keeps working: the names are re-exported.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness import (  # noqa: F401  (re-exported for the test modules)
    BASE_TOML, QUICKSTART, REPO, Project, call_cli, cli_env, make_project, run_cli,
)


@pytest.fixture(name="make_project")
def _make_project_fixture():
    return make_project


@pytest.fixture(name="run_cli")
def _run_cli_fixture():
    return run_cli


@pytest.fixture(name="call_cli")
def _call_cli_fixture():
    return call_cli


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """A private copy of examples/quickstart (without state or data) to run things in."""
    import shutil

    dst = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, dst, ignore=shutil.ignore_patterns(".pipectl", "data", "warehouse.db", "__pycache__"))
    return dst
