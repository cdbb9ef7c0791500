"""Finding the project and reading ``pipectl.toml``."""
from __future__ import annotations

import os
from pathlib import Path

from pipectl.timing.durations import MAX_COUNT, DurationError, parse_duration
from pipectl.model.errors import ConfigError, Param
from pipectl.model.pipeline import ProjectConfig, frozen_map
CONFIG_NAME = "pipectl.toml"
_KEYS = {"pipelines", "state_dir", "timezone", "max_parallel", "tick_budget", "retention", "metrics_file"}


def find_project(explicit: str | os.PathLike | None, cwd: str | os.PathLike, environ=os.environ) -> Path:
    """``explicit`` (the project option), else ``PIPECTL_PROJECT``, else the nearest ancestor of ``cwd`` with pipectl.toml."""
    chosen = explicit or environ.get("PIPECTL_PROJECT")
    if chosen:
        try:
            root = Path(chosen).expanduser().resolve()
        except (RuntimeError, ValueError, OSError) as e:  # ~nouser, a NUL byte, a loop of symlinks
            raise ConfigError(f"bad project directory {chosen!r}: {e}") from None
        if not (root / CONFIG_NAME).is_file():
            raise ConfigError(f"no {CONFIG_NAME} in {root}")
        return root
    here = Path(cwd).resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return d
    raise ConfigError(f"no {CONFIG_NAME} found in {here} or any parent; run `pipectl init` or pass ",
                      Param("project"), " DIR")


def load_config(root: str | os.PathLike) -> ProjectConfig:
    import tomllib

    root = Path(root).resolve()
    path = root / CONFIG_NAME
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no {CONFIG_NAME} in {root}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    section = data.get("pipectl", {})
    pools = data.get("pools", {})
    if not isinstance(section, dict) or not isinstance(pools, dict):
        raise ConfigError(f"{path}: [pipectl] and [pools] must be tables")
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} in [pipectl] (known: {', '.join(sorted(_KEYS))})")
    kw: dict = {"root": str(root)}
    try:
        globs = section.get("pipelines", ["pipelines/*.yaml"])
        if isinstance(globs, str):
            globs = [globs]
        if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
            raise ConfigError(f"{path}: pipelines must be a list of globs")
        kw["pipelines"] = tuple(globs)
        state_dir = section.get("state_dir", ".pipectl")
        if not isinstance(state_dir, str):
            raise ConfigError(f"{path}: state_dir must be a string")
        kw["state_dir"] = str((root / os.path.expanduser(state_dir)).resolve())
        tz = section.get("timezone", "UTC")
        _check_timezone(tz, path)
        kw["timezone"] = tz
        mp = section.get("max_parallel", 8)
        if isinstance(mp, bool) or not isinstance(mp, int) or not 1 <= mp <= MAX_COUNT:
            raise ConfigError(f"{path}: max_parallel must be an integer from 1 to {MAX_COUNT}, got {_short(mp)}")
        kw["max_parallel"] = mp
        kw["tick_budget"] = parse_duration(section.get("tick_budget", "50s"))
        if "retention" in section:
            kw["retention"] = parse_duration(section["retention"])
        if "metrics_file" in section:
            mf = section["metrics_file"]
            if not isinstance(mf, str) or not mf.strip():
                raise ConfigError(f"{path}: metrics_file must be a file path, got {_short(mf)}")
            kw["metrics_file"] = str((root / os.path.expanduser(mf)).resolve())
    except DurationError as e:
        raise ConfigError(f"{path}: {e}") from None
    for name, limit in pools.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_COUNT:
            raise ConfigError(f"{path}: pool {name!r} must be an integer from 1 to {MAX_COUNT}, got {_short(limit)}")
    kw["pools"] = frozen_map(pools)
    return ProjectConfig(**kw)


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "(a huge number)"
    return text if len(text) <= 40 else text[:37] + "..."


def _check_timezone(tz: object, path: Path) -> None:
    from pipectl.timing.clock import timezone_error
    if not isinstance(tz, str) or timezone_error(tz):
        raise ConfigError(f"{path}: unknown timezone {tz!r}")
