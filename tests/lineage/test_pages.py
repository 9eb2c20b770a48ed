"""The lineage pages: the interactive graph and impact analysis, with redaction."""

from __future__ import annotations

import json
import re
from typing import Any

from django.test import Client

from lineage.views import MAX_SHOWN, collapse, layout


def _client(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


def _chart(html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="lineage-graph">(.*?)</script>', html, re.S
    )
    assert match, "no chart on the page"
    return json.loads(match.group(1))


def test_graph_page_draws_the_neighbourhood_left_to_right(world: Any) -> None:
    mv = world.tree["a"]["model_version"]
    page = _client(world, "auditor").get(f"/lineage/?node=model_version:{mv.pk}&depth=3")
    assert page.status_code == 200
    fig = _chart(page.content.decode())
    traces = {t.get("name"): t for t in fig["data"] if t.get("mode") == "markers+text"}
    assert {"dataset version", "model version", "deployment", "use case"} <= set(traces)
    x_of = {kind: min(t["x"]) for kind, t in traces.items()}
    # data flows left to right: dataset versions, then the model version, then what serves it
    assert x_of["dataset version"] < x_of["model version"] < x_of["use case"]
    assert f"/models/versions/{mv.pk}/" in traces["model version"]["customdata"]
    assert "approval:" in traces["model version"]["hovertext"][0]


def test_hidden_neighbours_are_placeholders_and_hidden_starts_are_404(world: Any) -> None:
    mv_a, mv_b = world.tree["a"]["model_version"], world.tree["b"]["model_version"]
    # a dataset of use case B feeds the model of use case A
    from portal.permissions import Access
    from registry import services

    dv_b = world.tree["b"]["dataset_version"]
    services.update_model_version(Access.system(), mv_a, validation_datasets=[dv_b])
    viewer = _client(world, "viewer_a")  # sees use case A only
    fig = _chart(viewer.get(f"/lineage/?node=model_version:{mv_a.pk}&depth=2").content.decode())
    hidden = [t for t in fig["data"] if t.get("name") == "hidden"]
    assert hidden and all(u == "" for u in hidden[0]["customdata"])
    assert str(dv_b) not in json.dumps(fig)
    assert viewer.get(f"/lineage/?node=model_version:{mv_b.pk}").status_code == 404
    assert viewer.get(f"/lineage/impact/?node=model_version:{mv_b.pk}").status_code == 404


def test_impact_page_lists_what_depends_on_a_dataset_version(world: Any) -> None:
    dv = world.tree["a"]["dataset_version"]
    page = _client(world, "auditor").get(f"/lineage/impact/?node=dataset_version:{dv.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert str(world.tree["a"]["model_version"]) in html
    assert "Deployments (1)" in html and "Use cases (1)" in html


def test_search_finds_nodes_the_user_may_see(world: Any) -> None:
    html = _client(world, "viewer_a").get("/lineage/?q=" + world.tree["a"]["model"].name).content
    assert world.tree["a"]["model"].name.encode() in html
    other = _client(world, "viewer_a").get("/lineage/?q=" + world.tree["b"]["model"].name).content
    assert b"No node matches" in other


def test_large_graphs_collapse_into_clusters_per_layer() -> None:
    nodes = [{"id": "root", "kind": "dataset_version", "label": "root"}]
    edges = []
    for i in range(MAX_SHOWN + 200):
        nodes.append({"id": f"m{i}", "kind": "model_version", "label": f"m{i}"})
        edges.append({"origin": "root", "destination": f"m{i}", "kind": "trained_on"})
    pos = layout(nodes, edges)
    shown, folded = collapse(nodes, edges, pos, "root")
    assert len(shown) <= MAX_SHOWN + 2
    clusters = [n for n in shown if n.get("cluster")]
    assert clusters and sum(n["cluster"] for n in clusters) + len(shown) - len(clusters) == len(
        nodes
    )
    assert any(e["destination"] == clusters[0]["id"] for e in folded)
