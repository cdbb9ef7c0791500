"""The ``pipectl`` entry point: the command modules registered on ``cli.app.app``, global
options hoisted, and every failure turned into one stderr line and an exit code.

The commands import ``cli.app`` (the Typer object and the shared helpers); this module
imports them, so registration runs one way and no module imports back up the chain.
"""
from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import typer

from pipectl.cli.app import PROG, _secrets_now, app
# Command modules register themselves on `app`; one line each, keep them import-light.
from pipectl.cli.commands import admin as _admin  # noqa: F401 (registers)
from pipectl.cli.commands import core as _core  # noqa: F401 (registers)
from pipectl.cli.commands import events as _events  # noqa: F401 (registers)
from pipectl.cli.commands import export as _export  # noqa: F401 (registers)
from pipectl.cli.commands import imports as _imports  # noqa: F401 (registers)
from pipectl.cli.commands import ops as _ops  # noqa: F401 (registers)
from pipectl.cli.commands import simulate as _simulate  # noqa: F401 (registers)
from pipectl.model.errors import ConfigError, PipectlError, StateError, UsageError


# --------------------------------------------------------------------------- entry point

_GLOBAL_FLAGS = {"--json", "--no-color"}
_GLOBAL_VALUED = {"--project", "--now"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options written after the command in front of it.

    Users type ``pipectl runs P --json`` (SPEC §7 does too); click only accepts
    group options before the command. Stops at ``--``.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i:])
            break
        name = a.split("=", 1)[0]
        if a in _GLOBAL_FLAGS:
            front.append(a)
        elif name in _GLOBAL_VALUED and "=" in a and a.startswith("--"):
            front.append(a)
        elif a in _GLOBAL_VALUED and i + 1 < len(argv):
            front.extend(argv[i:i + 2])
            i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


def install_fast_coercion(command: Any) -> int:
    """Give plain ``str``/``int``/``bool`` parameters a trivial coercer; returns how many were patched.

    typer 0.29 coerces every non-bool parameter through a pydantic TypeAdapter, and
    importing pydantic costs ~65 ms: more than the rest of a no-op ``pipectl tick``,
    which cron starts 1440 times a day. Parameters with anything fancier (choices,
    paths, parsers, callbacks' types) keep typer's own coercion. If typer's internals
    change, this quietly does nothing and pipectl is merely slower.
    """
    try:
        from dataclasses import dataclass
        from typing import Union, get_args, get_origin

        from typer import _click as click
        from typer._coercion import RuntimeParam
    except ImportError:
        return 0

    @dataclass(frozen=True)
    class Plain(RuntimeParam):  # type: ignore[misc]
        convert: Any = str
        many: bool = False

        def _coerce_value(self, value, param, ctx):
            if self.many:
                return [self._one(v, param, ctx) for v in value]
            return self._one(value, param, ctx)

        def _one(self, value, param, ctx):
            if self.convert is str:
                return str(value)
            if self.convert is bool:
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in ("1", "true", "t", "yes", "y", "on"):
                    return True
                if text in ("0", "false", "f", "no", "n", "off", ""):
                    return False
                raise click.exceptions.BadParameter(f"{value!r} is not a valid boolean.", ctx=ctx, param=param)
            try:
                n = int(value)
            except (TypeError, ValueError):
                raise click.exceptions.BadParameter(f"{value!r} is not a valid integer.", ctx=ctx, param=param) from None
            lo, hi = self.parameter_info.min, self.parameter_info.max
            if getattr(self.parameter_info, "clamp", False):
                return min(hi, n) if hi is not None and n > hi else max(lo, n) if lo is not None and n < lo else n
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                rng = f"{lo}<=x<={hi}" if lo is not None and hi is not None else f"x>={lo}" if lo is not None else f"x<={hi}"
                raise click.exceptions.BadParameter(f"{n} is not in the range {rng}.", ctx=ctx, param=param)
            return n

    def plain_type(annotation):
        many = False
        if get_origin(annotation) is Union:
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None
            annotation = args[0]
        if get_origin(annotation) is list:
            args = get_args(annotation)
            if len(args) != 1:
                return None
            annotation, many = args[0], True
        return (annotation, many) if annotation in (str, int, bool) else None

    def fix(param) -> bool:
        desc = getattr(param, "type_descriptor", None)
        if desc is None or getattr(param, "_runtime_param", "absent") is not None:
            return False
        info = desc.parameter_info
        kind = plain_type(desc.annotation)
        if kind is None or getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
            return False
        param._runtime_param = Plain(parameter_info=info, annotation=desc.annotation, convert=kind[0], many=kind[1])
        return True

    def lazy_help(cmd) -> None:
        # --help is created on first use, as a bool option like any other
        original = cmd.get_help_option

        def get_help_option(ctx):
            opt = original(ctx)
            if opt is not None:
                fix(opt)
            return opt

        cmd.get_help_option = get_help_option

    patched = 0
    stack = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        patched += sum(fix(param) for param in cmd.params)
        lazy_help(cmd)
    return patched


# Exit codes belong to the CLI: 2 when the invocation or the project's configuration is
# wrong (fix the command line or pipectl.toml), 1 when the work, a spec or the state failed.
EXIT_CODES: dict[type, int] = {UsageError: 2, ConfigError: 2, StateError: 1, PipectlError: 1}

# The values a library error names, as the flags that supply them.
FLAGS = {"project": "--project", "tasks": "--tasks", "task": "--task", "downstream": "--downstream", "schedule": "--schedule",
         "reprocess": "--reprocess", "date": "--date", "at": "--at", "run_id": "--run-id"}


def exit_code(err: PipectlError) -> int:
    """The exit code of a library error: its nearest class in EXIT_CODES."""
    return next(EXIT_CODES[c] for c in type(err).__mro__ if c in EXIT_CODES)


def error_line(err: PipectlError) -> str:
    """A library error in the CLI's terms (parameters named as flags)."""
    return err.render(FLAGS)


def _die(message: str, code: int) -> NoReturn:
    # One line, always: cron mails and CI logs show exactly what went wrong.
    from pipectl.spec import secrets
    text = " ".join(str(message).split()) or "unknown error"
    secrets.reporting_error = True
    print(f"{PROG}: error: {text}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console script: run the app, turning every failure into one stderr line and an exit code."""
    from typer import _click as click

    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    debug = os.environ.get("PIPECTL_DEBUG", "") not in ("", "0")
    # One choke point: whatever pipectl prints (tables, JSON, logs, error lines) passes a
    # writer that masks the project's secrets; the project is read only if something is printed.
    from pipectl.spec import secrets
    secrets.set_source(lambda: _secrets_now(args))
    if not isinstance(sys.stdout, secrets.MaskingWriter):
        sys.stdout = secrets.MaskingWriter(sys.stdout)
    if not isinstance(sys.stderr, secrets.MaskingWriter):
        sys.stderr = secrets.MaskingWriter(sys.stderr)
    command = typer.main.get_command(app)
    install_fast_coercion(command)
    from pipectl.cli import completion
    if completion.wanted():  # the shell asks for candidates (see `pipectl completion`)
        import typer._completion_classes as classes
        classes.completion_init()
        command._main_shell_completion({}, PROG, completion.COMPLETE_VAR)
        sys.exit(0)
    try:
        rv = command.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        print(e.ctx.get_help())
        _die(f"missing command (see '{e.ctx.command_path} --help')", 2)
    except click.exceptions.UsageError as e:
        hint = ""
        if e.ctx is not None:
            hint = f" (see '{e.ctx.command_path} --help')"
        _die(e.format_message() + hint, 2)
    except click.exceptions.ClickException as e:
        _die(e.format_message(), e.exit_code or 1)
    except typer.Abort:
        _die("aborted", 1)
    except PipectlError as e:
        if debug:
            import traceback

            secrets.reporting_error = True
            traceback.print_exc()
        _die(error_line(e), exit_code(e))
    except KeyboardInterrupt:
        _die("interrupted", 130)
    except BrokenPipeError:
        # `pipectl runs P | head`: the reader left; not an error worth a line.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(1)
    except OSError as e:
        if debug:
            import traceback

            traceback.print_exc()
        # a read-only or full disk, a missing directory, permissions: what failed, and where
        where = f": {e.filename}" if e.filename else ""
        _die(f"{e.strerror or type(e).__name__}{where}", 1)
    except Exception as e:  # noqa: BLE001 - the last line of defence: never a traceback for users
        if debug:
            import traceback

            secrets.reporting_error = True
            traceback.print_exc()
            sys.exit(1)
        _die(f"internal error: {type(e).__name__}: {e} (set PIPECTL_DEBUG=1 for a traceback)", 1)
    sys.exit(rv if isinstance(rv, int) else 0)
