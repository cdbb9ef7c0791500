"""``pipectl import crontab``: a crontab turned into pipelines that fire when its lines did.

What cron does with a line, and how the pipeline keeps it:

- The schedule is kept as written (five fields or a nickname), in the timezone
  cron read it in: ``CRON_TZ`` above the line, else the machine's zone.
- cron runs ``$SHELL -c COMMAND`` (``/bin/sh`` unless the crontab sets SHELL) in
  ``$HOME`` with ``PATH=/usr/bin:/bin`` and the crontab's variables as they stand
  above the line (a variable applies to the lines after it only). The pipeline
  gets the same shell, working directory and variables; PATH is always written
  out, since a tick's own PATH is not cron's.
- ``%``: the first unescaped one ends the command, the rest becomes its stdin
  with each unescaped ``%`` a newline, ``\\%`` a literal ``%`` (cron's
  do_command.c, byte for byte, including the newline it adds at the end). The
  task feeds the same bytes with ``printf`` into the command, grouped, so every
  command of a ``a; b`` line reads the one stdin as under cron.
- ``@reboot`` has no equivalent (pipectl has no boot trigger) and is refused with
  a note, as is a command holding ``{{`` (pipectl would read it as a template).
- MAILTO is kept in the environment (cron passes it on too) and named in a comment:
  pipectl keeps each try's output in its log; it does not mail it.

Chains: jobs firing once a day at a fixed time on the same days (same day fields,
timezone, user), no more than ``CHAIN_GAP`` apart from one to the next, are
the staggered "1am extract, 2am clean, 3am report" pattern. They become one
pipeline at the first job's time whose tasks run in time order, each after the
ones before it succeeded (jobs at one time run side by side).
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shlex
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pipectl.model.errors import PipectlError, UsageError
from pipectl.timing import clock, cron

CRON_PATH = "/usr/bin:/bin"  # what cron gives a job unless the crontab sets PATH
CRON_SHELL = "/bin/sh"
CHAIN_GAP = timedelta(hours=3)

# Lines the import adds to a crontab start with this, followed by the project root.
TAG = "#pipectl-import:"

_ENV_RE = re.compile(r"\s*([^\s=#]+)\s*=\s*(.*?)\s*\Z")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NAME_CHARS = re.compile(r"[^a-z0-9_]+")
_SECRET_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Words that say how a job runs, not what it is: the task is named after what follows.
_WRAPPERS = {"nice", "ionice", "nohup", "timeout", "flock", "chronic", "env", "exec", "time", "sudo", "su",
             "sh", "bash", "dash", "zsh", "ksh", "python", "python2", "python3", "perl", "ruby", "php", "node",
             "run-one", "setlock", "cronic", "systemd-cat", "cd", "test", "[", "source", "."}
# Options of wrappers that take a value (flock -w 10 FILE, timeout -s KILL 1h, sudo -u USER, nice -n 5)
_VALUED = {"-w", "-s", "-u", "-n", "-c", "-E", "-k", "-g"}


class CrontabError(PipectlError):
    """A line that is neither a comment, a variable nor a job cron would run."""


@dataclass
class Job:
    line: int  # 1-based line number in the source
    text: str  # the line as written
    expr: str  # the schedule: five fields joined by one space, or a nickname
    command: str  # the command part as cron runs it (after % handling)
    stdin: str | None  # the bytes cron feeds its stdin, or None
    env: dict[str, str]  # the crontab's variables in force at this line (CRON_TZ excluded)
    timezone: str
    user: str | None = None  # system crontabs: the user column

    @property
    def shell(self) -> str:
        return self.env.get("SHELL", CRON_SHELL)

    @property
    def home(self) -> str | None:
        if "HOME" in self.env:
            return self.env["HOME"]
        try:
            return pwd.getpwnam(self.user).pw_dir if self.user else os.path.expanduser("~")
        except KeyError:
            return None


@dataclass
class Skipped:
    line: int
    text: str
    reason: str


@dataclass
class Crontab:
    source: str
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading

def system_timezone() -> str:
    """The zone cron reads schedules in: the machine's (/etc/localtime, /etc/timezone), else UTC."""
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            name = target.split("zoneinfo/", 1)[1]
            if clock.timezone_error(name) is None:
                return name
    except OSError:
        pass
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name and clock.timezone_error(name) is None:
            return name
    except OSError:
        pass
    return "UTC"


def split_percent(text: str) -> tuple[str, str | None]:
    """(command, stdin) the way cron splits a command at its first unescaped ``%``."""
    out: list[str] = []
    escaped = False
    rest = None
    for i, ch in enumerate(text):
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            out.append(ch)
            continue
        if ch == "%":
            rest = text[i + 1:]
            break
        out.append(ch)
    command = "".join(out)
    if not rest:  # nothing after the %: cron starts no writer, the job reads end of file at once
        return command, None
    data: list[str] = []
    need_newline = False
    escaped = False
    for ch in rest:
        if escaped:
            if ch != "%":
                data.append("\\")
        elif ch == "%":
            ch = "\n"
        escaped = ch == "\\"
        if not escaped:
            data.append(ch)
            need_newline = ch != "\n"
    if escaped:
        data.append("\\")
    if need_newline:
        data.append("\n")
    return command, "".join(data)


def _fields(text: str, n: int) -> tuple[list[str], str] | None:
    """The first ``n`` whitespace-separated words and the rest of the line (leading blanks dropped)."""
    words: list[str] = []
    rest = text
    for _ in range(n):
        rest = rest.lstrip(" \t")
        m = re.match(r"[^ \t]+", rest)
        if not m:
            return None
        words.append(m.group(0))
        rest = rest[m.end():]
    return words, rest.lstrip(" \t")


def parse_crontab(text: str, source: str, timezone: str, system: bool = False) -> Crontab:
    """Every job of a crontab, the lines not imported with why, and warnings.

    ``system``: lines carry a user column after the schedule (/etc/crontab, /etc/cron.d).
    Raises CrontabError on a line cron would reject.
    """
    tab = Crontab(source=source)
    env: dict[str, str] = {}
    tz = timezone
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _ENV_RE.match(line)
        if m and not stripped[0].isdigit() and stripped[0] not in "*@":
            name, value = m.group(1), m.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if name == "CRON_TZ":
                problem = clock.timezone_error(value)
                if problem:
                    raise CrontabError(f"{source}:{no}: CRON_TZ: {problem}")
                tz = value
                continue
            if not _ENV_NAME_RE.match(name):
                tab.warnings.append(f"{source}:{no}: variable {name!r} is not a name pipectl can set; not carried")
                continue
            if _SECRET_REF_RE.search(value):
                tab.warnings.append(f"{source}:{no}: {name}={value}: cron passes ${{...}} literally; "
                                    "pipectl reads it from the tick's environment when a task starts")
            env[name] = value
            continue
        if stripped.startswith("@"):
            word, after = re.match(r"(@[^ \t]*)[ \t]*(.*)", stripped).groups()
            nick = word.lower()
            if nick == "@reboot":
                tab.skipped.append(Skipped(no, line, "@reboot runs once at boot; pipectl has no boot trigger, "
                                                     "so it stays with cron (or a systemd unit)"))
                continue
            if nick not in cron.NICKNAMES:
                raise CrontabError(f"{source}:{no}: unknown nickname {word!r} "
                                   f"(cron knows @reboot, {', '.join(cron.NICKNAMES)})")
            expr, rest = word, after
        else:
            got = _fields(line, 5)
            if got is None:
                raise CrontabError(f"{source}:{no}: expected five schedule fields and a command")
            words, rest = got
            expr = " ".join(words)
            problem = cron.cron_error(expr)
            if problem:
                raise CrontabError(f"{source}:{no}: {problem}")
        user = None
        if system:
            got = _fields(rest, 1)
            if got is None:
                raise CrontabError(f"{source}:{no}: expected a user and a command after the schedule")
            (user,), rest = got
        if not rest.strip():
            raise CrontabError(f"{source}:{no}: no command after the schedule")
        command, stdin = split_percent(rest)
        if "{{" in command or (stdin and "{{" in stdin):
            tab.skipped.append(Skipped(no, line, "the command holds '{{', which pipectl would read as a template; "
                                                 "move it into a script and import the line calling that"))
            continue
        tab.jobs.append(Job(no, line, expr, command, stdin, dict(env), tz, user))
    return tab


# --------------------------------------------------------------------------- planning

@dataclass
class Task:
    name: str
    job: Job


@dataclass
class PipelinePlan:
    name: str
    tasks: list[Task]
    layers: list[list[str]]  # task names by start time; one layer per pipeline without a chain
    text: str = ""  # the YAML
    path: Path | None = None

    @property
    def first(self) -> Job:
        return self.tasks[0].job

    @property
    def chain(self) -> bool:
        return len(self.layers) > 1


def task_name(command: str, line: int) -> str:
    """A readable name from what the command runs: ``/opt/etl/extract.sh --day`` -> ``extract``."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    skip_value = False
    for w in words:
        if skip_value:
            skip_value = False
            continue
        if w in ("&&", "||", ";", "|") or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w):
            continue
        if w.startswith("-"):
            skip_value = w in _VALUED
            continue
        if w == "cd":
            skip_value = True
            continue
        if re.fullmatch(r"[0-9.]+[smhd]?", w):  # timeout 1h, nice 10
            continue
        base = os.path.basename(w.rstrip("/"))
        if base in _WRAPPERS or re.fullmatch(r"python[0-9.]*|php[0-9.]*", base) or w.startswith(("/tmp/", "/var/lock", "/run/")):
            continue
        stem = base.split(".")[0] if not base.startswith(".") else base
        name = _NAME_CHARS.sub("_", stem.lower()).strip("_")
        if name:
            return name[:60]
    return f"line_{line}"


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}_{n}", n + 1
    taken.add(out)
    return out


def _chain_key(job: Job):
    """Jobs that fire once a day at a fixed time share a key when they fire on the same days."""
    spec = cron.parse_cron(job.expr)
    # a nickname (@daily) says "once a day, whenever": nobody staggers with it
    if job.expr.startswith("@") or spec.wild or len(spec.minutes) != 1 or len(spec.hours) != 1:
        return None
    return (spec.doms, spec.months, spec.dows, spec.dom_star, spec.dow_star, job.timezone, job.user)


def _minute_of_day(job: Job) -> int:
    spec = cron.parse_cron(job.expr)
    return spec.hours[0] * 60 + spec.minutes[0]


def _split(chain: list[list[Job]]) -> list[list[list[Job]]]:
    """A chain of one time has no order to keep: one pipeline per job."""
    if len(chain) > 1:
        return [chain]
    return [[[job]] for job in chain[0]] if chain else []


def plan(tab: Crontab, chains: bool = True, taken: set[str] | None = None) -> list[PipelinePlan]:
    """Pipelines for the crontab's jobs, in the order of their first line; names avoid ``taken``."""
    taken = set(taken or ())
    groups: list[list[list[Job]]] = []  # pipeline -> layers (jobs starting at one time) -> jobs
    by_key: dict = {}
    for job in tab.jobs:
        key = _chain_key(job) if chains else None
        if key is None:
            groups.append([[job]])
        else:
            by_key.setdefault(key, []).append(job)
    for jobs in by_key.values():
        jobs.sort(key=lambda j: (_minute_of_day(j), j.line))
        chain: list[list[Job]] = []
        for job in jobs:
            t = _minute_of_day(job)
            last = _minute_of_day(chain[-1][0]) if chain else None
            if chain and t == last:
                chain[-1].append(job)
                continue
            if chain and t - last > CHAIN_GAP.total_seconds() // 60:
                groups.extend(_split(chain))
                chain = []
            chain.append([job])
        groups.extend(_split(chain))
    groups.sort(key=lambda g: min(j.line for layer in g for j in layer))
    plans = []
    for g in groups:
        names: set[str] = set()
        tasks, layers = [], []
        for layer in g:
            layers.append([])
            for job in layer:
                t = Task(_unique(task_name(job.command, job.line), names), job)
                tasks.append(t)
                layers[-1].append(t.name)
        if len(g) > 1:
            base = f"{tasks[0].name}_to_{tasks[-1].name}"
        else:
            base = tasks[0].name
        p = PipelinePlan(_unique(base[:90], taken), tasks, layers)
        p.text = render_pipeline(p, tab.source)
        plans.append(p)
    return plans


# --------------------------------------------------------------------------- YAML

def _scalar(value: str) -> str:
    """One YAML scalar that reads back as exactly ``value``."""
    import yaml

    if any(ord(c) < 32 and c != "\t" for c in value) or value != value.strip() or not value:
        return json.dumps(value, ensure_ascii=False)
    text = yaml.safe_dump([value], width=1 << 30, allow_unicode=True, default_flow_style=False)
    return text[2:].rstrip("\n").removesuffix("\n...")


def run_value(job: Job) -> str | list[str]:
    """What the task runs: the command as cron would have run it."""
    cmd = job.command
    if job.stdin is not None:
        lines = job.stdin.split("\n")
        if lines[-1] == "":
            fmt, args = "%s\\n", lines[:-1]  # printf repeats its format for every argument
        else:
            fmt, args = "%s\\n" * (len(lines) - 1) + "%s", lines
        # grouped, so that every command of the line reads the stdin, as under cron
        cmd = f"printf {shlex.quote(fmt)} {' '.join(shlex.quote(a) for a in args)} | {{ {cmd}\n}}"
    if job.shell == CRON_SHELL:
        return cmd
    return [job.shell, "-c", cmd]


def _env_of(job: Job) -> dict[str, str]:
    env = {"PATH": CRON_PATH}
    env.update(job.env)
    return env


def _comment_line(job: Job) -> str:
    return f"line {job.line}: {job.text.strip()}"


def render_pipeline(p: PipelinePlan, source: str) -> str:
    """The pipeline's YAML: comments naming each original line, values that read back exactly."""
    jobs = [t.job for t in p.tasks]
    first = p.first
    envs = [_env_of(j) for j in jobs]
    common = {k: v for k, v in envs[0].items() if all(e.get(k) == v for e in envs)}
    homes = {j.home for j in jobs}
    out: list[str] = [f"# Imported from {source} by `pipectl import crontab`."]
    if p.chain:
        out += ["# A chain: these jobs ran at staggered times on the same days. Here each starts once",
                "# the ones before it have succeeded, from the first one's time on:"]
        out += [f"#   {_comment_line(j)}" for j in jobs]
    else:
        out.append(f"# {_comment_line(first)}")
    mailto = sorted({j.env["MAILTO"] for j in jobs if j.env.get("MAILTO")})
    for addr in mailto:
        out.append(f"# MAILTO={addr}: cron mailed the job's output there. pipectl keeps it in each try's")
        out.append("# log (`pipectl logs`); it sends no mail (notifications are not built yet).")
    users = sorted({j.user for j in jobs if j.user})
    for user in users:
        out.append(f"# cron ran this as user {user}; pipectl runs it as the user running `pipectl tick`.")
    out.append(f"name: {_scalar(p.name)}")
    out.append(f"schedule: {_scalar(first.expr)}")
    out.append(f"timezone: {_scalar(first.timezone)}")
    out.append("catchup: false")
    if common:
        out.append("env:")
        out += [f"  {_scalar(k)}: {_scalar(v)}" for k, v in common.items()]
    if len(homes) == 1 and None not in homes:
        out.append("defaults:")
        out.append(f"  cwd: {_scalar(homes.pop())}  # cron starts jobs in $HOME")
        homes = set()
    out.append("tasks:")
    for task, env in zip(p.tasks, envs):
        job = task.job
        out.append(f"  {_scalar(task.name)}:")  # quoted when YAML would read it otherwise (true, no, null)
        if p.chain:
            out.append(f"    # {_comment_line(job)}")
        run = run_value(job)
        if isinstance(run, list):
            out.append(f"    run: [{', '.join(json.dumps(a, ensure_ascii=False) for a in run)}]")
        else:
            out.append(f"    run: {_scalar(run)}")
        if homes and job.home:
            out.append(f"    cwd: {_scalar(job.home)}")
        own = {k: v for k, v in env.items() if common.get(k) != v}
        if own:
            out.append("    env:")
            out += [f"      {_scalar(k)}: {_scalar(v)}" for k, v in own.items()]
    if p.chain:
        out.append("edges:")
        parts = [n[0] if len(n) == 1 else f"[{', '.join(n)}]" for n in p.layers]
        out.append(f"  - {_scalar(' >> '.join(parts))}")
    text = "\n".join(out) + "\n"
    _check_round_trip(text, p, envs, common)
    return text


def _check_round_trip(text: str, p: PipelinePlan, envs, common) -> None:
    """The YAML must say exactly what was meant: every command and variable read back unchanged."""
    import yaml

    doc = yaml.safe_load(text)
    for task, env in zip(p.tasks, envs):
        got = doc["tasks"][task.name]
        want_env = {**common, **(got.get("env") or {})}
        if got["run"] != run_value(task.job) or want_env != env or doc["schedule"] != p.first.expr:
            raise PipectlError(f"internal error: line {task.job.line} does not read back from its YAML")


# --------------------------------------------------------------------------- writing

CONFIG_TEXT = """\
# pipectl project settings (written by `pipectl import crontab`).
[pipectl]
# Globs of pipeline files, relative to this file.
pipelines = ["pipelines/*.yaml"]
# The SQLite state file and task logs live here (created 0700).
state_dir = ".pipectl"
# Timezone for pipelines that name none (each imported pipeline names its own).
timezone = {tz}
"""


@dataclass
class ImportResult:
    root: Path
    created_project: bool
    pipelines: list[PipelinePlan]
    crontab: Crontab
    commented_out: int = 0  # --uninstall-originals: lines commented out of the crontab
    tick: str | None = None  # --uninstall-originals: install_cron's outcome


def _target_dir(config) -> tuple[Path, str]:
    """Where new pipeline files go in an existing project: the folder and suffix of its first glob."""
    for glob in config.pipelines:
        head, tail = os.path.split(glob)
        m = re.fullmatch(r"\*(\.ya?ml)", tail)
        if m and not any(c in head for c in "*?["):
            return Path(config.root) / head, m.group(1)
    raise UsageError(f"cannot tell where to write pipelines: no glob in pipectl.toml's pipelines "
                     f"({', '.join(config.pipelines)}) is DIR/*.yaml")


def import_crontab(tab: Crontab, out: Path, chains: bool = True) -> ImportResult:
    """Write the crontab's pipelines into project ``out`` (created when it holds no pipectl.toml).

    Nothing is written when a pipeline name or file would collide, or when there is nothing to import.
    """
    from pipectl.spec.config import CONFIG_NAME, load_config
    from pipectl.spec.loader import load_pipelines

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is not a directory")
    if not tab.jobs:
        why = "; ".join(f"line {s.line}: {s.reason}" for s in tab.skipped)
        raise PipectlError(f"nothing to import from {tab.source}" + (f" ({why})" if why else ": no jobs in it"))
    created = not (out / CONFIG_NAME).is_file()
    if created:
        folder, suffix, taken = out / "pipelines", ".yaml", set()
    else:
        config = load_config(out)
        folder, suffix = _target_dir(config)
        loaded = load_pipelines(config)
        taken = set(loaded.files) | set(loaded.pipelines)
    taken |= {p.stem for p in folder.glob(f"*{suffix}")} if folder.is_dir() else set()
    plans = plan(tab, chains=chains, taken=taken)
    for p in plans:
        p.path = folder / f"{p.name}{suffix}"
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if created:
            _write_new(out / CONFIG_NAME, CONFIG_TEXT.format(tz=json.dumps(tab.jobs[0].timezone)))
            written.append(out / CONFIG_NAME)
        for p in plans:
            _write_new(p.path, p.text)
            written.append(p.path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return ImportResult(out.resolve(), created, plans, tab)


def _write_new(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8") as f:  # never overwrite: a name taken meanwhile fails here
        f.write(text)


# --------------------------------------------------------------------------- the user's crontab

def _tags(root: str) -> tuple[str, str, str]:
    base = f"{TAG}{root}"
    return f"{base}:line# ", f"{base}:note# ", f"{base}:tick# "


def comment_out(lines: list[str], imported: list[int], root: str, tick_installed: bool) -> list[str]:
    """The crontab with the imported lines (1-based numbers) commented out, tagged so that
    :func:`restore` puts them back; ``tick_installed`` records that the import added the tick line."""
    line_tag, note_tag, tick_tag = _tags(root)
    wanted = set(imported)
    out = [note_tag + f"the lines below marked {line_tag.strip()} now run as pipelines in {root};",
           note_tag + f"`pipectl --project {shlex.quote(root)} import crontab --restore-originals` puts them back"]
    if tick_installed:
        out.append(tick_tag + "this import added the pipectl tick line")
    for no, line in enumerate(lines, 1):
        out.append(line_tag + line if no in wanted else line)
    return out


def restore(lines: list[str], root: str) -> tuple[list[str], int, bool]:
    """(the crontab with this project's imported lines active again, how many, whether the import
    had added the tick line)."""
    line_tag, note_tag, tick_tag = _tags(root)
    out, n, tick = [], 0, False
    for line in lines:
        if line.startswith(line_tag):
            out.append(line[len(line_tag):])
            n += 1
        elif line.startswith(tick_tag):
            tick = True
        elif not line.startswith(note_tag):
            out.append(line)
    return out, n, tick


def uninstall_originals(config, tab_lines: list[str], result: ImportResult) -> tuple[int, str]:
    """Comment the imported lines out of the user's crontab and add pipectl's tick line.

    ``tab_lines`` is the crontab the import read; when it changed since, nothing is touched.
    Returns (lines commented out, install_cron's status)."""
    from pipectl.ops import install

    now = install.read_crontab()
    if now != tab_lines:
        raise PipectlError("the crontab changed while importing; it was left as it was (run the import again)")
    root = str(config.root)
    install._check_path(root)
    has_tick = install.installed_cron_line(config) is not None
    imported = [t.job.line for p in result.pipelines for t in p.tasks]
    install.write_crontab(comment_out(now, imported, root, tick_installed=not has_tick))
    status = install.install_cron(config)
    return len(imported), status


def restore_originals(config) -> tuple[int, bool]:
    """Undo :func:`uninstall_originals`: the lines back, and the tick line gone if the import added it.
    Returns (lines restored, tick line removed)."""
    from pipectl.ops import install

    lines = install.read_crontab()
    back, n, tick = restore(lines, str(config.root))
    if back == lines:
        return 0, False
    install.write_crontab(back)
    removed = install.uninstall_cron(config) if tick else False
    return n, removed


# --------------------------------------------------------------------------- the command

SYSTEM_FILES = ("/etc/crontab", "/etc/cron.d/")


def run(source: str | None, out: Path, *, stdin_text: str | None = None, chains: bool = True,
        system: bool | None = None, timezone: str | None = None, uninstall: bool = False) -> ImportResult:
    """``pipectl import crontab``: read ``source`` (None: ``crontab -l``; ``-``: ``stdin_text``; else a
    file), write its pipelines into ``out``, and with ``uninstall`` hand the user's crontab over to pipectl.

    ``system`` None means: a user column when the file is /etc/crontab or in /etc/cron.d.
    """
    from pipectl.ops import install
    from pipectl.spec.config import load_config

    if uninstall and source is not None:
        raise UsageError("--uninstall-originals works on your crontab (`crontab -l`); drop FILE to use it")
    if timezone is not None and clock.timezone_error(timezone):
        raise UsageError(clock.timezone_error(timezone))
    tz = timezone or system_timezone()
    lines: list[str] = []
    if source is None:
        lines = install.read_crontab()
        text, name = "".join(l + "\n" for l in lines), "crontab -l"
    elif source == "-":
        text, name = stdin_text or "", "stdin"
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {source}: {getattr(e, 'strerror', None) or e}") from None
        name = source
    if system is None:
        path = os.path.abspath(source) if source not in (None, "-") else ""
        system = path == SYSTEM_FILES[0] or path.startswith(SYSTEM_FILES[1])
    tab = parse_crontab(text, name, tz, system=system)
    result = import_crontab(tab, out, chains=chains)
    if uninstall:
        result.commented_out, result.tick = uninstall_originals(load_config(result.root), lines, result)
    return result
