"""The data-flow graph held in memory, per process, and kept exactly current.

Each process (gunicorn worker) loads the live data-flow edges once into compact
CSR arrays (numpy: about 16 bytes per edge and per direction, so some 10 MB for
300,000 edges) and walks them breadth-first in vectorised steps. Before each
query it reads ``lineage_graphchange`` past the last change it applied (one
indexed query that usually returns nothing): added edges are fetched by the
writing transaction's id (``tx``) into a small overflow adjacency; a removal or
deletion, a gap left by pruning, or an overflow grown past ``REBUILD_AFTER``
edges reloads the whole graph. The log is written in commit order (see
migration 0005), so a query sees every edge committed before it started.

Used only on PostgreSQL, outside an open transaction (where the walk must see
the transaction's own uncommitted writes) and for walks over live data-flow
edges; everything else walks in SQL (:func:`lineage.graph.walk`).
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connection, transaction

from lineage.models import FLOW_KINDS, EdgeKind, NodeKind

EDGE_CODES = {k.value: i for i, k in enumerate(EdgeKind)}
EDGE_NAMES = [k.value for k in EdgeKind]
NODE_CODES = {k.value: i for i, k in enumerate(NodeKind)}
NODE_NAMES = [k.value for k in NodeKind]
REBUILD_AFTER = 50_000
PRUNE_AFTER_S = 600

_LOAD_EDGES = """
SELECT e.src_id, e.dst_id, e.kind FROM lineage_lineageedge e
WHERE e.removed_at IS NULL AND e.kind = ANY(%s)
"""
_NEW_EDGES = """
SELECT e.src_id, e.dst_id, e.kind FROM lineage_lineageedge e
WHERE e.tx = ANY(%s) AND e.removed_at IS NULL AND e.kind = ANY(%s)
"""


@dataclass
class _CSR:
    indptr: np.ndarray
    indices: np.ndarray
    kinds: np.ndarray


def _csr(n: int, src: np.ndarray, dst: np.ndarray, kinds: np.ndarray) -> _CSR:
    order = np.lexsort((dst, src))
    counts = np.bincount(src, minlength=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return _CSR(indptr, dst[order].astype(np.int32), kinds[order].astype(np.int8))


@dataclass
class Reach:
    """A walk's result: node ids with their depth and BFS parent (-1 for starts), in
    discovery order; edges (src, dst, kind) when asked for; node kinds and use cases."""

    ids: np.ndarray
    depths: np.ndarray
    parents: np.ndarray
    kinds: np.ndarray
    use_cases: np.ndarray
    edges: set[tuple[int, int, str]] | None = None
    truncated: bool = False


@dataclass
class FlowGraph:
    seq: int
    ids: np.ndarray  # node ids, sorted: position = dense index
    node_kind: np.ndarray
    node_uc: np.ndarray  # 0: no use case
    down: _CSR
    up: _CSR
    extra: dict[str, dict[int, list[tuple[int, int]]]] = field(
        default_factory=lambda: {"down": {}, "up": {}}
    )
    extra_edges: int = 0
    extra_ids: list[int] = field(default_factory=list)
    extra_index: dict[int, int] = field(default_factory=dict)
    extra_kind: list[int] = field(default_factory=list)
    extra_uc: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # public node ids, dense order
    loaded_at: float = field(default_factory=time.monotonic)  # or last pruned

    # -- loading ----------------------------------------------------------
    @classmethod
    def load(cls) -> FlowGraph:
        """Read the whole graph in one consistent snapshot."""
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT coalesce(max(seq), 0) FROM lineage_graphchange")
            seq = cur.fetchone()[0]
            cur.execute("SELECT id, kind, coalesce(use_case_id, 0), key FROM lineage_lineagenode")
            nodes = cur.fetchall()
            cur.execute(_LOAD_EDGES, [list(FLOW_KINDS)])
            edges = cur.fetchall()
        _prune(seq)
        nodes.sort()
        ids = np.fromiter((r[0] for r in nodes), dtype=np.int64, count=len(nodes))
        node_kind = np.fromiter((NODE_CODES[r[1]] for r in nodes), dtype=np.int8, count=len(nodes))
        node_uc = np.fromiter((r[2] for r in nodes), dtype=np.int64, count=len(nodes))
        n = len(ids)
        src = np.searchsorted(ids, np.fromiter((e[0] for e in edges), np.int64, len(edges)))
        dst = np.searchsorted(ids, np.fromiter((e[1] for e in edges), np.int64, len(edges)))
        kinds = np.fromiter((EDGE_CODES[e[2]] for e in edges), np.int8, len(edges))
        graph = cls(
            seq, ids, node_kind, node_uc, _csr(n, src, dst, kinds), _csr(n, dst, src, kinds)
        )
        graph.keys = [r[3] for r in nodes]
        _freeze_once()
        return graph

    def index_of(self, node_ids: list[int] | np.ndarray) -> np.ndarray:
        """Dense indices (overflow nodes after the base ones; -1 when unknown)."""
        arr = np.asarray(node_ids, dtype=np.int64)
        out = np.full(arr.shape, -1, dtype=np.int64)
        if len(self.ids):
            pos = np.minimum(np.searchsorted(self.ids, arr), len(self.ids) - 1)
            hit = self.ids[pos] == arr
            out[hit] = pos[hit]
        if self.extra_index:
            for i in np.nonzero(out < 0)[0]:
                out[i] = self.extra_index.get(int(arr[i]), -1)
        return out

    def _id_of(self, index: np.ndarray) -> np.ndarray:
        n = len(self.ids)
        if not self.extra_ids:
            return self.ids[index]
        extra = np.asarray(self.extra_ids, dtype=np.int64)
        base = np.where(index < n, index, 0)
        return np.where(index < n, self.ids[base], extra[np.maximum(index - n, 0)])

    def _meta(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.ids)
        if not self.extra_ids:
            return self.node_kind[index], self.node_uc[index]
        base = np.where(index < n, index, 0)
        ek = np.asarray(self.extra_kind, dtype=np.int8)
        eu = np.asarray(self.extra_uc, dtype=np.int64)
        off = np.maximum(index - n, 0)
        return (
            np.where(index < n, self.node_kind[base], ek[off]),
            np.where(index < n, self.node_uc[base], eu[off]),
        )

    def _add_node(self, node: int, kind: str, uc: int, key: str) -> int:
        index = len(self.ids) + len(self.extra_ids)
        self.keys.append(key)
        self.extra_ids.append(node)
        self.extra_kind.append(NODE_CODES[kind])
        self.extra_uc.append(uc)
        self.extra_index[node] = index
        return index

    def apply(self, txs: list[int]) -> None:
        """Add the edges the given transactions inserted to the overflow adjacency."""
        with connection.cursor() as cur:
            cur.execute(_NEW_EDGES, [txs, list(FLOW_KINDS)])
            rows = cur.fetchall()
            ends = {e[0] for e in rows} | {e[1] for e in rows}
            unknown = [n for n in ends if self.index_of([n])[0] < 0]
            if unknown:
                cur.execute(
                    "SELECT id, kind, coalesce(use_case_id, 0), key FROM lineage_lineagenode "
                    "WHERE id = ANY(%s)",
                    [unknown],
                )
                for node, kind, uc, key in cur.fetchall():
                    self._add_node(node, kind, uc, key)
        for src, dst, kind in rows:
            s, d = self.index_of([src, dst])
            code = EDGE_CODES[kind]
            self.extra["down"].setdefault(int(s), []).append((int(d), code))
            self.extra["up"].setdefault(int(d), []).append((int(s), code))
        self.extra_edges += len(rows)

    def refs(self, node_ids: list[int]) -> dict[int, dict[str, Any]]:
        """id, key, kind and use case of nodes, from memory."""
        index = self.index_of(node_ids)
        kinds, ucs = self._meta(np.maximum(index, 0))
        out = {}
        for node, i, k, u in zip(
            node_ids, index.tolist(), kinds.tolist(), ucs.tolist(), strict=True
        ):
            if i >= 0:
                out[node] = {"id": node, "key": self.keys[i], "kind": NODE_NAMES[k],
                             "use_case_id": u or None}  # fmt: skip
        return out

    # -- walking ----------------------------------------------------------
    def walk(
        self,
        start: list[int],
        direction: str,
        depth: int,
        kinds: tuple[str, ...],
        *,
        max_nodes: int,
        stop_at: int | None = None,
        with_edges: bool = True,
    ) -> Reach:
        csr = self.down if direction == "down" else self.up
        extra = self.extra[direction]
        n_total = len(self.ids) + len(self.extra_ids)
        allowed = np.zeros(len(EDGE_NAMES), dtype=bool)
        allowed[[EDGE_CODES[k] for k in kinds]] = True
        level = np.full(n_total, -1, dtype=np.int32)
        parent = np.full(n_total, -1, dtype=np.int64)
        starts = self.index_of(start)
        starts = starts[starts >= 0]
        level[starts] = 0
        found = [starts]
        frontier = starts
        reached = len(starts)
        truncated = False
        stop = None if stop_at is None else int(self.index_of([stop_at])[0])
        edge_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        n = len(self.ids)
        for step in range(1, depth + 1):
            if frontier.size == 0:
                break
            base = frontier[frontier < n]
            lo, hi = csr.indptr[base], csr.indptr[base + 1]
            counts = hi - lo
            total = int(counts.sum())
            src = np.repeat(base, counts)
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            pos = np.repeat(lo, counts) + offsets
            dst = csr.indices[pos].astype(np.int64)
            kind = csr.kinds[pos]
            if extra:
                more = [(f, d, k) for f in frontier.tolist() for d, k in extra.get(f, ())]
                if more:
                    src = np.concatenate([src, np.fromiter((m[0] for m in more), np.int64)])
                    dst = np.concatenate([dst, np.fromiter((m[1] for m in more), np.int64)])
                    kind = np.concatenate([kind, np.fromiter((m[2] for m in more), np.int8)])
            keep = allowed[kind]
            src, dst, kind = src[keep], dst[keep], kind[keep]
            new = level[dst] < 0
            cand_dst, cand_src = dst[new], src[new]
            order = np.lexsort((cand_src, cand_dst))
            cand_dst, cand_src = cand_dst[order], cand_src[order]
            fresh, first = np.unique(cand_dst, return_index=True)
            if reached + fresh.size > max_nodes:
                truncated = True
                fresh, first = fresh[: max_nodes - reached], first[: max_nodes - reached]
            level[fresh] = step
            parent[fresh] = cand_src[first]
            reached += fresh.size
            found.append(fresh)
            if with_edges:
                seen = level[dst] >= 0
                edge_parts.append((src[seen], dst[seen], kind[seen]))
            frontier = fresh
            if stop is not None and stop >= 0 and level[stop] >= 0:
                break
        order_idx = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        ids = self._id_of(order_idx)
        parents_idx = parent[order_idx]
        parent_ids = np.where(parents_idx >= 0, self._id_of(np.maximum(parents_idx, 0)), -1)
        node_kind, node_uc = self._meta(order_idx)
        edges = None
        if with_edges:
            edges = set()
            for s, d, k in edge_parts:
                if s.size:
                    a, b = self._id_of(s), self._id_of(d)
                    if direction == "up":
                        a, b = b, a
                    edges.update(
                        zip(
                            a.tolist(), b.tolist(), (EDGE_NAMES[c] for c in k.tolist()), strict=True
                        )
                    )
        return Reach(ids, level[order_idx], parent_ids, node_kind, node_uc, edges, truncated)


_frozen = False


def _freeze_once() -> None:
    """Move what the process holds by now (Django, the graph) out of the garbage collector's
    scans (``gc.freeze``): large answers allocate enough to trigger full collections, whose
    pauses over this long-lived heap doubled the p95 of the largest impact answers."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def _prune(seq: int) -> None:
    """Drop log rows older than a while, keeping the newest (a gap then means: reload)."""
    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM lineage_graphchange WHERE seq < %s "
            "AND created_at < now() - make_interval(secs => %s)",
            [seq, PRUNE_AFTER_S],
        )


_lock = threading.Lock()
_graph: FlowGraph | None = None


def usable() -> bool:
    """True when the in-memory graph may answer: PostgreSQL, outside any transaction."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def current() -> FlowGraph:
    """This process's graph, brought up to the last committed change."""
    global _graph
    with _lock:
        graph = _graph
        if graph is None:
            graph = _graph = FlowGraph.load()
            return graph
        with connection.cursor() as cur:
            # The changes after ours, plus the newest one (a log that went backwards
            # means a restored or reset database: reload).
            cur.execute(
                'SELECT seq, tx, "full" FROM lineage_graphchange WHERE seq > %s '
                "OR seq = (SELECT max(seq) FROM lineage_graphchange) ORDER BY seq",
                [graph.seq],
            )
            rows = cur.fetchall()
            newest = rows[-1][0] if rows else 0
            rows = [r for r in rows if r[0] > graph.seq]
            if not rows and newest == graph.seq:
                return graph
            cur.execute("SELECT min(seq) FROM lineage_graphchange")
            oldest = cur.fetchone()[0]
        gap = oldest is not None and oldest > graph.seq + 1  # pruned past us: reload
        if not rows or gap or any(r[2] for r in rows) or graph.extra_edges > REBUILD_AFTER:
            graph = _graph = FlowGraph.load()
            return graph
        graph.apply([r[1] for r in rows])
        graph.seq = rows[-1][0]
        if time.monotonic() - graph.loaded_at > PRUNE_AFTER_S:
            _prune(graph.seq)
            graph.loaded_at = time.monotonic()
        return graph


def reset() -> None:
    """Forget the in-memory graph (tests that recreate the database)."""
    global _graph
    with _lock:
        _graph = None


def stats() -> dict[str, Any]:
    graph = _graph
    if graph is None:
        return {"loaded": False}
    return {
        "loaded": True,
        "seq": graph.seq,
        "nodes": len(graph.ids) + len(graph.extra_ids),
        "edges": int(graph.down.indptr[-1]) + graph.extra_edges,
        "bytes": sum(
            a.nbytes for c in (graph.down, graph.up) for a in (c.indptr, c.indices, c.kinds)
        )
        + graph.ids.nbytes
        + graph.node_kind.nbytes
        + graph.node_uc.nbytes,
    }
