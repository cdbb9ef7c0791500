"""A pipeline's task graph as written: each task's ``needs`` and the pipeline's ``edges``.

Every edge remembers where it was first written, so an unknown name is reported where it is
spelled and a cycle at the edge that closes it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipectl.model import dag
from pipectl.spec.nodes import Pos, is_kind, suggest

if TYPE_CHECKING:
    from yaml.nodes import Node, ScalarNode

    from pipectl.spec.nodes import NodeReader

EDGE_FORMS = "expected 'a >> b', '[a, b] >> c'"


class TaskGraph:
    def __init__(self, r: "NodeReader", tasks: list[str]):
        self.r = r
        self.tasks = tasks  # in file order
        self.needs: dict[str, list[str]] = {name: [] for name in tasks}
        self.edge_pos: dict[tuple[str, str], Pos] = {}
        self._order = {name: i for i, name in enumerate(tasks)}

    def need(self, up: str, down: str, pos: Pos, where: str) -> None:
        if up not in self.needs:
            self.r.error(pos, f"unknown task {up!r}{where}{suggest(up, self.needs)}")
            return
        self.needs[down].append(up)
        self.edge_pos.setdefault((up, down), pos)

    def read_edges(self, node: "Node") -> None:
        if is_kind(node, "null"):
            return
        for item in self.r.items("edges", node):
            steps = self.edge_steps(item)
            for ups, downs in zip(steps, steps[1:]):
                for up, up_off in ups:
                    if up not in self.needs:
                        continue  # reported by edge_steps
                    for down, down_off in downs:
                        if down in self.needs:
                            self.needs[down].append(up)
                            self.edge_pos.setdefault((up, down), self.r.pos_in(item, down_off))

    def edge_steps(self, node: "ScalarNode") -> list[list[tuple[str, int]]]:
        """``[a, b] >> c`` -> [[(a, off), (b, off)], [(c, off)]]; names checked against the tasks."""
        r = self.r
        text = node.value
        steps: list[list[tuple[str, int]]] = []
        offset = 0
        for part in text.split(">>"):
            names = _step_names(part, offset)
            if names is None:
                r.error(r.pos_in(node, offset), f"bad edge {text!r}: {EDGE_FORMS}")
                return []
            steps.append(names)
            offset += len(part) + 2
        if len(steps) < 2:
            r.error(node, f"bad edge {text!r}: {EDGE_FORMS}")
            return []
        for names in steps:
            for name, off in names:
                if name not in self.tasks:
                    r.error(r.pos_in(node, off), f"unknown task {name!r} in edges{suggest(name, self.tasks)}")
        return steps

    def report_cycles(self) -> None:
        """Report each cycle once, at the edge that closes it (the one written last)."""
        graph = {n: list(ups) for n, ups in self.needs.items()}
        for _ in range(10):
            cycle = dag.find_cycle(self.tasks, graph)
            if cycle is None:
                return
            pairs = list(zip(cycle, cycle[1:]))
            closing = max(pairs, key=lambda p: self.edge_pos.get(p, (0, 0)))
            self.r.error(self.edge_pos.get(closing, (1, 1)), "cycle: " + " -> ".join(cycle))
            graph[closing[1]] = [u for u in graph[closing[1]] if u != closing[0]]

    def upstream(self, task: str) -> tuple[str, ...]:
        """Every task ``task`` needs, once each, in file order."""
        return tuple(sorted(set(self.needs[task]), key=self._order.__getitem__))


def _step_names(part: str, offset: int) -> list[tuple[str, int]] | None:
    stripped = part.strip()
    start = offset + part.index(stripped) if stripped else offset
    if stripped.startswith("[") and stripped.endswith("]"):
        inner, base = stripped[1:-1], start + 1
        names, pos = [], 0
        for piece in inner.split(","):
            name = piece.strip()
            if not name:
                return None
            names.append((name, base + pos + piece.index(name)))
            pos += len(piece) + 1
        return names
    if not stripped or any(c in stripped for c in "[], "):
        return None
    return [(stripped, start)]
