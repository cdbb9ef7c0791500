import pytest
from hypothesis import given, settings, strategies as st

from pipectl.model.dag import CycleError, downstream_closure, find_cycle, topo_order, upstream_closure
def test_topo_order_is_stable_in_declaration_order():
    nodes = ["c", "a", "b", "d"]
    needs = {"d": ["a", "c"], "b": ["a"]}
    assert topo_order(nodes, needs) == ["c", "a", "b", "d"]


def test_topo_order_raises_on_cycle():
    with pytest.raises(CycleError) as e:
        topo_order(["a", "b", "c"], {"b": ["a"], "c": ["b"], "a": ["c"]})
    assert str(e.value) == "cycle: a -> b -> c -> a"


def test_find_cycle_direction_and_rotation():
    # edges: x -> b -> c -> b ; cycle starts at its earliest-declared node
    assert find_cycle(["c", "b", "x"], {"b": ["x", "c"], "c": ["b"]}) == ["c", "b", "c"]
    assert find_cycle(["a"], {"a": ["a"]}) == ["a", "a"]
    assert find_cycle(["a", "b"], {"b": ["a"]}) is None


def test_closures():
    needs = {"b": ["a"], "c": ["b"], "d": ["a"], "e": []}
    assert upstream_closure(needs, "c") == {"a", "b"}
    assert downstream_closure(needs, "a") == {"b", "c", "d"}
    assert downstream_closure(needs, ["b", "d"]) == {"c"}
    assert upstream_closure(needs, "e") == set()


@st.composite
def dags(draw):
    n = draw(st.integers(1, 12))
    nodes = [f"t{i}" for i in draw(st.permutations(range(n)))]
    # edges only go from an earlier to a later position of a hidden order => acyclic
    hidden = draw(st.permutations(nodes))
    rank = {v: i for i, v in enumerate(hidden)}
    pairs = [(u, v) for u in nodes for v in nodes if rank[u] < rank[v]]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    return nodes, edges


def _needs(nodes, edges):
    needs = {v: [] for v in nodes}
    for u, v in edges:
        needs[v].append(u)
    return needs


def _reach(edges, start):
    seen, frontier = set(), {start}
    while frontier:
        frontier = {v for u, v in edges if u in frontier} - seen
        seen |= frontier
    return seen


@settings(max_examples=200, deadline=None)
@given(dags())
def test_topo_order_respects_every_edge(graph):
    nodes, edges = graph
    order = topo_order(nodes, _needs(nodes, edges))
    assert sorted(order) == sorted(nodes)
    pos = {v: i for i, v in enumerate(order)}
    assert all(pos[u] < pos[v] for u, v in edges)
    assert find_cycle(nodes, _needs(nodes, edges)) is None


@settings(max_examples=200, deadline=None)
@given(dags())
def test_closures_match_brute_force(graph):
    nodes, edges = graph
    needs = _needs(nodes, edges)
    reversed_edges = [(v, u) for u, v in edges]
    for n in nodes:
        assert downstream_closure(needs, n) == _reach(edges, n)
        assert upstream_closure(needs, n) == _reach(reversed_edges, n)


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_back_edge_makes_a_real_cycle(graph, data):
    nodes, edges = graph
    candidates = [(u, v) for u, v in edges]
    if not candidates:
        return
    u, v = data.draw(st.sampled_from(candidates))
    path_back = edges + [(v, u)]
    cycle = find_cycle(nodes, _needs(nodes, path_back))
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) >= 3
    assert len(set(cycle[:-1])) == len(cycle) - 1
    edge_set = set(path_back)
    assert all((a, b) in edge_set for a, b in zip(cycle, cycle[1:]))
    with pytest.raises(CycleError):
        topo_order(nodes, _needs(nodes, path_back))
