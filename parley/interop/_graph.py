"""AutoGen's GraphFlow and parley's graph patterns: a chain is `sequential`, branches joined by one role `fanout`.

Any other graph (conditions on edges, cycles, several joins) has no parley pattern and is said so.
"""

from __future__ import annotations

from typing import Any, cast

from ._component import Findings, Part, quote

__all__ = ["graph_component", "read_graph"]

ADVICE = (
    "parley imports a GraphFlow that is a chain (pattern: sequential) or branches that all lead to one role "
    "(pattern: fanout); write other graphs as a selector or swarm team by hand"
)


def _edges(root: Part, found: Findings) -> dict[str, list[str]] | None:
    """Each node's targets, or None (with a problem) when the graph is not plain data parley can follow."""
    graph = root.config.get("graph")
    nodes = graph.get("nodes") if isinstance(graph, dict) else None  # pyright: ignore[reportUnknownMemberType]
    if not isinstance(nodes, dict):
        found.problem(root.at("graph"), "the GraphFlow has no graph nodes")
        return None
    out: dict[str, list[str]] = {}
    for name, node in cast(dict[str, Any], nodes).items():
        where = f"{root.at('graph')}.nodes.{name}"
        edges = node.get("edges", []) if isinstance(node, dict) else None  # pyright: ignore[reportUnknownMemberType]
        if not isinstance(edges, list):
            found.problem(where, "a graph node without a list of edges")
            return None
        targets: list[str] = []
        for i, edge in enumerate(cast(list[Any], edges)):
            if not isinstance(edge, dict) or edge.get("condition") is not None:  # pyright: ignore[reportUnknownMemberType]
                found.problem(f"{where}.edges[{i}]", "a conditional edge: " + ADVICE)
                return None
            targets.append(str(cast(dict[str, Any], edge).get("target")))
        out[str(name)] = targets
    return out


def read_graph(root: Part, names: list[str], found: Findings) -> tuple[str, list[str], str | None] | None:
    """The pattern a GraphFlow maps to, its roles in order, and the fan-out's join (None for a chain)."""
    edges = _edges(root, found)
    if edges is None:
        return None
    if sorted(edges) != sorted(names) or not {t for ts in edges.values() for t in ts} <= set(edges):
        found.problem(root.at("graph"), "the graph's nodes and edges are not the team's participants")
        return None
    chain = _chain(edges)
    if chain is not None:
        return "sequential", chain, None
    join = _join(edges)
    if join is not None:
        return "fanout", [*(n for n in names if n != join), join], join
    found.problem(root.at("graph"), f"this graph ({_shape(edges)}) has no parley pattern: " + ADVICE)
    return None


def _join(edges: dict[str, list[str]]) -> str | None:
    """The one node every other node leads to, and only to, in a graph of three nodes or more."""
    sinks = [n for n, ts in edges.items() if not ts]
    if len(sinks) != 1 or len(edges) < 3:
        return None
    join = sinks[0]
    return join if all(ts == [join] for n, ts in edges.items() if n != join) else None


def _chain(edges: dict[str, list[str]]) -> list[str] | None:
    """The nodes in order, when each leads to the next and nowhere else."""
    targets = {t for ts in edges.values() for t in ts}
    starts = [n for n in edges if n not in targets]
    if len(starts) != 1 or any(len(ts) > 1 for ts in edges.values()):
        return None
    order = [starts[0]]
    while edges[order[-1]] and len(order) <= len(edges):
        order.append(edges[order[-1]][0])
    return order if len(order) == len(edges) and len(set(order)) == len(order) else None


def _shape(edges: dict[str, list[str]]) -> str:
    shown = [f"{quote(n, 20)} -> {', '.join(quote(t, 20) for t in ts)}" for n, ts in edges.items() if ts]
    return "; ".join(shown[:6]) + ("; …" if len(shown) > 6 else "") or "no edges"


def graph_component(order: list[str], join: str | None) -> dict[str, Any]:
    """The GraphFlow graph for a chain (`join` None) or for branches joined by `join`."""

    def node(name: str, targets: list[str]) -> dict[str, Any]:
        edges = [{"target": t, "activation_group": t, "activation_condition": "all"} for t in targets]
        return {"name": name, "edges": edges, "activation": "all"}

    if join is None:
        nodes = {n: node(n, order[i + 1 : i + 2]) for i, n in enumerate(order)}
    else:
        nodes = {n: node(n, [join] if n != join else []) for n in order}
    return {"nodes": nodes}
