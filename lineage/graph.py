"""Graph queries: neighbourhood, upstream, downstream/impact, path, production at time T.

Where the graph lives (see docs/lineage.md for the measurements): in
PostgreSQL only. Each query fetches the part of the graph it needs with one
indexed SQL statement per level of a breadth-first walk (``src_id = ANY(frontier)``
or ``dst_id = ANY(frontier)`` on the live-edge indexes), never more than the
requested depth, then hands that subgraph to networkx for depths, paths and
predecessors. There is no cache to keep coherent across gunicorn processes,
and an answer is always as fresh as the last commit.

Permissions: the walk goes through every node, but nodes whose use case the
caller cannot see come out as placeholders (kind kept, id and name replaced by
an opaque token that is stable within one response only), so the shape of the
graph shows without revealing what is hidden. A starting node the caller
cannot see is a 404.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import networkx as nx
from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.http import Http404

from lineage.models import FLOW_KINDS, EdgeKind, LineageEdge, LineageNode, NodeKind, key_digest
from portal.permissions import Access

DEFAULT_DEPTH = 20
MAX_DEPTH = 100
MAX_NODES = 20_000
ALL_KINDS = tuple(k.value for k in EdgeKind)
# Registry facts that do not change once recorded: not filtered by time.
TIMELESS_KINDS = (EdgeKind.DEPLOYED_AS.value, EdgeKind.SERVES.value)
NODE_FIELDS = (
    "id",
    "kind",
    "key",
    "namespace",
    "name",
    "object_id",
    "label",
    "use_case_id",
    "linked",
    "attrs",
    "valid_from",
    "valid_to",
)


@dataclass
class Subgraph:
    """What a walk found: node depths and the edges (id, src, dst, kind) it crossed."""

    start: list[int]
    depth: dict[int, int] = field(default_factory=dict)
    edges: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    truncated: bool = False

    def digraph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(self.depth)
        for src, dst, kind in self.edges.values():
            if g.has_edge(src, dst):
                g[src][dst]["kinds"].append(kind)
            else:
                g.add_edge(src, dst, kinds=[kind])
        return g


# ``{column}`` is src_id or dst_id and ``{time}`` one of two fixed clauses.
_SELECT_EDGES = (
    "SELECT id, src_id, dst_id, kind FROM lineage_lineageedge "
    "WHERE {column} = ANY(%s) AND kind = ANY(%s) AND {time}"
)


def _edge_sql(column: str, at: datetime | None) -> str:
    time = "removed_at IS NULL"
    if at is not None:
        time = "(kind = ANY(%s) OR (created_at <= %s AND (removed_at IS NULL OR removed_at > %s)))"
    return _SELECT_EDGES.format(column=column, time=time)


def _edges_from(
    frontier: list[int], direction: str, kinds: Iterable[str], at: datetime | None
) -> list[tuple[int, int, int, str]]:
    column = "src_id" if direction == "down" else "dst_id"
    kinds = list(kinds)
    if connection.vendor == "postgresql":
        params: list[Any] = [frontier, kinds]
        if at is not None:
            params += [list(TIMELESS_KINDS), at, at]
        with connection.cursor() as cursor:
            cursor.execute(_edge_sql(column, at), params)
            return cursor.fetchall()
    rows: list[tuple[int, int, int, str]] = []
    for i in range(0, len(frontier), 500):
        qs = LineageEdge.objects.filter(**{f"{column}__in": frontier[i : i + 500]}, kind__in=kinds)
        if at is None:
            qs = qs.filter(removed_at=None)
        else:
            qs = qs.filter(
                Q(kind__in=TIMELESS_KINDS)
                | (Q(created_at__lte=at) & (Q(removed_at=None) | Q(removed_at__gt=at)))
            )
        rows += list(qs.values_list("id", "src_id", "dst_id", "kind"))
    return rows


def walk(
    start: Iterable[int],
    direction: str,
    depth: int,
    *,
    kinds: Iterable[str] = FLOW_KINDS,
    at: datetime | None = None,
    max_nodes: int = MAX_NODES,
    stop_at: int | None = None,
) -> Subgraph:
    """Breadth-first walk ``down`` (with the data) or ``up`` (against it), one SQL per level."""
    start = list(start)
    kinds = tuple(kinds)
    sub = Subgraph(start=start, depth=dict.fromkeys(start, 0))
    frontier = start
    for level in range(1, depth + 1):
        if not frontier:
            break
        nxt: list[int] = []
        for edge_id, src, dst, kind in _edges_from(frontier, direction, kinds, at):
            other = dst if direction == "down" else src
            if other not in sub.depth:
                if len(sub.depth) >= max_nodes:
                    sub.truncated = True
                    continue
                sub.depth[other] = level
                nxt.append(other)
            sub.edges[edge_id] = (src, dst, kind)
        frontier = nxt
        if stop_at is not None and stop_at in sub.depth:
            break
    return sub


def merge(*subs: Subgraph) -> Subgraph:
    out = Subgraph(start=subs[0].start)
    for sub in subs:
        for node, d in sub.depth.items():
            out.depth[node] = min(d, out.depth.get(node, d))
        out.edges.update(sub.edges)
        out.truncated = out.truncated or sub.truncated
    return out


def load_nodes(ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    ids = list(ids)
    rows: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), 5000):
        for row in LineageNode.objects.filter(pk__in=ids[i : i + 5000]).values(*NODE_FIELDS):
            rows[row["id"]] = row
    return rows


# ---------------------------------------------------------------- permissions


class Viewer:
    """Who looks: decides which nodes show and which become placeholders."""

    def __init__(self, access: Access) -> None:
        self.access = access
        ids = access.visible_use_case_ids()
        self.visible: set[int] | None = (
            None if ids is None else set(ids.values_list("id", flat=True))
        )
        self._salt = secrets.token_bytes(16)

    def can_see(self, node: dict[str, Any]) -> bool:
        if self.visible is None:
            return True
        uc = node.get("use_case_id")
        return uc is not None and uc in self.visible

    def opaque(self, node_id: int) -> str:
        mac = hmac.new(self._salt + settings.SECRET_KEY.encode(), str(node_id).encode(), "sha256")
        return "hidden:" + mac.hexdigest()[:16]

    def ref(self, node: dict[str, Any]) -> str:
        return node["key"] if self.can_see(node) else self.opaque(node["id"])

    def node(self, node: dict[str, Any], depth: int | None = None) -> dict[str, Any]:
        out: dict[str, Any]
        if self.can_see(node):
            out = {
                "id": node["key"],
                "kind": node["kind"],
                "type": node["kind"].upper(),
                "label": node["label"],
                "namespace": node["namespace"],
                "name": node["name"],
                "objectId": node["object_id"],
                "useCase": node["use_case_id"],
                "linked": node["linked"],
                "validFrom": _iso(node["valid_from"]),
                "validTo": _iso(node["valid_to"]),
                "attrs": node["attrs"],
                "redacted": False,
            }
        else:
            out = {
                "id": self.opaque(node["id"]),
                "kind": node["kind"],
                "type": node["kind"].upper(),
                "redacted": True,
            }
        if depth is not None:
            out["depth"] = depth
        return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def resolve(access: Access, node_id: str, viewer: Viewer | None = None) -> dict[str, Any]:
    """A node by public id (``dataset:<ns>:<name>``, ``model_version:12``, …) or number;
    404 when it does not exist or the caller cannot see it."""
    node_id = (node_id or "").strip()
    if not node_id:
        raise Http404("no node id")
    qs = LineageNode.objects.values(*NODE_FIELDS)
    row = None
    if node_id.isdigit():
        row = qs.filter(pk=int(node_id)).first()
    if row is None:
        row = qs.filter(key_hash=key_digest(node_id)).first()
    if row is None or not (viewer or Viewer(access)).can_see(row):
        raise Http404("no such lineage node, or not visible to you")
    return row


# ---------------------------------------------------------------- rendering


def _edge_json(
    viewer: Viewer,
    nodes: dict[int, dict[str, Any]],
    src: int,
    dst: int,
    kind: str,
    detail: dict[str, Any] | None,
) -> dict[str, Any]:
    a, b = nodes[src], nodes[dst]
    out: dict[str, Any] = {"origin": viewer.ref(a), "destination": viewer.ref(b), "kind": kind}
    if kind == EdgeKind.COLUMN and detail and viewer.can_see(a) and viewer.can_see(b):
        out["columns"] = detail
    return out


def _details(edge_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    ids = list(edge_ids)
    if not ids:
        return {}
    return dict(
        LineageEdge.objects.filter(pk__in=ids, kind=EdgeKind.COLUMN).values_list("id", "detail")
    )


def render(viewer: Viewer, sub: Subgraph) -> dict[str, Any]:
    """Nodes (with depth) and edges of a subgraph, hidden ones as placeholders."""
    nodes = load_nodes(sub.depth)
    details = _details(i for i, e in sub.edges.items() if e[2] == EdgeKind.COLUMN)
    return {
        "nodes": [viewer.node(nodes[n], d) for n, d in sorted(sub.depth.items(), key=_by_depth)],
        "edges": [
            _edge_json(viewer, nodes, src, dst, kind, details.get(i))
            for i, (src, dst, kind) in sorted(sub.edges.items())
        ],
        "truncated": sub.truncated,
    }


def _by_depth(item: tuple[int, int]) -> tuple[int, int]:
    return item[1], item[0]


def _clamp(depth: int | None, default: int = DEFAULT_DEPTH) -> int:
    if depth is None:
        return default
    return max(0, min(int(depth), MAX_DEPTH))


# ---------------------------------------------------------------- queries


def neighbourhood(access: Access, node_id: str, depth: int | None = None) -> dict[str, Any]:
    """Marquez-style ``{"graph": [node + inEdges + outEdges]}`` up and down to ``depth``,
    over every edge kind (column lineage and run parents included)."""
    viewer = Viewer(access)
    start = resolve(access, node_id, viewer)
    d = _clamp(depth)
    sub = merge(
        walk([start["id"]], "down", d, kinds=ALL_KINDS),
        walk([start["id"]], "up", d, kinds=ALL_KINDS),
    )
    nodes = load_nodes(sub.depth)
    details = _details(i for i, e in sub.edges.items() if e[2] == EdgeKind.COLUMN)
    ins: dict[int, list[dict[str, Any]]] = {n: [] for n in sub.depth}
    outs: dict[int, list[dict[str, Any]]] = {n: [] for n in sub.depth}
    for i, (src, dst, kind) in sorted(sub.edges.items()):
        edge = _edge_json(viewer, nodes, src, dst, kind, details.get(i))
        outs[src].append(edge)
        ins[dst].append(edge)
    graph = []
    for n, dist in sorted(sub.depth.items(), key=_by_depth):
        entry = viewer.node(nodes[n], dist)
        entry["inEdges"], entry["outEdges"] = ins[n], outs[n]
        graph.append(entry)
    return {"node": viewer.node(start), "depth": d, "graph": graph, "truncated": sub.truncated}


def upstream(access: Access, node_id: str, depth: int | None = None) -> dict[str, Any]:
    """Provenance: everything the node was built from, against the data flow."""
    viewer = Viewer(access)
    start = resolve(access, node_id, viewer)
    d = _clamp(depth)
    sub = walk([start["id"]], "up", d)
    return {"node": viewer.node(start), "depth": d, **render(viewer, sub)}


def downstream(access: Access, node_id: str, depth: int | None = None) -> dict[str, Any]:
    """Everything built from the node, with the data flow."""
    viewer = Viewer(access)
    start = resolve(access, node_id, viewer)
    d = _clamp(depth)
    sub = walk([start["id"]], "down", d)
    return {"node": viewer.node(start), "depth": d, **render(viewer, sub)}


IMPACT_KINDS = (NodeKind.MODEL_VERSION, NodeKind.DEPLOYMENT, NodeKind.USE_CASE)


def impact(access: Access, node_id: str, depth: int | None = None) -> dict[str, Any]:
    """Every model version, deployment and use case downstream, each with a shortest path."""
    viewer = Viewer(access)
    start = resolve(access, node_id, viewer)
    d = _clamp(depth)
    sub = walk([start["id"]], "down", d)
    nodes = load_nodes(sub.depth)
    parents = {child: parent for parent, child in nx.bfs_edges(sub.digraph(), start["id"])}
    affected: dict[str, list[dict[str, Any]]] = {k: [] for k in IMPACT_KINDS}
    counts: dict[str, int] = {}
    for n, dist in sorted(sub.depth.items(), key=_by_depth):
        kind = nodes[n]["kind"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind not in affected or n == start["id"]:
            continue
        path = [n]
        while path[-1] != start["id"]:
            path.append(parents[path[-1]])
        path.reverse()
        entry = viewer.node(nodes[n], dist)
        entry["path"] = [viewer.ref(nodes[p]) for p in path]
        affected[kind].append(entry)
    return {
        "node": viewer.node(start),
        "depth": d,
        "modelVersions": affected[NodeKind.MODEL_VERSION],
        "deployments": affected[NodeKind.DEPLOYMENT],
        "useCases": affected[NodeKind.USE_CASE],
        "counts": counts,
        "truncated": sub.truncated,
    }


def path(access: Access, origin: str, destination: str, depth: int | None = None) -> dict[str, Any]:
    """A shortest path between two nodes, following the data flow from ``origin`` (or
    against it when ``destination`` is upstream). ``found`` is false when none exists
    within ``depth`` steps."""
    viewer = Viewer(access)
    a = resolve(access, origin, viewer)
    b = resolve(access, destination, viewer)
    d = _clamp(depth, MAX_DEPTH)
    result: dict[str, Any] = {"from": viewer.node(a), "to": viewer.node(b), "found": False}
    for direction in ("down", "up"):
        sub = walk([a["id"]], direction, d, stop_at=b["id"])
        if b["id"] not in sub.depth:
            continue
        g = sub.digraph()
        steps = nx.shortest_path(
            g if direction == "down" else g.reverse(copy=False), a["id"], b["id"]
        )
        nodes = load_nodes(steps)
        edges = []
        for x, y in zip(steps, steps[1:], strict=False):
            src, dst = (x, y) if direction == "down" else (y, x)
            for kind in g[src][dst]["kinds"]:
                edges.append(_edge_json(viewer, nodes, src, dst, kind, None))
        result.update(
            found=True,
            direction="downstream" if direction == "down" else "upstream",
            length=len(steps) - 1,
            nodes=[viewer.node(nodes[n]) for n in steps],
            edges=edges,
        )
        break
    return result


PRODUCTION_KINDS = (
    EdgeKind.DEPLOYED_AS.value,
    EdgeKind.TRAINED_ON.value,
    EdgeKind.VALIDATED_ON.value,
    EdgeKind.TESTED_ON.value,
)


def live_at(node: dict[str, Any], at: datetime) -> tuple[str, str | None] | None:
    """The live interval of a deployment node containing ``at``, if any."""
    from django.utils.dateparse import parse_datetime

    for start, end in (node["attrs"] or {}).get("live", []):
        s = parse_datetime(start)
        e = parse_datetime(end) if end else None
        if s is not None and s <= at and (e is None or at < e):
            return start, end
    return None


def production_at(
    access: Access, at: datetime, environment: str = "production", depth: int = 1
) -> dict[str, Any]:
    """Deployments live in ``environment`` at ``at`` (that the caller may see), each with
    its model version and the datasets it was trained, validated and tested on as
    recorded at that time; ``depth`` > 1 adds their provenance to that depth."""
    viewer = Viewer(access)
    candidates = access.filter(
        LineageNode.objects.filter(kind=NodeKind.DEPLOYMENT, valid_from__lte=at)
        .filter(Q(valid_to=None) | Q(valid_to__gt=at))
        .filter(attrs__environment=environment)
        .order_by("valid_from", "id")
        .values(*NODE_FIELDS)
    )
    out = []
    for dep in candidates:
        span = live_at(dep, at)
        if span is None:
            continue
        sub = walk([dep["id"]], "up", 2, kinds=PRODUCTION_KINDS, at=at)
        nodes = load_nodes(sub.depth)
        versions = [
            n for n, dist in sub.depth.items() if dist == 1 and nodes[n]["kind"] == "model_version"
        ]
        entry: dict[str, Any] = {
            "deployment": viewer.node(dep),
            "liveFrom": span[0],
            "liveUntil": span[1],
            "modelVersion": viewer.node(nodes[versions[0]]) if versions else None,
        }
        for kind, name in (
            (EdgeKind.TRAINED_ON, "trainedOn"),
            (EdgeKind.VALIDATED_ON, "validatedOn"),
            (EdgeKind.TESTED_ON, "testedOn"),
        ):
            entry[name] = [
                viewer.node(nodes[src])
                for src, dst, k in sorted(sub.edges.values())
                if k == kind and dst in versions
            ]
        if depth > 1 and versions:
            deeper = walk(versions, "up", _clamp(depth), at=at)
            entry["upstream"] = render(viewer, deeper)
        out.append(entry)
    return {"at": at.isoformat(), "environment": environment, "deployments": out}
