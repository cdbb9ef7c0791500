"""``{{ var }}`` templates in commands, sensor targets and hooks.

Import-light on purpose: the task reaper and ``tick`` render commands on the
hot path, so this module uses only the standard library.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Mapping

# Base names; ``params.NAME`` and ``item`` are allowed where the spec says so.
TEMPLATE_VARS: tuple[str, ...] = (
    "ds",
    "ds_nodash",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "pipeline",
    "task",
    "try_number",
    "params",
    "item",
)

# Anything between braces is captured so that a typo like `{{ ds | upper }}`
# is reported as an unknown variable instead of passing through silently.
_TEMPLATE_RE = re.compile(r"\{\{(\s*)(.*?)\s*\}\}")

_ENV_NAMES = {
    "pipeline": "PIPECTL_PIPELINE",
    "task": "PIPECTL_TASK",
    "run_id": "PIPECTL_RUN_ID",
    "ds": "PIPECTL_DS",
    "ds_nodash": "PIPECTL_DS_NODASH",
    "logical_date": "PIPECTL_LOGICAL_DATE",
    "data_interval_start": "PIPECTL_DATA_INTERVAL_START",
    "data_interval_end": "PIPECTL_DATA_INTERVAL_END",
    "try_number": "PIPECTL_TRY_NUMBER",
    "item": "PIPECTL_ITEM",
}


class TemplateError(ValueError):
    """A template names a variable that has no value (the spec loader prevents this)."""


def find_variables(text: str) -> list[tuple[str, int]]:
    """Every ``{{ name }}`` in ``text`` as (name, offset of the name in ``text``)."""
    return [(m.group(2), m.start(2)) for m in _TEMPLATE_RE.finditer(text)]


def format_value(value: Any) -> str:
    """How a value is spelled in commands and the environment (ISO 8601 with offset for instants)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        import json

        return json.dumps(value, default=str)
    return str(value)


def lookup(name: str, values: Mapping[str, Any]) -> str:
    if name.startswith("params."):
        params = values.get("params") or {}
        key = name[len("params."):]
        if key in params:
            return format_value(params[key])
        raise TemplateError(f"no value for template variable {name!r}")
    if name == "ds_nodash" and "ds_nodash" not in values and "ds" in values:
        return format_value(values["ds"]).replace("-", "")
    if name in values and name != "params":
        return format_value(values[name])
    raise TemplateError(f"no value for template variable {name!r}")


def render(text: str, values: Mapping[str, Any], shell: bool = False) -> str:
    """Substitute every variable verbatim: for argv lists, file paths and URLs, never for a shell.

    A command run by ``/bin/sh`` goes through :func:`shell_command` instead.
    """
    if shell:
        raise TypeError("a shell command is rendered with shell_command(), which never pastes values")
    out: list[str] = []
    pos = 0
    for m in _TEMPLATE_RE.finditer(text):
        out.append(text[pos:m.start()])
        out.append(lookup(m.group(2), values))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def shell_command(text: str, values: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """A command for ``/bin/sh -c`` and the environment variables it needs.

    No value is ever pasted into the command: each template becomes a reference
    to an environment variable (``"${PIPECTL_DS}"``, ``${PIPECTL_PARAM_X}`` ...)
    spelled for the quoting context it sits in, and the value travels in the
    process environment. The shell expands a parameter; it never parses the
    value, whatever the value holds. A template in a context where even an
    expansion would be parsed as code raises :class:`ShellTemplateError`
    (``validate`` reports those before anything runs).
    """
    matches = list(_TEMPLATE_RE.finditer(text))
    if not matches:
        return text, {}
    params = values.get("params") or {}
    forms, problems = _scan(text, matches, params)
    if problems:
        offset, message = problems[0]
        raise ShellTemplateError(offset, message)
    out: list[str] = []
    env: dict[str, str] = {}
    pos = 0
    for i, m in enumerate(matches):
        out.append(text[pos:m.start()])
        name = m.group(2)
        var = env_name(name, params)
        env[var] = lookup(name, values)
        out.append(_REFERENCE[forms[i]].format(var))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), env


def runnable_command(text: str, values: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """:func:`shell_command`, or, when the command cannot be rendered (a run's snapshot from before a
    check existed, a param gone missing), a command that says why on stderr and exits 127: the one
    task, hook, sensor or foreach fails with the reason in its log, and nothing else stops."""
    try:
        return shell_command(text, values)
    except TemplateError as e:
        return refusal(e)


def refusal(reason: Exception | str) -> tuple[str, dict[str, str]]:
    """A command that prints why it cannot run (from the environment, never parsed) and exits 127."""
    return 'printf "pipectl: %s\\n" "$PIPECTL_REFUSED" >&2; exit 127', {"PIPECTL_REFUSED": f"not run: {reason}"}


def shell_problems(text: str, params: Mapping[str, Any] | None = None) -> list[tuple[int, str]]:
    """(offset of the template's name, message) for each template no reference can make safe."""
    matches = list(_TEMPLATE_RE.finditer(text))
    if not matches:
        return []
    return _scan(text, matches, params or {})[1]


class ShellTemplateError(TemplateError):
    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset = offset


def env_name(name: str, params: Mapping[str, Any] | None = None) -> str:
    """The environment variable a template's value travels in.

    ``params.NAME`` is ``PIPECTL_PARAM_<NAME>`` (upper case, non-word characters as
    ``_``) unless two params would share that name (``a-b`` and ``a_b``): then each
    gets a name of its own derived from its exact spelling.
    """
    if not name.startswith("params."):
        return _ENV_NAMES.get(name, "PIPECTL_" + re.sub(r"\W", "_", name).upper())
    key = name[len("params."):]
    base = _param_env(key)
    if params and sum(1 for k in params if _param_env(str(k)) == base) > 1:
        return base + "_" + key.encode("utf-8").hex().upper()
    return base


def _param_env(key: str) -> str:
    return "PIPECTL_PARAM_" + re.sub(r"\W", "_", str(key)).upper()


# How a reference is spelled in each context. Unquoted: quoted so the value stays one
# word (no field splitting, no globbing). Inside "..." or an unquoted heredoc body:
# bare, since quotes there would be literal. Inside '...': close the quote, expand in
# double quotes, reopen. In a comment the text is never run.
_REFERENCE = {
    "word": '"${{{0}}}"',
    "dquote": "${{{0}}}",
    "squote": "\'\"${{{0}}}\"\'",
    "heredoc": "${{{0}}}",
    "comment": "{0}",
}

# Commands that parse one of their arguments as code: a template there would be
# parsed (the expansion happens in our shell, the parsing in theirs).
_ALWAYS_CODE = {"eval", "trap", "ssh", "alias"}
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "posh", "busybox", "su", "fish", "csh", "tcsh"}
_INTERPRETERS_RE = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|php[0-9.]*|lua[0-9.]*|"
                              r"Rscript|tclsh|osascript|deno|bun)$")
_CODE_FLAGS = {"-c", "-e", "-E", "-r", "-p", "--eval", "--print", "--command", "--exec"}
_PROGRAM_FIRST = {"awk", "gawk", "mawk", "nawk", "busybox-awk", "sed", "gsed", "jq", "xargs"}


def _basename(word: str) -> str:
    plain = re.sub(r"[\\'\"]", "", word)
    return plain.rsplit("/", 1)[-1]


def _code_word_next(words: list[str]) -> str | None:
    """If the next word of a simple command whose earlier words are ``words`` is parsed
    as code by the command, the command's name; else None."""
    mode: str | None = None
    name = ""
    expect = False
    skip = False
    for w in words:
        b = _basename(w)
        if skip:
            skip = False
            continue
        if expect:
            expect = False
            mode = None  # the code word is behind us: later words are plain arguments
            continue
        if b in _ALWAYS_CODE:
            mode, name = "always", b
        elif b in _SHELLS:
            mode, name = "shell", b
        elif _INTERPRETERS_RE.match(b):
            mode, name = "interp", b
        elif b in _PROGRAM_FIRST:
            mode, name = "program", b
        elif mode == "shell" and re.match(r"^-[A-Za-z]*c[A-Za-z]*$", b) or mode == "shell" and b == "--command":
            expect = True
        elif mode == "interp" and (b in _CODE_FLAGS or re.match(r"^-[A-Za-z]*[ceEr]$", b)):
            expect = True
        elif mode == "program":
            if b in ("-e", "--expression"):
                expect = True
            elif b in ("-f", "--file", "--from-file"):
                mode = None  # the program comes from a file
            elif b in ("-v", "-F", "--assign", "--field-separator", "--arg", "--argjson", "-I", "-n", "-L", "-P", "-d",
                       "-s"):
                skip = True  # an option's value, not the program
            elif b.startswith("-"):
                continue
            elif name == "xargs":
                mode, name = ("shell", b) if b in _SHELLS else (None, "")
            else:
                mode = None  # this word was the program; later words are data
    if expect:
        return name
    if skip:
        return None
    if mode in ("always", "program") and name != "xargs":
        return name
    return None


def _reads_code_from_stdin(words: list[str]) -> str | None:
    """The command's name when it reads code from its standard input (``sh``, ``python3 -``)."""
    mode: str | None = None
    name = ""
    for w in words:
        b = _basename(w)
        if b in _SHELLS or _INTERPRETERS_RE.match(b) or b == "ssh":
            mode, name = "stdin", b
        elif mode == "stdin" and (re.match(r"^-[A-Za-z]*c[A-Za-z]*$", b) or b in _CODE_FLAGS):
            mode = None  # code given as a word: stdin is data
        elif mode == "stdin" and not b.startswith("-") and b not in ("-",) and name not in ("ssh",):
            mode = None  # a script file: stdin is data
    return name if mode == "stdin" else None


class _Scanner:
    """Reads a command as /bin/sh would, far enough to know the context of each template.

    Each template has been replaced by one private character; ``forms`` gets the
    context of each, ``problems`` (offset, message) the templates that no
    reference can make safe.
    """

    def __init__(self, text: str, marks: dict[str, int], names: list[str], offsets: list[int],
                 params: Mapping[str, Any]):
        self.s = text
        self.n = len(text)
        self.marks = marks
        self.names = names
        self.offsets = offsets
        self.params = params
        self.forms: dict[int, str] = {}
        self.problems: list[tuple[int, str]] = []
        self.levels: list[list[str]] = []  # earlier words of each enclosing simple command
        self.pipe_marks: list[list[int]] = []

    # -- reporting -----------------------------------------------------------
    def var(self, k: int) -> str:
        return "$" + env_name(self.names[k], self.params)

    def problem(self, k: int, message: str) -> None:
        self.forms[k] = "comment"
        self.problems.append((self.offsets[k], message))

    def escaped(self, i: int) -> None:
        """A backslash at ``s[i]``: a template right after it would lose its quoting."""
        if i + 1 < self.n and self.s[i + 1] in self.marks:
            self.problem(self.marks[self.s[i + 1]], "a template right after a backslash cannot be substituted "
                                                    "safely; remove the backslash")

    def mark(self, k: int, form: str, words_override: list[list[str]] | None = None) -> None:
        for words in (words_override if words_override is not None else self.levels):
            code = _code_word_next(words)
            if code:
                self.problem(k, f"'{code}' parses this word as code, so {{{{ {self.names[k]} }}}} here would become "
                                f"code; pass it as a separate argument (sh -c '... \"$1\"' sh ...) or read "
                                f"\"{self.var(k)}\" from the environment inside the code")
                return
        self.forms[k] = form
        if self.pipe_marks:
            self.pipe_marks[-1].append(k)

    # -- contexts ------------------------------------------------------------
    def script(self, i: int, stop: str | None) -> int:
        """Unquoted shell text until ``stop`` (')' of $(...), '`', or the end)."""
        s, n = self.s, self.n
        words: list[str] = []
        cur: list[str] = []
        heredocs: list[tuple[str, bool, bool, list[list[str]]]] = []
        depth = 0
        piped = False
        self.levels.append(words)
        self.pipe_marks.append([])

        def end_word() -> None:
            if cur:
                words.append("".join(cur))
                cur.clear()

        def end_command(sep: str) -> None:
            nonlocal piped
            end_word()
            if piped and self.pipe_marks[-1]:
                reader = _reads_code_from_stdin(words)
                if reader:
                    for k in self.pipe_marks[-1]:
                        self.problem(k, f"'{reader}' reads its code from the pipe, so {{{{ {self.names[k]} }}}} "
                                        f"piped into it would become code; read \"{self.var(k)}\" from the "
                                        "environment instead")
            piped = sep == "|"
            if not piped:
                self.pipe_marks[-1] = []
            words.clear()

        while i < n:
            c = s[i]
            if c in self.marks:
                k = self.marks[c]
                self.mark(k, "word")
                cur.append(c)
                i += 1
            elif c == "\\":
                self.escaped(i)
                cur.append(s[i:i + 2])
                i += 2
            elif c == "'":
                j = i + 1
                while j < n and s[j] != "'":
                    if s[j] in self.marks:
                        self.mark(self.marks[s[j]], "squote")
                    j += 1
                cur.append(s[i:j + 1])
                i = j + 1
            elif c == '"':
                j = self.dquote(i + 1, heredoc=False)
                cur.append(s[i:j])
                i = j
            elif c == "$" or c == "`":
                j = self.dollar(i, quoted=False)
                cur.append(s[i:j])
                i = j
            elif c == "#" and not cur:
                j = s.find("\n", i)
                j = n if j < 0 else j
                for x in range(i, j):
                    if s[x] in self.marks:
                        self.forms[self.marks[s[x]]] = "comment"
                i = j
            elif c == "\n":
                end_command(";")
                i += 1
                for delim, quoted, strip, snapshot in heredocs:
                    i = self.heredoc(i, delim, quoted, strip, snapshot)
                heredocs.clear()
            elif c in " \t":
                end_word()
                i += 1
            elif c == "<" and s.startswith("<<", i) and not s.startswith("<<<", i):
                end_word()
                snapshot = [list(w) for w in self.levels[:-1]] + [list(words)]
                i += 2
                strip = i < n and s[i] == "-"
                if strip:
                    i += 1
                while i < n and s[i] in " \t":
                    i += 1
                j = i
                raw: list[str] = []
                while j < n and s[j] not in " \t\n;&|<>()":
                    if s[j] in "'\"":
                        q = s[j]
                        e = s.find(q, j + 1)
                        e = n - 1 if e < 0 else e
                        raw.append(s[j:e + 1])
                        j = e + 1
                    elif s[j] == "\\":
                        raw.append(s[j:j + 2])
                        j += 2
                    else:
                        raw.append(s[j])
                        j += 1
                word = "".join(raw)
                for x in word:
                    if x in self.marks:
                        self.problem(self.marks[x], "a template cannot be a heredoc delimiter")
                quoted = any(q in word for q in "'\"\\")
                delim = re.sub(r"[\\'\"]", "", word)
                heredocs.append((delim, quoted, strip, snapshot))
                i = j
            elif c in ";&|":
                end_command("|" if c == "|" and not s.startswith("||", i) else ";")
                i += 2 if s.startswith(("||", "&&", ";;"), i) else 1
            elif c == "(":
                end_command(";")
                depth += 1
                i += 1
            elif c == ")":
                if depth == 0 and stop == ")":
                    end_command(";")
                    i += 1
                    break
                depth = max(0, depth - 1)
                end_command(";")
                i += 1
            elif c == "`" and stop == "`":
                i += 1
                break
            elif c in "<>":
                end_word()
                i += 1
            else:
                cur.append(c)
                i += 1
        else:
            end_command(";")
        self.levels.pop()
        self.pipe_marks.pop()
        return i

    def dquote(self, i: int, heredoc: bool) -> int:
        """From after an opening '"' to after its closing one."""
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c in self.marks:
                self.mark(self.marks[c], "dquote")
                i += 1
            elif c == "\\":
                self.escaped(i)
                i += 2
            elif c == '"':
                return i + 1
            elif c in "$`":
                i = self.dollar(i, quoted=True)
            else:
                i += 1
        return n

    def dollar(self, i: int, quoted: bool) -> int:
        """An expansion starting at ``s[i]`` ('$' or '`'); returns the index after it."""
        s, n = self.s, self.n
        if s[i] == "`":
            return self.script(i + 1, "`")
        if s.startswith("$((", i):
            depth = 0
            j = i + 1
            while j < n:
                if s[j] == "(":
                    depth += 1
                elif s[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                elif s[j] in self.marks:
                    k = self.marks[s[j]]
                    self.problem(k, f"a template inside $((...)) is evaluated as an expression, which can run "
                                    f"code; check that \"{self.var(k)}\" is a number first (case "
                                    f"\"{self.var(k)}\" in ''|*[!0-9]*) exit 2;; esac) and use it instead")
                j += 1
            return min(j + 1, n)
        if s.startswith("$(", i):
            return self.script(i + 2, ")")
        if s.startswith("${", i):
            return self.brace(i + 2, quoted)
        return i + 1

    def brace(self, i: int, quoted: bool) -> int:
        """From after '${' to after its '}'."""
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c in self.marks:
                self.mark(self.marks[c], "dquote" if quoted else "word")
                i += 1
            elif c == "\\":
                self.escaped(i)
                i += 2
            elif c == "}":
                return i + 1
            elif c == "'" and not quoted:
                j = i + 1
                while j < n and s[j] != "'":
                    if s[j] in self.marks:
                        self.mark(self.marks[s[j]], "squote")
                    j += 1
                i = j + 1
            elif c == '"':
                i = self.dquote(i + 1, heredoc=False)
            elif c in "$`":
                i = self.dollar(i, quoted)
            else:
                i += 1
        return n

    def heredoc(self, i: int, delim: str, quoted: bool, strip: bool, snapshot: list[list[str]]) -> int:
        """A heredoc body from its first line; returns the index after its delimiter line."""
        s, n = self.s, self.n
        reader = _reads_code_from_stdin(snapshot[-1]) if snapshot else None
        saved = self.levels
        self.levels = snapshot
        try:
            while i < n:
                j = s.find("\n", i)
                j = n if j < 0 else j
                line = s[i:j]
                if (line.lstrip("\t") if strip else line) == delim:
                    return min(j + 1, n)
                if quoted:
                    for x in line:
                        if x in self.marks:
                            k = self.marks[x]
                            self.problem(k, f"a template in a heredoc with a quoted delimiter (<<'{delim}') is "
                                            f"never expanded; write \"{self.var(k)}\" there (the variable is set "
                                            f"for the command) or use an unquoted delimiter (<<{delim})")
                    i = j + 1
                    continue
                while i < j:
                    c = s[i]
                    if c in self.marks:
                        k = self.marks[c]
                        if reader:
                            self.problem(k, f"'{reader}' reads this heredoc as code, so {{{{ {self.names[k]} }}}} "
                                            f"here would become code; write \"{self.var(k)}\" with a quoted "
                                            f"delimiter (<<'{delim}') so that '{reader}' reads it from the "
                                            "environment")
                        else:
                            self.mark(k, "heredoc")
                        i += 1
                    elif c == "\\":
                        self.escaped(i)
                        i += 2
                    elif c in "$`":
                        i = self.dollar(i, quoted=True)
                        if i > j:  # the expansion spanned lines: the body goes on after its line
                            j = s.find("\n", i)
                            j = n if j < 0 else j
                    else:
                        i += 1
                i = j + 1
            return n
        finally:
            self.levels = saved


def _scan(text: str, matches: list, params: Mapping[str, Any]) -> tuple[dict[int, str], list[tuple[int, str]]]:
    # one private-use character per template, none of which occurs in the text itself
    marks: dict[str, int] = {}
    code = 0xF0000
    pieces: list[str] = []
    pos = 0
    for k, m in enumerate(matches):
        while chr(code) in text:
            code += 1
        marks[chr(code)] = k
        pieces.append(text[pos:m.start()])
        pieces.append(chr(code))
        code += 1
        pos = m.end()
    pieces.append(text[pos:])
    scanner = _Scanner("".join(pieces), marks, [m.group(2) for m in matches], [m.start(2) for m in matches], params)
    scanner.script(0, None)
    forms = {k: scanner.forms.get(k, "word") for k in range(len(matches))}
    seen: set[int] = set()
    problems = []
    for offset, message in scanner.problems:
        if offset not in seen:
            seen.add(offset)
            problems.append((offset, message))
    return forms, problems


def task_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The ``PIPECTL_*`` variables every task and hook sees, for the values present."""
    env: dict[str, str] = {}
    for name, var in _ENV_NAMES.items():
        if name in values and values[name] is not None:
            env[var] = format_value(values[name])
    if "PIPECTL_DS_NODASH" not in env and "PIPECTL_DS" in env:
        env["PIPECTL_DS_NODASH"] = env["PIPECTL_DS"].replace("-", "")
    for key, value in (values.get("params") or {}).items():
        env["PIPECTL_PARAM_" + re.sub(r"\W", "_", str(key)).upper()] = format_value(value)
    return env
