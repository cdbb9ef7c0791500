"""The task graph: ``needs`` maps each node to its upstream nodes.

Edges point downstream (``a >> b`` means ``needs['b']`` contains ``a``), and
every result follows the order nodes were declared in, so output is stable.
Names in ``needs`` that are not nodes are ignored: the spec loader reports them.
"""
from __future__ import annotations

import heapq
from typing import Iterable, Mapping, Sequence


class CycleError(ValueError):
    def __init__(self, cycle: list[str]):
        super().__init__("cycle: " + " -> ".join(cycle))
        self.cycle = cycle


def _downstream_map(nodes: Sequence[str], needs: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    known = set(nodes)
    down: dict[str, list[str]] = {n: [] for n in nodes}
    for n in nodes:
        for up in dict.fromkeys(needs.get(n, ())):
            if up in known:
                down[up].append(n)
    return down


def topo_order(nodes: Iterable[str], needs: Mapping[str, Iterable[str]]) -> list[str]:
    """Upstreams before downstreams; among nodes ready together, declaration order wins.

    Raises ``CycleError`` when there is no such order.
    """
    nodes = list(dict.fromkeys(nodes))
    index = {n: i for i, n in enumerate(nodes)}
    down = _downstream_map(nodes, needs)
    waiting = {n: 0 for n in nodes}
    for ds in down.values():
        for d in ds:
            waiting[d] += 1
    ready = [index[n] for n in nodes if waiting[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        n = nodes[heapq.heappop(ready)]
        order.append(n)
        for d in down[n]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, index[d])
    if len(order) < len(nodes):
        raise CycleError(find_cycle(nodes, needs) or [])
    return order


def find_cycle(nodes: Iterable[str], needs: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle in downstream direction, closed (``['a', 'b', 'c', 'a']``), or None.

    The cycle starts at its earliest-declared node so the message is stable.
    """
    nodes = list(dict.fromkeys(nodes))
    down = _downstream_map(nodes, needs)
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in nodes}
    for root in nodes:
        if colour[root] != WHITE:
            continue
        # iterative DFS: deep chains must not hit the recursion limit
        path: list[str] = [root]
        iters = [iter(down[root])]
        colour[root] = GREY
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                iters.pop()
            elif colour[nxt] == GREY:
                cycle = path[path.index(nxt):]
                return _rotate(cycle, nodes)
            elif colour[nxt] == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                iters.append(iter(down[nxt]))
    return None


def _rotate(cycle: list[str], nodes: list[str]) -> list[str]:
    order = {n: i for i, n in enumerate(nodes)}
    k = min(range(len(cycle)), key=lambda i: order[cycle[i]])
    cycle = cycle[k:] + cycle[:k]
    return cycle + [cycle[0]]


def _closure(start: Iterable[str], step: Mapping[str, Iterable[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        for nxt in step.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _roots(roots: str | Iterable[str]) -> list[str]:
    return [roots] if isinstance(roots, str) else list(roots)


def upstream_closure(needs: Mapping[str, Iterable[str]], roots: str | Iterable[str]) -> set[str]:
    """Every node reachable upstream of ``roots`` by at least one edge."""
    return _closure(_roots(roots), needs)


def downstream_closure(needs: Mapping[str, Iterable[str]], roots: str | Iterable[str]) -> set[str]:
    """Every node reachable downstream of ``roots`` by at least one edge."""
    down: dict[str, list[str]] = {}
    for n, ups in needs.items():
        for up in ups:
            down.setdefault(up, []).append(n)
    return _closure(_roots(roots), down)
