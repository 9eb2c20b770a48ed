"""Lineage pages: an interactive layered graph (plotly) and impact analysis.

The graph comes from lineage.graph (the same queries as the API, with the same
redaction: nodes of use cases the viewer may not see are grey placeholders that
keep the graph's shape). Governance status on hover: the latest approval and the
signature of model versions, the status and open incidents of deployments.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import networkx as nx
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from approvals.models import ApprovalRequest
from lineage import graph
from lineage.models import LineageNode
from portal.jsonutil import script_json
from portal.permissions import Access
from registry.models import Deployment, ModelVersion
from registry.signing import signature_status
from workers.models import Incident

MAX_SHOWN = 250  # beyond this, the least central nodes of a layer collapse into one marker
STYLE = {
    "dataset": ("circle", "#7f8c9b"),
    "job": ("square", "#b9770e"),
    "run": ("diamond", "#d4ac0d"),
    "dataset_version": ("circle", "#2e86c1"),
    "model_version": ("hexagon", "#7d3c98"),
    "deployment": ("star", "#1e8449"),
    "use_case": ("triangle-up", "#c0392b"),
}
URLS = {
    "dataset_version": "datasetversion-detail",
    "model_version": "modelversion-detail",
    "deployment": "deployment-detail",
    "use_case": "usecase-detail",
}


def _url(node: dict[str, Any]) -> str:
    name = URLS.get(node["kind"])
    if name is None or node.get("redacted") or not node.get("objectId"):
        return ""
    try:
        return reverse(name, args=[node["objectId"]])
    except NoReverseMatch:
        return ""


def governance(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """Hover lines of governance status per node id (visible registry nodes only)."""
    mv_ids = {
        int(n["objectId"]): n["id"]
        for n in nodes
        if n["kind"] == "model_version" and not n.get("redacted") and n.get("objectId")
    }
    dep_ids = {
        int(n["objectId"]): n["id"]
        for n in nodes
        if n["kind"] == "deployment" and not n.get("redacted") and n.get("objectId")
    }
    out: dict[str, str] = {}
    if mv_ids:
        latest: dict[int, str] = {}
        for req in ApprovalRequest.objects.filter(model_version_id__in=mv_ids).order_by(
            "created_at"
        ):
            latest[req.model_version_id] = f"{req.state} for {req.environment}"
        for mv in ModelVersion.objects.filter(pk__in=mv_ids).prefetch_related(
            "artifacts__attestations"
        ):
            sig = "unsigned"
            statuses = [signature_status(a.attestations.all()) for a in mv.artifacts.all()]
            if statuses:
                sig = "verified" if all(s == "verified" for s in statuses) else "not verified"
            out[mv_ids[mv.pk]] = (
                f"status: {mv.status}<br>approval: {latest.get(mv.pk, 'none')}<br>signature: {sig}"
            )
    if dep_ids:
        open_by_dep: dict[int, int] = defaultdict(int)
        for dep_id in Incident.objects.filter(
            deployment_id__in=dep_ids, closed_at__isnull=True
        ).values_list("deployment_id", flat=True):
            open_by_dep[dep_id] += 1
        for d in Deployment.objects.filter(pk__in=dep_ids):
            drift = (
                f"{open_by_dep[d.pk]} open incident(s)" if open_by_dep[d.pk] else "no open incident"
            )
            out[dep_ids[d.pk]] = f"{d.environment}, {d.status}<br>monitoring: {drift}"
    return out


def layout(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]]
) -> dict[str, tuple[float, float]]:
    """Left-to-right layers: each node one step right of everything it depends on."""
    g = nx.DiGraph()
    g.add_nodes_from(n["id"] for n in nodes)
    g.add_edges_from(
        (e["origin"], e["destination"]) for e in edges if e["origin"] != e["destination"]
    )
    dag = nx.condensation(g)  # cycles (rare) collapse into one layer
    members = dag.graph["mapping"]
    layer_of_component: dict[int, int] = {}
    for i, generation in enumerate(nx.topological_generations(dag)):
        for c in generation:
            layer_of_component[c] = i
    layers: dict[int, list[str]] = defaultdict(list)
    for n in g.nodes:
        layers[layer_of_component[members[n]]].append(n)
    pos = {}
    for x, names in layers.items():
        names.sort(key=lambda n: (-g.degree(n), n))
        span = len(names)
        for i, n in enumerate(names):
            pos[n] = (float(x), (span - 1) / 2 - i)
    return pos


def collapse(
    nodes: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    pos: dict[str, tuple[float, float]],
    keep: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Above MAX_SHOWN nodes, keep the best-connected of each layer and fold the rest of
    each (layer, kind) into one "+N more" marker, so a few hundred nodes stay readable."""
    if len(nodes) <= MAX_SHOWN:
        return nodes, edges
    degree: dict[str, int] = defaultdict(int)
    for e in edges:
        degree[e["origin"]] += 1
        degree[e["destination"]] += 1
    by_layer: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for n in nodes:
        by_layer[pos[n["id"]][0]].append(n)
    per_layer = max(3, MAX_SHOWN // max(1, len(by_layer)))
    alias: dict[str, str] = {}
    shown: list[dict[str, Any]] = []
    for x, members in by_layer.items():
        members.sort(key=lambda n: (n["id"] != keep, -degree[n["id"]], n["id"]))
        shown += members[:per_layer]
        rest: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for n in members[per_layer:]:
            rest[n["kind"]].append(n)
        for kind, group in rest.items():
            cid = f"cluster:{x}:{kind}"
            shown.append(
                {
                    "id": cid,
                    "kind": kind,
                    "label": f"+{len(group)} more {kind.replace('_', ' ')}",
                    "cluster": len(group),
                }
            )
            for n in group:
                alias[n["id"]] = cid
    seen = set()
    folded = []
    for e in edges:
        a, b = alias.get(e["origin"], e["origin"]), alias.get(e["destination"], e["destination"])
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            folded.append({**e, "origin": a, "destination": b})
    return shown, folded


def figure(data: dict[str, Any], focus: str) -> dict[str, Any]:
    nodes, edges = data["nodes"], data["edges"]
    pos = layout(nodes, edges)
    nodes, edges = collapse(nodes, edges, pos, focus)
    pos = layout(nodes, edges)
    status = governance(nodes)
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for e in edges:
        (x0, y0), (x1, y1) = pos[e["origin"]], pos[e["destination"]]
        edge_x += [x0, x1, None]
        edge_y += [y0, y1, None]
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": edge_x,
            "y": edge_y,
            "hoverinfo": "skip",
            "line": {"width": 1, "color": "#b8c2cc"},
            "showlegend": False,
        }
    ]
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in nodes:
        by_kind["hidden" if n.get("redacted") else n["kind"]].append(n)
    for kind, group in sorted(by_kind.items()):
        symbol, colour = STYLE.get(kind, ("circle-open", "#aab4be"))
        texts, hovers, urls = [], [], []
        for n in group:
            label = "hidden" if n.get("redacted") else (n.get("label") or n.get("name") or n["id"])
            short = label.rsplit("/", 1)[-1]
            texts.append(short if len(short) <= 22 else "…" + short[-21:])  # keep the version
            extra = status.get(n["id"], "")
            if n.get("redacted"):
                hover = f"{n['kind'].replace('_', ' ')} of a use case you may not see"
            elif n.get("cluster"):
                hover = f"{label} (collapsed; narrow the depth to see them)"
            else:
                hover = f"<b>{label}</b><br>{kind.replace('_', ' ')}" + (
                    f"<br>{extra}" if extra else ""
                )
                if n.get("linked") is False and kind == "dataset":
                    hover += "<br>not linked to a registry dataset version"
            hovers.append(hover)
            urls.append(_url(n))
        traces.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": kind.replace("_", " "),
                "x": [pos[n["id"]][0] for n in group],
                "y": [pos[n["id"]][1] for n in group],
                "text": texts,
                "textposition": "bottom center",
                "textfont": {"size": 10},
                "hovertext": hovers,
                "hoverinfo": "text",
                "customdata": urls,
                "marker": {
                    "symbol": symbol,
                    "size": [22 if n["id"] == focus else 14 for n in group],
                    "color": colour,
                    "line": {
                        "width": [3 if n["id"] == focus else 1 for n in group],
                        "color": "#1b2430",
                    },
                },
            }
        )
    height = max(
        360,
        60
        * max(
            (sum(1 for p in pos.values() if p[0] == x) for x in {p[0] for p in pos.values()}),
            default=1,
        ),
    )
    return {
        "data": traces,
        "layout": {
            "height": min(height, 1400),
            "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "legend": {"orientation": "h", "y": 1.04},
            "hovermode": "closest",
            "font": {"family": "DejaVu Sans, sans-serif", "size": 12},
        },
    }


def _search(request: HttpRequest, access: Access) -> list[dict[str, Any]]:
    q = request.GET.get("q", "").strip()
    if not q:
        return []
    rows = access.filter(LineageNode.objects.filter(label__icontains=q)).order_by("kind", "label")[
        :25
    ]
    return [{"key": r.key, "label": r.label, "kind": r.kind} for r in rows]


@login_required
def lineage_view(request: HttpRequest) -> HttpResponse:
    access = Access(user=request.user)
    node = request.GET.get("node", "")
    direction = request.GET.get("direction", "both")
    try:
        depth = max(1, min(int(request.GET.get("depth", "3")), 10))
    except ValueError:
        depth = 3
    ctx: dict[str, Any] = {
        "node": node,
        "direction": direction,
        "depth": depth,
        "results": _search(request, access),
        "q": request.GET.get("q", ""),
    }
    if node:
        if direction == "up":
            data = graph.upstream(access, node, depth)
        elif direction == "down":
            data = graph.downstream(access, node, depth)
        else:
            hood = graph.neighbourhood(access, node, depth)
            data = {
                "node": hood["node"],
                "nodes": hood["graph"],
                "truncated": hood["truncated"],
                "edges": [e for n in hood["graph"] for e in n["outEdges"]],
            }
        fig = figure(data, data["node"]["id"])
        ctx.update(
            {
                "focus": data["node"],
                "chart": script_json(fig),
                "count": len(data["nodes"]),
                "truncated": data.get("truncated"),
                "focus_url": _url(data["node"]),
            }
        )
    return render(request, "lineage/graph.html", ctx)


@login_required
def impact_view(request: HttpRequest) -> HttpResponse:
    access = Access(user=request.user)
    node = request.GET.get("node", "")
    ctx: dict[str, Any] = {
        "node": node,
        "results": _search(request, access),
        "q": request.GET.get("q", ""),
    }
    if node:
        result = graph.impact(access, node, graph.DEFAULT_DEPTH)
        mv_ids = [
            int(n["objectId"])
            for n in result["modelVersions"]
            if not n.get("redacted") and n.get("objectId")
        ]
        approvals = defaultdict(list)
        for req in ApprovalRequest.objects.filter(
            model_version_id__in=mv_ids, state__in=["submitted", "in_review", "approved"]
        ).select_related("model_version__model"):
            approvals[str(req.model_version_id)].append(req)
        for group in ("modelVersions", "deployments", "useCases"):
            for n in result[group]:
                n["url"] = _url(n)
                n["approvals"] = (
                    approvals.get(str(n.get("objectId")), []) if group == "modelVersions" else []
                )
        ctx.update(
            {
                "result": result,
                "at_risk_approvals": [r for rs in approvals.values() for r in rs],
                "live": [
                    n
                    for n in result["deployments"]
                    if not n.get("redacted") and (n.get("attrs") or {}).get("status") == "active"
                ],
            }
        )
    return render(request, "lineage/impact.html", ctx)
