"""Graph queries: neighbourhood, upstream, downstream/impact, path, production at time T.

Where the graph lives (docs/lineage.md has the measurements behind the choice):
walks over live data-flow edges (upstream, downstream, impact, path) run on an
in-memory copy of the flow graph in each process (:mod:`lineage.cache`), kept
current through a commit-ordered change log, so an answer includes every commit
before the query. Walks the copy cannot answer (all edge kinds for the
neighbourhood, the graph as of a past time, SQLite, inside an open transaction)
run in SQL: one indexed statement per level of a breadth-first walk
(``src_id = ANY(frontier)`` on the live-edge indexes), never past the requested
depth. Either way the BFS tree gives each node's depth and a shortest path from
the start; networkx finds paths between two nodes on the walked subgraph.

Permissions: the walk goes through every node, but nodes whose use case the
caller cannot see come out as placeholders (kind kept, id and name replaced by
an opaque token that is stable within one response only), so the shape of the
graph shows without revealing what is hidden. A starting node the caller
cannot see is a 404.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import networkx as nx
import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.http import Http404

from lineage import cache
from lineage.models import FLOW_KINDS, EdgeKind, LineageEdge, LineageNode, NodeKind, key_digest
from portal.permissions import Access

DEFAULT_DEPTH = 20
MAX_DEPTH = 100
MAX_NODES = 20_000  # nodes in an upstream/downstream answer (``truncated`` beyond)
MAX_IMPACT_NODES = 1_000_000  # impact answers with targets only: walk (nearly) everything
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
    """What a walk found: node depths and the edges (src, dst, kind) it crossed."""

    start: list[int]
    depth: dict[int, int] = field(default_factory=dict)
    edges: set[tuple[int, int, str]] = field(default_factory=set)
    truncated: bool = False
    parent: dict[int, int] = field(default_factory=dict)  # BFS tree: smallest-id parent
    # From the in-memory graph: node ids, kind codes, depths and parents in discovery
    # order, and the graph (``depth``/``parent`` stay empty for a ``lazy`` walk).
    id_array: Any = None
    kind_array: Any = None
    depth_array: Any = None
    parent_array: Any = None
    flow: Any = None

    def tree(self, nodes: Iterable[int]) -> tuple[dict[int, int], dict[int, int]]:
        """Depth and BFS parent of ``nodes`` and of every node on their paths to the start."""
        if self.depth or self.id_array is None:
            return self.depth, self.parent
        order = np.argsort(self.id_array)
        ordered = self.id_array[order]
        depth: dict[int, int] = {}
        parent: dict[int, int] = {}
        todo = np.unique(np.fromiter(nodes, dtype=np.int64))
        while todo.size:
            pos = order[np.searchsorted(ordered, todo)]
            ups = self.parent_array[pos]
            for node, d, up in zip(
                todo.tolist(), self.depth_array[pos].tolist(), ups.tolist(), strict=True
            ):
                depth[node], parent[node] = d, up
            todo = np.unique(ups[ups >= 0])
            todo = todo[[n not in depth for n in todo.tolist()]] if todo.size else todo
        return depth, parent

    def digraph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(self.depth)
        for src, dst, kind in self.edges:
            if g.has_edge(src, dst):
                g[src][dst]["kinds"].append(kind)
            else:
                g.add_edge(src, dst, kinds=[kind])
        return g


# ``{column}`` is src_id or dst_id and ``{time}`` one of two fixed clauses.
_SELECT_EDGES = (
    "SELECT src_id, dst_id, kind FROM lineage_lineageedge "
    "WHERE {column} = ANY(%s) AND kind = ANY(%s) AND {time}"
)


def _edge_sql(column: str, at: datetime | None) -> str:
    time = "removed_at IS NULL"
    if at is not None:
        time = "(kind = ANY(%s) OR (created_at <= %s AND (removed_at IS NULL OR removed_at > %s)))"
    return _SELECT_EDGES.format(column=column, time=time)


def _edges_from(
    frontier: list[int], direction: str, kinds: Iterable[str], at: datetime | None
) -> list[tuple[int, int, str]]:
    column = "src_id" if direction == "down" else "dst_id"
    kinds = list(kinds)
    if connection.vendor == "postgresql":
        params: list[Any] = [frontier, kinds]
        if at is not None:
            params += [list(TIMELESS_KINDS), at, at]
        with connection.cursor() as cursor:
            cursor.execute(_edge_sql(column, at), params)
            return cursor.fetchall()
    rows: list[tuple[int, int, str]] = []
    for i in range(0, len(frontier), 500):
        qs = LineageEdge.objects.filter(**{f"{column}__in": frontier[i : i + 500]}, kind__in=kinds)
        if at is None:
            qs = qs.filter(removed_at=None)
        else:
            qs = qs.filter(
                Q(kind__in=TIMELESS_KINDS)
                | (Q(created_at__lte=at) & (Q(removed_at=None) | Q(removed_at__gt=at)))
            )
        rows += list(qs.values_list("src_id", "dst_id", "kind"))
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
        rows = _edges_from(frontier, direction, kinds, at)
        # Each new node's BFS parent: the smallest frontier id leading to it.
        rows.sort(key=lambda r: (r[1], r[0]) if direction == "down" else (r[0], r[1]))
        for src, dst, kind in rows:
            here, other = (src, dst) if direction == "down" else (dst, src)
            if other not in sub.depth:
                if len(sub.depth) >= max_nodes:
                    sub.truncated = True
                    continue
                sub.depth[other] = level
                sub.parent[other] = here
                nxt.append(other)
            sub.edges.add((src, dst, kind))
        frontier = nxt
        if stop_at is not None and stop_at in sub.depth:
            break
    return sub


def reach(
    start: list[int],
    direction: str,
    depth: int,
    *,
    kinds: Iterable[str] = FLOW_KINDS,
    at: datetime | None = None,
    max_nodes: int = MAX_NODES,
    stop_at: int | None = None,
    with_edges: bool = True,
    lazy: bool = False,
) -> Subgraph:
    """A walk from the in-memory graph when it can answer (:func:`lineage.cache.usable`,
    live data-flow edges), else in SQL (:func:`walk`). Both give the same answer.
    ``lazy``: leave ``depth``/``parent`` to :meth:`Subgraph.tree` (in-memory walks)."""
    kinds = tuple(kinds)
    if at is None and set(kinds) <= set(FLOW_KINDS) and cache.usable():
        found = cache.current().walk(
            start, direction, depth, kinds, max_nodes=max_nodes, stop_at=stop_at,
            with_edges=with_edges,
        )  # fmt: skip
        sub = Subgraph(
            start=start,
            edges=found.edges or set(),
            truncated=found.truncated,
            id_array=found.ids,
            kind_array=found.kinds,
            depth_array=found.depths,
            parent_array=found.parents,
            flow=cache.current(),
        )
        if not lazy:
            ids = found.ids.tolist()
            sub.depth = dict(zip(ids, found.depths.tolist(), strict=True))
            sub.parent = dict(zip(ids, found.parents.tolist(), strict=True))
        return sub
    return walk(start, direction, depth, kinds=kinds, at=at, max_nodes=max_nodes, stop_at=stop_at)


def merge(*subs: Subgraph) -> Subgraph:
    out = Subgraph(start=subs[0].start)
    for sub in subs:
        for node, d in sub.depth.items():
            out.depth[node] = min(d, out.depth.get(node, d))
        out.edges |= sub.edges
        out.truncated = out.truncated or sub.truncated
    return out


def _select_nodes(columns: tuple[str, ...], ids: list[int]) -> list[tuple[Any, ...]]:
    """Rows of nodes by id: one ``= ANY(array)`` statement on PostgreSQL (an ``IN`` list of
    thousands of parameters costs more to build than to run)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_SELECT_NODES.format(columns=", ".join(columns)), [ids])
            return cursor.fetchall()
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(ids), 500):
        qs = LineageNode.objects.filter(pk__in=ids[i : i + 500])
        rows += list(qs.values_list(*columns))
    return rows


# ``{columns}``: names from NODE_FIELDS only.
_SELECT_NODES = "SELECT {columns} FROM lineage_lineagenode WHERE id = ANY(%s)"


def load_nodes(ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Whole nodes by id, as dicts of NODE_FIELDS."""
    out: dict[int, dict[str, Any]] = {}
    for row in _select_nodes(NODE_FIELDS, list(ids)):
        node = dict(zip(NODE_FIELDS, row, strict=True))
        if isinstance(node["attrs"], str):  # raw PostgreSQL rows keep jsonb as text
            node["attrs"] = json.loads(node["attrs"])
        out[node["id"]] = node
    return out


def load_refs(ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Just what a reference to a node needs: id, key, kind, use case."""
    fields = ("id", "key", "kind", "use_case_id")
    return {row[0]: dict(zip(fields, row, strict=True)) for row in _select_nodes(fields, list(ids))}


def kinds_reached(sub: Subgraph) -> tuple[dict[str, int], dict[int, str]]:
    """How many nodes of each kind a walk reached, and the kind of each impact target."""
    if sub.kind_array is not None:
        codes = sub.kind_array
        tally = np.bincount(codes, minlength=len(cache.NODE_NAMES)).tolist()
        counts = {cache.NODE_NAMES[c]: n for c, n in enumerate(tally) if n}
        wanted = [cache.NODE_CODES[k] for k in IMPACT_KINDS]
        mask = np.isin(codes, wanted)
        ids, kinds = sub.id_array[mask].tolist(), codes[mask].tolist()
        return counts, {n: cache.NODE_NAMES[k] for n, k in zip(ids, kinds, strict=True)}
    counts: dict[str, int] = {}
    targets: dict[int, str] = {}
    for pk, kind in _select_nodes(("id", "kind"), list(sub.depth)):
        counts[kind] = counts.get(kind, 0) + 1
        if kind in IMPACT_KINDS:
            targets[pk] = kind
    return counts, targets


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


def _details(edges: Iterable[tuple[int, int, str]]) -> dict[tuple[int, int], dict[str, Any]]:
    """Column lineage detail of the column edges among ``edges``."""
    pairs = {(src, dst) for src, dst, kind in edges if kind == EdgeKind.COLUMN}
    if not pairs:
        return {}
    rows = LineageEdge.objects.filter(
        kind=EdgeKind.COLUMN, removed_at=None, src_id__in={p[0] for p in pairs}
    ).values_list("src_id", "dst_id", "detail")
    return {(src, dst): detail for src, dst, detail in rows if (src, dst) in pairs}


def render(viewer: Viewer, sub: Subgraph) -> dict[str, Any]:
    """Nodes (with depth) and edges of a subgraph, hidden ones as placeholders."""
    nodes = load_nodes(sub.depth)
    details = _details(sub.edges)
    return {
        "nodes": [viewer.node(nodes[n], d) for n, d in sorted(sub.depth.items(), key=_by_depth)],
        "edges": [
            _edge_json(viewer, nodes, src, dst, kind, details.get((src, dst)))
            for src, dst, kind in sorted(sub.edges)
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
    details = _details(sub.edges)
    ins: dict[int, list[dict[str, Any]]] = {n: [] for n in sub.depth}
    outs: dict[int, list[dict[str, Any]]] = {n: [] for n in sub.depth}
    for src, dst, kind in sorted(sub.edges):
        edge = _edge_json(viewer, nodes, src, dst, kind, details.get((src, dst)))
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
    sub = reach([start["id"]], "up", d)
    return {"node": viewer.node(start), "depth": d, **render(viewer, sub)}


def downstream(access: Access, node_id: str, depth: int | None = None) -> dict[str, Any]:
    """Everything built from the node, with the data flow."""
    viewer = Viewer(access)
    start = resolve(access, node_id, viewer)
    d = _clamp(depth)
    sub = reach([start["id"]], "down", d)
    return {"node": viewer.node(start), "depth": d, **render(viewer, sub)}


IMPACT_KINDS = (NodeKind.MODEL_VERSION, NodeKind.DEPLOYMENT, NodeKind.USE_CASE)


def impact(
    access: Access,
    node_id: str,
    depth: int | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """Every model version, deployment and use case downstream, each with a shortest path.

    Targets are ordered by distance, then node number, within each kind. ``limit`` and
    ``offset`` page each kind's list (``None``: all of it); ``counts`` and ``total`` always
    cover the whole reach, and ``complete`` says whether this answer lists every target.
    """
    viewer = Viewer(access)
    start = resolve(access, node_id, viewer)
    d = _clamp(depth)
    sub = reach([start["id"]], "down", d, with_edges=False, max_nodes=MAX_IMPACT_NODES, lazy=True)
    counts, kinds = kinds_reached(sub)
    counts = {k.value: counts[k.value] for k in NodeKind if k.value in counts}
    every = [n for n in kinds if n != start["id"]]
    depth_of, parent_of = sub.tree(every)  # the BFS tree: a shortest path to each node
    total = {k.value: 0 for k in IMPACT_KINDS}
    for n in every:
        total[kinds[n]] += 1
    if limit is None and not offset:
        targets = every
    else:
        by_kind: dict[str, list[int]] = {k: [] for k in IMPACT_KINDS}
        for n in sorted(every, key=lambda t: (depth_of[t], t)):
            by_kind[kinds[n]].append(n)
        end = None if limit is None else offset + limit
        targets = [n for ns in by_kind.values() for n in ns[offset:end]]
    on_paths: set[int] = set()
    for n in targets:
        while n != start["id"] and n not in on_paths:
            on_paths.add(n)
            n = parent_of[n]
    between = [n for n in on_paths if n not in kinds]
    refs = sub.flow.refs(between) if sub.flow is not None else load_refs(between)
    full = load_nodes(targets)
    refs.update(full)
    shown = {n: viewer.ref(row) for n, row in refs.items()}
    paths: dict[int, list[str]] = {start["id"]: [viewer.ref(start)]}

    def path_to(n: int) -> list[str]:
        trail = []
        while n not in paths:
            trail.append(n)
            n = parent_of[n]
        for m in reversed(trail):
            paths[m] = [*paths[parent_of[m]], shown[m]]
        return paths[trail[0]] if trail else paths[n]

    affected: dict[str, list[dict[str, Any]]] = {k: [] for k in IMPACT_KINDS}
    for n in sorted(targets, key=lambda t: (depth_of[t], t)):
        entry = viewer.node(full[n], depth_of[n])
        entry["path"] = path_to(n)
        affected[full[n]["kind"]].append(entry)
    return {
        "node": viewer.node(start),
        "depth": d,
        "modelVersions": affected[NodeKind.MODEL_VERSION],
        "deployments": affected[NodeKind.DEPLOYMENT],
        "useCases": affected[NodeKind.USE_CASE],
        "counts": counts,
        "total": total,
        "offset": offset,
        "limit": limit,
        "complete": len(targets) == len(every),
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
        sub = reach([a["id"]], direction, d, stop_at=b["id"])
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
                for src, dst, k in sorted(sub.edges)
                if k == kind and dst in versions
            ]
        if depth > 1 and versions:
            deeper = walk(versions, "up", _clamp(depth), at=at)
            entry["upstream"] = render(viewer, deeper)
        out.append(entry)
    return {"at": at.isoformat(), "environment": environment, "deployments": out}
