"""List endpoints issue a constant number of queries, whatever the page holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from portal.permissions import Access
from portal.services import grant_access
from tests import factories as f
from tests.helpers import fast_password_hashing  # noqa: F401  (autouse fixture)

User = get_user_model()


def _queries(who: Any, url: str, expected_rows: int) -> int:
    client = APIClient()
    # A fresh user object each time: no permission cache carried between measurements.
    client.force_authenticate(User.objects.get(pk=who.pk))
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, {"page_size": 100})
    assert response.status_code == 200
    assert response.json()["count"] == expected_rows
    return len(ctx.captured_queries)


def _fill_model_versions(world: Any, n: int) -> None:
    """Versions spread over models, registrants, parents and dataset links."""
    for i in range(n):
        uc = world.uc_a if i % 2 else world.uc_b
        tree = world.tree["a" if i % 2 else "b"]
        model = f.model(uc)
        dv = f.dataset_version(tree["dataset"])
        f.model_version(
            model,
            training_datasets=[dv, tree["dataset_version"]],
            validation_datasets=[dv],
            test_datasets=[tree["dataset_version"]],
        )


FILLERS: dict[str, tuple[str, Callable[[Any, int], None]]] = {
    "model-versions": ("/api/v1/model-versions/", _fill_model_versions),
    "dataset-versions": (
        "/api/v1/dataset-versions/",
        lambda w, n: [
            f.dataset_version(f.dataset(w.uc_a), derived_from=[w.tree["a"]["dataset_version"]])
            for _ in range(n)
        ],
    ),
    "deployments": (
        "/api/v1/deployments/",
        lambda w, n: [f.deployment(f.model_version(f.model(w.uc_a))) for _ in range(n)],
    ),
    "evidence": (
        "/api/v1/evidence/",
        lambda w, n: [f.evidence(w.tree["a"]["model_version"]) for _ in range(n)],
    ),
    "use-cases": ("/api/v1/use-cases/", lambda w, n: [_shared_use_case(w) for _ in range(n)]),
}


def _shared_use_case(world: Any) -> Any:
    uc = f.use_case(business_owner=world.users["board"], technical_owner=world.users["risk"])
    grant_access(Access.system(), uc, world.users["contributor_a"], "view")
    return uc


def _visible(world: Any, who: str, url: str) -> int:
    client = world.client(who)
    return client.get(url, {"page_size": 1}).json()["count"]


@pytest.mark.parametrize("who", ["admin", "contributor_a"])
@pytest.mark.parametrize("collection", list(FILLERS))
def test_list_query_count_does_not_grow_with_rows(world: Any, who: str, collection: str) -> None:
    url, fill = FILLERS[collection]
    user = world.users[who]
    fill(world, 5)
    small = _queries(user, url, _visible(world, who, url))
    fill(world, 35)
    rows = _visible(world, who, url)
    assert rows >= 20
    large = _queries(user, url, rows)
    assert large == small, f"{collection}: {small} queries for few rows, {large} for {rows}"


def test_model_version_list_5_vs_40_rows(world: Any) -> None:
    admin = world.users["admin"]
    url = "/api/v1/model-versions/"
    _fill_model_versions(world, 3)  # 2 from the world + 3 = 5
    five = _queries(admin, url, 5)
    _fill_model_versions(world, 35)
    forty = _queries(admin, url, 40)
    assert five == forty, f"{five} queries for 5 rows, {forty} for 40"
    assert five <= 12, f"{five} queries for one page is more than a list needs"
