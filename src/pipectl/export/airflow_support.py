"""pipectl_airflow: what DAGs written by `pipectl export airflow` need beside them.

`pipectl export airflow` copies this file into the DAG folder as ``pipectl_airflow.py``.
It depends on Airflow and the standard library only (a worker needs no pipectl), and it
is never imported by pipectl itself.

Every piece exists because an Airflow default would change what a pipectl pipeline means:
``ds`` is the calendar date in the pipeline's timezone (Airflow's is UTC's), datetimes are
ISO 8601 in UTC with an offset, an exit code listed in ``no_retry_exit_codes`` fails at
once, a retry waits exactly ``retry_delay * 2**(try-1)`` capped by ``max_retry_delay``
(Airflow's own backoff adds jitter), a sensor checks exactly what pipectl's checks, and a
run fails when any task instance failed (Airflow judges leaf tasks only).
"""
from __future__ import annotations

import datetime as _dt
import glob as _glob
import json
import os
import re
import subprocess
from typing import Any
from zoneinfo import ZoneInfo

from airflow.providers.standard.hooks.subprocess import SubprocessHook
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import BaseOperator, BaseSensorOperator, RetryDecision, RetryPolicy
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

UTC = _dt.timezone.utc
# pipectl's own bounds, kept the same here
POKE_TIMEOUT = 10.0  # seconds one command or http poke may take; slower counts as "not yet"
FOREACH_TIMEOUT = 60.0  # seconds a foreach command may take
MIN_POKE_GAP = 1.0  # `poke_interval: 0s` pokes at every check, never more often than this
FOREVER = 100 * 365 * 86400.0  # a sensor without timeout waits as long as pipectl's: for ever
MAX_DELAY = 10 * 365 * 86400.0  # pipectl's longest delay a spec may write
_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# -- values -------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A value as pipectl spells it in commands and the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _plain(when: _dt.datetime) -> _dt.datetime:
    # pendulum's DateTime prints its own way; pipectl's values are the standard library's, in UTC
    u = when.astimezone(UTC)
    return _dt.datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, tzinfo=UTC)


class Macros:
    """``pipectl`` in a DAG's templates: the pipeline's timezone bound to pipectl's spellings."""

    def __init__(self, timezone: str):
        self.timezone = timezone

    def ds(self, when: _dt.datetime) -> str:
        return _plain(when).astimezone(ZoneInfo(self.timezone)).date().isoformat()

    def ds_nodash(self, when: _dt.datetime) -> str:
        return self.ds(when).replace("-", "")

    def iso(self, when: _dt.datetime) -> str:
        return _plain(when).isoformat()

    @staticmethod
    def mapped(name: str, ti: Any) -> str:
        """A task instance as pipectl names it: ``task``, or ``task[i]`` for a mapped one."""
        index = getattr(ti, "map_index", -1)
        return f"{name}[{index}]" if index is not None and index >= 0 else name

    @staticmethod
    def fmt(value: Any) -> str:
        return fmt(value)


# -- the environment ----------------------------------------------------------------------
def read_env_file(path: str | None) -> dict[str, str]:
    """KEY=VALUE lines (``#`` comments, blank lines, an optional ``export``), read when a task starts."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("export "):
            s = s[len("export "):].lstrip()
        key, sep, value = s.partition("=")
        key = key.strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def resolve(value: str, environ: dict[str, str]) -> str:
    return _REF_RE.sub(lambda r: environ.get(r.group(1), ""), value)


def _mask(values) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older task SDKs
        return
    for v in values:
        if v and len(v.strip()) >= 3:
            mask_secret(v)


def launch_env(rendered: dict[str, str] | None, secret_env: dict[str, str] | None, env_file: str | None) -> dict[str, str]:
    """The variables a try gets on top of the worker's: env_file, the spec's env (``${VAR}`` read from
    the worker's environment now, never rendered into Airflow's database), then the PIPECTL_* values."""
    environ = dict(os.environ)
    from_file = read_env_file(env_file)
    secrets = {k: resolve(v, environ) for k, v in (secret_env or {}).items()}
    _mask(list(from_file.values()) + list(secrets.values()))
    rendered = dict(rendered or {})
    env = {**from_file, **rendered, **secrets}
    env.update({k: v for k, v in rendered.items() if k.startswith("PIPECTL_")})
    return env


# -- tasks --------------------------------------------------------------------------------
class PipectlExitCode(AirflowException):
    """A try exited non-zero and may be retried."""

    def __init__(self, exit_code: int):
        super().__init__(f"the command exited {exit_code}")
        self.exit_code = exit_code


class _Process:
    """What pipectl's string and list tasks share: the environment, exit-code rules, the item."""

    def _setup(self, secret_env, env_file, no_retry_exit_codes, retry_on_exit_codes, pipectl_item,
               skip_exit_codes=()) -> None:
        self.secret_env = dict(secret_env or {})
        self.skip_exit_codes = tuple(skip_exit_codes or ())
        self.env_file = env_file
        self.no_retry_exit_codes = tuple(no_retry_exit_codes or ())
        self.retry_on_exit_codes = None if retry_on_exit_codes is None else tuple(retry_on_exit_codes)
        self.pipectl_item = pipectl_item
        # the env as written, before Airflow renders it in place: a hook renders these once more for its
        # own values, never the rendered ones (a rendered value may hold braces from a param or the spec)
        self.pipectl_env_templates = dict(getattr(self, "env", None) or {})

    def judge(self, exit_code: int) -> None:
        self.pipectl_exit_code = exit_code
        if exit_code == 0:
            return
        if exit_code in self.skip_exit_codes:  # pipectl's skip_exit_codes: skipped, never retried
            raise AirflowSkipException(f"the command exited {exit_code}, listed in skip_exit_codes")
        if exit_code in self.no_retry_exit_codes:
            raise AirflowFailException(f"the command exited {exit_code}, listed in no_retry_exit_codes: no retry")
        if self.retry_on_exit_codes is not None and exit_code not in self.retry_on_exit_codes:
            raise AirflowFailException(f"the command exited {exit_code}, not in retry_on_exit_codes: no retry")
        raise PipectlExitCode(exit_code)

    def full_env(self, context) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PIPECTL_NOW", None)  # a task's clock is the real one
        env.update(launch_env(self.env, self.secret_env, self.env_file))
        return env


class ShellTask(_Process, BashOperator):
    """A string ``run``: pipectl's command, values passed as environment variables (never pasted in)."""

    # the command holds no template: pipectl turned each {{ var }} into "${PIPECTL_...}", so only
    # env is rendered, and a command ending in .sh is a command, not a template file
    template_fields = ("env",)
    template_ext = ()

    def __init__(self, *, secret_env=None, env_file=None, no_retry_exit_codes=(), retry_on_exit_codes=None,
                 pipectl_item="", skip_exit_codes=(), **kwargs):
        super().__init__(**kwargs)
        self._setup(secret_env, env_file, no_retry_exit_codes, retry_on_exit_codes, pipectl_item, skip_exit_codes)

    def execute(self, context):
        if self.cwd is not None and not os.path.isdir(self.cwd):
            raise AirflowException(f"cwd {self.cwd} is not a directory")
        env = self.full_env(context)
        if self.pipectl_item != "" or "PIPECTL_ITEM" not in env:
            env["PIPECTL_ITEM"] = fmt(self.pipectl_item)
        result = self.subprocess_hook.run_command(command=["bash", "-c", self.bash_command], env=env,
                                                  output_encoding=self.output_encoding, cwd=self.cwd)
        self.judge(result.exit_code)
        return None


class ExecTask(_Process, BaseOperator):
    """A list ``run``: exec'd word by word, no shell."""

    template_fields = ("argv", "env")

    def __init__(self, *, argv, env=None, cwd=None, secret_env=None, env_file=None, no_retry_exit_codes=(),
                 retry_on_exit_codes=None, pipectl_item="", skip_exit_codes=(), **kwargs):
        super().__init__(**kwargs)
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self._setup(secret_env, env_file, no_retry_exit_codes, retry_on_exit_codes, pipectl_item, skip_exit_codes)
        self._hook = None

    def execute(self, context):
        env = self.full_env(context)
        if self.pipectl_item != "" or "PIPECTL_ITEM" not in env:
            env["PIPECTL_ITEM"] = fmt(self.pipectl_item)
        self._hook = SubprocessHook()
        try:
            result = self._hook.run_command(command=list(self.argv), env=env, cwd=self.cwd)
        except OSError as e:  # pipectl: a try that cannot start fails with exit 127
            self.log.error("cannot start %s: %s", self.argv[0], e)
            result = None
        self.judge(127 if result is None else result.exit_code)
        return None

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.send_sigterm()


class ListItems(_Process, BaseOperator):
    """``foreach: {command: ...}``: one item per non-blank stdout line, for ``.expand``."""

    template_fields = ("env",)

    def __init__(self, *, command, env=None, cwd=None, secret_env=None, env_file=None, **kwargs):
        super().__init__(**kwargs)
        self.command = command
        self.env = env
        self.cwd = cwd
        self._setup(secret_env, env_file, (), None, "")

    def execute(self, context):
        env = self.full_env(context)
        env.setdefault("PIPECTL_ITEM", "")
        try:
            proc = subprocess.run(["/bin/sh", "-c", self.command], cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=FOREACH_TIMEOUT, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise AirflowFailException(f"foreach command timed out after {FOREACH_TIMEOUT:g}s") from None
        if proc.returncode != 0:
            raise AirflowFailException(f"foreach command exited {proc.returncode}: {proc.stderr.strip()[-200:]}")
        items = [line for line in proc.stdout.splitlines() if line.strip()]
        if not items:
            raise AirflowSkipException("foreach command printed no items")
        return items


class ExactBackoff(RetryPolicy):
    """pipectl's retry delay: ``retry_delay``, doubled per try when exponential, capped, no jitter."""

    def __init__(self, retry_delay: float, exponential: bool, max_retry_delay: float | None):
        self.retry_delay = float(retry_delay)
        self.exponential = bool(exponential)
        self.max_retry_delay = max_retry_delay

    def delay(self, try_number: int) -> float:
        d = self.retry_delay
        if self.exponential:
            d = self.retry_delay * 2.0 ** min(max(try_number - 1, 0), 64)
        if self.max_retry_delay is not None:
            d = min(d, self.max_retry_delay)
        return min(d, MAX_DELAY)

    def evaluate(self, exception, try_number, max_tries, context=None):
        return RetryDecision.retry(delay=_dt.timedelta(seconds=self.delay(try_number)),
                                   reason=f"pipectl backoff after try {try_number}")

    def serialize(self) -> dict[str, Any]:
        return {"__type": "pipectl.ExactBackoff", "retry_delay": self.retry_delay, "exponential": self.exponential,
                "max_retry_delay": self.max_retry_delay}

    @classmethod
    def deserialize(cls, data):
        return cls(data["retry_delay"], data["exponential"], data["max_retry_delay"])


# -- sensors ------------------------------------------------------------------------------
class FileSensor(BaseSensorOperator):
    """Ready when the path (or a match of the glob) exists with at least ``min_size`` bytes."""

    template_fields = ("path",)

    def __init__(self, *, path: str, root: str, min_size: int | None = None, glob: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.path, self.root, self.min_size, self.glob = path, root, min_size, glob

    def poke(self, context) -> bool:
        full = os.path.join(self.root, self.path)
        for p in (_glob.glob(full) if self.glob else [full]):
            try:
                st = os.stat(p)
            except OSError:
                continue
            if self.min_size is None or st.st_size >= self.min_size:
                return True
        return False


class HttpSensor(BaseSensorOperator):
    """Ready on a 2xx answer; anything else (or no answer within 10 s) is "not yet"."""

    template_fields = ("url",)

    def __init__(self, *, url: str, **kwargs):
        super().__init__(**kwargs)
        self.url = url

    def poke(self, context) -> bool:
        import http.client
        import urllib.error
        import urllib.request

        bad = next((c for c in self.url if c <= " " or c == "\x7f"), None)
        if bad is not None or not self.url.startswith(("http://", "https://")):
            raise AirflowFailException(f"sensor URL {self.url[:200]!r} is not a valid URL")
        try:
            with urllib.request.urlopen(self.url, timeout=POKE_TIMEOUT) as resp:
                return 200 <= resp.status < 300
        except http.client.InvalidURL as e:
            raise AirflowFailException(f"sensor URL {self.url[:200]!r} is not a valid URL: {e}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
            return False


class CommandSensor(_Process, BaseSensorOperator):
    """Ready when the command exits 0; 1 is "not yet"; anything else fails the sensor."""

    template_fields = ("env",)

    def __init__(self, *, command: str, env=None, cwd=None, secret_env=None, env_file=None, **kwargs):
        super().__init__(**kwargs)
        self.command, self.env, self.cwd = command, env, cwd
        self._setup(secret_env, env_file, (), None, "")

    def poke(self, context) -> bool:
        env = self.full_env(context)
        env.setdefault("PIPECTL_ITEM", "")
        try:
            rc = subprocess.run(["/bin/sh", "-c", self.command], cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=POKE_TIMEOUT,
                                start_new_session=True).returncode
        except subprocess.TimeoutExpired:
            return False
        if rc in (0, 1):
            return rc == 0
        raise AirflowFailException(f"sensor command exited {rc}")


class CoveringRun:
    """``execution_date_fn`` of an ExternalTaskSensor: the producer's run that covers the whole day ``ds``
    (its data interval reaches the next midnight in the producer's timezone): a daily producer's only run
    of that ds, a 5-minute producer's last one."""

    def __init__(self, consumer_tz: str, producer_tz: str, *, cron: str | None = None, cron_tz: str | None = None,
                 every: float | None = None, anchor: str | None = None, delta: float | None = None):
        self.consumer_tz, self.producer_tz = consumer_tz, producer_tz
        self.cron, self.cron_tz = cron, cron_tz or producer_tz
        self.every, self.anchor, self.delta = every, anchor, delta

    def day(self, logical_date: _dt.datetime) -> _dt.date:
        when = _plain(logical_date)
        if self.delta:
            when = when - _dt.timedelta(seconds=self.delta)
        return when.astimezone(ZoneInfo(self.consumer_tz)).date()

    def __call__(self, logical_date, **context):
        ds = self.day(logical_date)
        day_end = _dt.datetime.combine(ds + _dt.timedelta(days=1), _dt.time(0), ZoneInfo(self.producer_tz))
        just_before = day_end.astimezone(UTC) - _dt.timedelta(microseconds=1)
        if self.every is not None:
            anchor = _dt.datetime.fromisoformat(self.anchor)
            k = (just_before - anchor) // _dt.timedelta(seconds=self.every)
            return anchor + k * _dt.timedelta(seconds=self.every)
        if self.cron is not None:
            import pendulum
            from airflow.timetables.interval import CronDataIntervalTimetable

            tt = CronDataIntervalTimetable(self.cron, timezone=self.cron_tz)
            # the interval that contains the last instant of the day starts at the latest fire time before it
            return tt.infer_manual_data_interval(run_after=pendulum.instance(just_before)).end
        # a producer with no schedule (triggered, or an asset consumer): its run for ds is at midnight
        return _dt.datetime.combine(ds, _dt.time(0), ZoneInfo(self.producer_tz)).astimezone(UTC)


# -- run state and hooks ------------------------------------------------------------------
def fail_run(**context):
    """The watcher: runs only when a task instance failed, and fails so that the run does too."""
    raise AirflowFailException("a task instance of this run failed: pipectl fails the run")


class Hook:
    """A pipectl hook (on_failure, on_retry, on_success) as an Airflow task callback: the same
    command through /bin/sh, with the try's PIPECTL_* values and PIPECTL_STATE, PIPECTL_EXIT_CODE."""

    def __init__(self, command: str, state: str, refs: dict[str, str] | None = None):
        self.command, self.state, self.refs = command, state, dict(refs or {})

    def __call__(self, context) -> None:
        task = context.get("task")
        env = dict(os.environ)
        env.pop("PIPECTL_NOW", None)
        try:
            templates = {**(getattr(task, "pipectl_env_templates", None) or {}), **self.refs}
            rendered = task.render_template(templates, context) if task else {}
        except Exception as e:  # a hook never changes the task's state
            print(f"pipectl hook: cannot render its environment: {e}")
            return
        env.update(launch_env(rendered, getattr(task, "secret_env", None), getattr(task, "env_file", None)))
        code = getattr(task, "pipectl_exit_code", None)
        env.update(PIPECTL_STATE=self.state, PIPECTL_EXIT_CODE="" if code is None else str(code), PIPECTL_LOG="")
        cwd = getattr(task, "cwd", None) or getattr(task, "root", None)
        try:
            proc = subprocess.run(["/bin/sh", "-c", self.command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=300, start_new_session=True)
            if proc.returncode != 0:
                print(f"pipectl hook {self.state} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"pipectl hook {self.state} failed: {e}")
