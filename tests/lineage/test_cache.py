"""The in-memory graph answers exactly like the SQL walk, and stays current with commits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import transaction

from lineage import cache, graph
from lineage.models import GraphChange
from portal.permissions import Access
from registry import services
from tests.lineage.conftest import dataset, post, run_event
from tests.lineage.test_queries import CLEAN, FEATURES, RAW, G, g  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

QUERIES = [
    ("impact", lambda a, k: graph.impact(a, RAW)),
    ("impact-short", lambda a, k: graph.impact(a, RAW, 4)),
    ("upstream", lambda a, k: graph.upstream(a, k["mv_a"])),
    ("upstream-b", lambda a, k: graph.upstream(a, k["mv_b"])),
    ("downstream", lambda a, k: graph.downstream(a, CLEAN, 2)),
    ("path", lambda a, k: graph.path(a, RAW, k["uc_a"])),
    ("path-up", lambda a, k: graph.path(a, k["uc_b"], CLEAN)),
    ("no-path", lambda a, k: graph.path(a, RAW, "job:etl:credit_features")),
]


def _normalised(data: Any) -> Any:
    """Placeholders differ per answer (salted): number them by first appearance."""
    text = repr(data)
    seen: dict[str, str] = {}
    return re.sub(r"hidden:[0-9a-f]{16}", lambda m: seen.setdefault(m[0], f"H{len(seen)}"), text)


def _sql(fn: Any, access: Access, k: dict[str, str]) -> Any:
    with transaction.atomic():  # inside a transaction the walk runs in SQL
        assert not cache.usable()
        return fn(access, k)


@pytest.mark.parametrize("who", ["admin", "contributor_a", "contributor_b"])
def test_in_memory_answers_equal_sql_answers(g: G, who: str) -> None:  # noqa: F811
    access = Access(user=g.world.users[who])
    assert cache.usable()
    for name, fn in QUERIES:
        try:
            expected = _normalised(_sql(fn, access, g.k))
        except Exception as exc:  # 404 for a start the user cannot see: same both ways
            with pytest.raises(type(exc)):
                fn(access, g.k)
            continue
        assert _normalised(fn(access, g.k)) == expected, name
    assert cache.stats()["loaded"] and cache.stats()["edges"] > 10


def test_in_memory_graph_follows_commits(g: G, pipeline_a: Any) -> None:  # noqa: F811
    admin = Access(user=g.world.users["admin"])
    before = {n["id"] for n in graph.downstream(admin, FEATURES)["nodes"]}
    loaded_seq = cache.stats()["seq"]
    changes = GraphChange.objects.count()
    event = run_event(
        job=("etl", "score"),
        inputs=[dataset("s3://lake", "credit_features")],
        outputs=[dataset("s3://lake", "scores")],
    )
    assert post(pipeline_a.client(), event).status_code == 201
    assert GraphChange.objects.count() == changes + 1  # one per committing transaction
    after = {n["id"] for n in graph.downstream(admin, FEATURES)["nodes"]}
    assert after - before == {f"run:{event['run']['runId']}", "dataset:s3://lake:scores"}
    assert cache.stats()["seq"] > loaded_seq  # applied incrementally
    # A removal (the registry drops a training link) reloads the graph.
    mv_a = g.world.tree["a"]["model_version"]
    services.update_model_version(Access.system(), mv_a, training_datasets=[])
    assert GraphChange.objects.order_by("-seq").first().full is True
    impact = graph.impact(admin, RAW)
    assert g.k["mv_a"] not in {n["id"] for n in impact["modelVersions"]}
    assert g.k["mv_b"] in {n["id"] for n in impact["modelVersions"]}
    now = {n["id"] for n in graph.downstream(admin, FEATURES)["nodes"]}
    assert now == after - {g.k["mv_a"], g.k["dep_a"], g.k["uc_a"]}
    # A reset database (log gone) is noticed too: the graph is read again.
    GraphChange.objects.all().delete()
    assert {n["id"] for n in graph.downstream(admin, FEATURES)["nodes"]} == now
    assert cache.stats()["seq"] == 0
