"""Reading a YAML node tree with positions: every problem is kept as ``FILE:LINE:COL: message``.

Validation works on PyYAML's node tree rather than on constructed Python objects so that every
problem keeps a position, duplicate keys are visible (construction silently keeps the last one),
and plain scalars can be read as written (YAML 1.1 turns ``no`` into False and ``2:30`` into
150). Problems are collected, never raised: one run of ``validate`` shows all of them.

:class:`NodeReader` knows YAML and plain value types (strings, integers, durations, ...), nothing
of pipelines; what each key of a pipeline file means is in ``spec.keys``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipectl.timing.durations import MAX_SPEC_SECONDS, DurationError, parse_duration

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG_KINDS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "null": "null",
              "timestamp": "date", "binary": "binary", "merge": "merge key"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
# The only YAML tags a spec may use: JSON-like values (plus dates). Others (!!binary, !!set,
# !!python/..., local !tags) make values no snapshot, template or environment can carry.
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in
                        ("str", "int", "float", "bool", "null", "timestamp", "seq", "map", "merge"))
# Aliases share nodes, so a few hundred bytes can stand for billions of values ("billion laughs").
# Every reader of a spec walks values as if expanded: refuse a file whose expansion is bigger than
# any honest pipeline (a thousand tasks of a dozen keys is ~50,000 nodes).
MAX_SPEC_NODES = 200_000

Pos = tuple[int, int]
Pair = tuple[Node, Node]


@dataclass(frozen=True)
class SpecError:
    file: str
    line: int  # 1-based
    col: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


def suggest(word: str, choices: Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return _TAG_KINDS.get(node.tag.rsplit(":", 1)[-1], "string")


def is_kind(node: Node, kind: str) -> bool:
    return isinstance(node, ScalarNode) and node_kind(node) == kind


def timezone_error(tz: str) -> str | None:
    """clock.timezone_error, with the nearest known names suggested."""
    from zoneinfo import available_timezones

    from pipectl.timing.clock import timezone_error as problem
    found = problem(tz)
    return found and f"{found}{suggest(tz, available_timezones())}"


class NodeReader:
    """One file's problems, and readers of its nodes that report into them."""

    def __init__(self, shown: str):
        self.shown = shown  # the file as problems name it
        self.lines: list[str] = []
        self.errors: list[SpecError] = []
        self._constructor = yaml.constructor.SafeConstructor()

    # -- reporting --------------------------------------------------------
    def error(self, where: Node | Pos, message: str, file: str | None = None) -> None:
        line, col = self.pos(where)
        # one line per problem, always: PyYAML's messages carry their own "in <string>, line 4" tail
        message = " ".join(message.split("\n  in ")[0].split())
        self.errors.append(SpecError(file or self.shown, line, col, message))

    @staticmethod
    def pos(where: Node | Pos) -> Pos:
        if isinstance(where, Node):
            return where.start_mark.line + 1, where.start_mark.column + 1
        return where

    def pos_in(self, node: ScalarNode, offset: int) -> Pos:
        """Position of ``node.value[offset]`` in the file, when the source spells it verbatim."""
        start, end = node.start_mark, node.end_mark
        value = node.value
        quoted = node.style in ("'", '"')
        plain = not node.style  # the C loader spells plain as '', the Python one as None
        if (plain or quoted) and start.line == end.line and start.line < len(self.lines):
            raw = self.lines[start.line][start.column:end.column]
            inner = raw[1:-1] if quoted else raw
            if inner == value:
                return start.line + 1, start.column + 1 + offset + quoted
        if node.style == "|":
            k = value.count("\n", 0, offset)
            line_start = value.rfind("\n", 0, offset) + 1
            line_text = value[line_start:].split("\n", 1)[0]
            src_line = start.line + 1 + k
            if src_line < len(self.lines):
                at = self.lines[src_line].find(line_text)
                if at >= 0:
                    return src_line + 1, at + 1 + offset - line_start
        return self.pos(node)

    def sorted_errors(self) -> list[SpecError]:
        unique = dict.fromkeys(self.errors)  # defaults are checked once per task: drop repeats
        return sorted(unique, key=lambda e: (e.file != self.shown, e.file, e.line, e.col))

    # -- the tree -----------------------------------------------------------
    def compose(self, text: str) -> Node | None:
        """The file's node tree; None (with the problem reported) when there is none to read."""
        self.lines = text.splitlines()
        try:
            root = yaml.compose(text, Loader=_Loader)
        except yaml.YAMLError as e:
            self.syntax_error(e, text)
            return None
        except RecursionError:
            self.error((1, 1), "YAML nesting too deep")
            return None
        if root is not None and not self._plain_tree(root):
            return None
        return root

    def _plain_tree(self, root: Node) -> bool:
        """Refuse non-plain tags, recursive aliases and alias bombs before anything walks the tree.

        One pass over the distinct nodes (aliases are shared, so this stays linear in the file)
        counts the nodes of the expanded tree."""
        size: dict[int, int] = {}
        path: set[int] = set()  # nodes entered but not finished: the ancestors of the current one
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            key = id(node)
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = list(node.value)
            elif isinstance(node, MappingNode):
                children = [n for pair in node.value for n in pair]
            if done:
                path.discard(key)
                size[key] = total = 1 + sum(size[id(c)] for c in children)
                if total > MAX_SPEC_NODES:
                    self.error(node, f"YAML aliases expand this value to more than {MAX_SPEC_NODES} nodes "
                                     "(an alias bomb?); write the values out")
                    return False
                continue
            if key in size:
                continue
            if key in path:
                self.error(node, "recursive YAML alias: a value may not contain itself")
                return False
            if node.tag not in _PLAIN_TAGS:
                shown = node.tag.replace("tag:yaml.org,2002:", "!!")
                self.error(node, f"unsupported YAML tag {shown!r}: specs take plain strings, numbers, booleans, "
                                 "dates, lists and mappings")
                return False
            path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
        return True

    def syntax_error(self, e: yaml.YAMLError, text: str) -> None:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        if mark is not None:
            pos = (mark.line + 1, mark.column + 1)
        elif isinstance(e, yaml.reader.ReaderError):
            before = text[: e.position]
            pos = (before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1)
        else:
            pos = (1, 1)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        message = f"YAML syntax error: {problem}"
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None:
            message += f" ({context} at line {cmark.line + 1})"
        line_text = self.lines[pos[0] - 1] if 0 < pos[0] <= len(self.lines) else ""
        if "\t" in line_text[: pos[1]] or "\t" in problem:
            # PyYAML only says "found character that cannot start any token"
            message = ("YAML syntax error: a tab character; YAML indents with spaces only "
                       "(replace the tab with spaces)")
        if ">>" in line_text and "[" in line_text:
            message += "; quote edges that start with '[', e.g. - \"[a, b] >> c\""
        self.error(pos, message)

    # -- mappings and lists ---------------------------------------------------
    def mapping(self, node: Node, what: str) -> dict[str, Pair] | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping, got {node_kind(node)}")
            return None
        out: dict[str, Pair] = {}
        merged: list[Pair] = []
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value))
                continue
            if not isinstance(key, ScalarNode):
                self.error(key, f"keys in {what} must be strings, got {node_kind(key)}")
                continue
            if key.value in out:
                first = out[key.value][0].start_mark.line + 1
                self.error(key, f"duplicate key {key.value!r} (first at line {first})")
                continue
            out[key.value] = (key, value)
        for key, value in merged:  # `<<: *anchor` fills in only what is not written out
            if isinstance(key, ScalarNode):
                out.setdefault(key.value, (key, value))
        return out

    def _merge_sources(self, node: Node) -> list[Pair]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[Pair] = []
        for src in sources:
            if isinstance(src, MappingNode):
                pairs.extend(src.value)
            else:
                self.error(src, f"'<<' must merge a mapping, got {node_kind(src)}")
        return pairs

    def known_keys(self, m: dict[str, Pair], allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key, (knode, _) in m.items():
            if key not in allowed:
                self.error(knode, f"unknown key {key!r}{where}{suggest(key, allowed)}")

    def items(self, key: str, node: Node, single_ok: bool = True) -> list[ScalarNode]:
        """A list of scalars (or, with ``single_ok``, one scalar) as nodes."""
        if single_ok and isinstance(node, ScalarNode) and not is_kind(node, "null"):
            return [node]
        if not isinstance(node, SequenceNode):
            self.error(node, f"{key!r} must be a list, got {node_kind(node)}")
            return []
        good = []
        for item in node.value:
            if isinstance(item, ScalarNode) and not is_kind(item, "null"):
                good.append(item)
            else:
                self.error(item, f"items of {key!r} must be strings, got {node_kind(item)}")
        return good

    # -- scalars ----------------------------------------------------------------
    def scalar(self, node: ScalarNode) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception as e:
            self.error(node, f"bad value {node.value!r}: {e}")
            return None

    def construct(self, node: Node) -> Any:
        """Any value as PyYAML constructs it (errors are the caller's)."""
        return self._constructor.construct_object(node, deep=True)

    def string(self, key: str, node: Node, nonempty: bool = True) -> str | None:
        if not is_kind(node, "string"):
            self.error(node, f"{key!r} must be a string, got {node_kind(node)}")
            return None
        if nonempty and not node.value.strip():
            self.error(node, f"{key!r} must not be empty")
            return None
        return node.value

    def text(self, key: str, node: Node) -> str | None:
        """Any scalar, as written (for descriptions, list items, env values)."""
        if not isinstance(node, ScalarNode) or is_kind(node, "null"):
            self.error(node, f"{key!r} must be a string, got {node_kind(node)}")
            return None
        return node.value

    def integer(self, key: str, node: Node, minimum: int | None = None, maximum: int | None = None) -> int | None:
        if not is_kind(node, "integer"):
            self.error(node, f"{key!r} must be an integer, got {node_kind(node)}")
            return None
        value = self.scalar(node)
        if value is None:
            return None
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.error(node, f"{key!r} must be {bound}, got {value}")
            return None
        return value

    def boolean(self, key: str, node: Node) -> bool | None:
        if not is_kind(node, "boolean"):
            self.error(node, f"{key!r} must be true or false, got {node_kind(node)}")
            return None
        return self.scalar(node)

    def duration(self, key: str, node: Node, positive: bool = False) -> float | None:
        if not isinstance(node, ScalarNode) or node_kind(node) not in ("string", "integer", "number"):
            self.error(node, f"{key!r} must be a duration (30s, 5m, 2h, 1d or seconds), got {node_kind(node)}")
            return None
        try:
            seconds = parse_duration(self.scalar(node), maximum=MAX_SPEC_SECONDS)
        except DurationError as e:
            self.error(node, f"{key!r}: {e}")
            return None
        if positive and seconds <= 0:
            self.error(node, f"{key!r} must be longer than 0")
            return None
        return seconds

    def choice(self, key: str, node: Node, choices: Iterable[str]) -> str | None:
        choices = tuple(choices)
        value = self.string(key, node)
        if value is not None and value not in choices:
            self.error(node, f"{key!r} must be one of {', '.join(choices)}; got {value!r}{suggest(value, choices)}")
            return None
        return value

    def int_list(self, key: str, node: Node) -> tuple[int, ...] | None:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{key!r} must be a list of exit codes, got {node_kind(node)}")
            return None
        codes = [self.integer(f"items of {key}", item, 0, 255) for item in node.value]
        return None if None in codes else tuple(codes)

    def timezone(self, node: Node) -> str | None:
        tz = self.string("timezone", node)
        if tz is not None:
            problem = timezone_error(tz)
            if problem:
                self.error(node, problem)
                return None
        return tz
