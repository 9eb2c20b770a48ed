"""References in API bodies (registry.api.fields): resolved with SQL compiled once when
the caller's visible use cases are known as ids, the ORM's answers otherwise — the same
answers either way, checked from the outside."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from portal import roles
from registry.api.serializers import ModelVersionSerializer
from registry.models import ModelVersion
from tests import factories as f
from tests.helpers import (
    fast_password_hashing,  # noqa: F401  (autouse fixture)
    service_account,
)

URL = "/api/v1/model-versions/"


def _token_client(world: Any) -> APIClient:
    return service_account("ref-bot", roles.CONTRIBUTOR, world.uc_a, "contribute").client


def _session_client(world: Any) -> APIClient:
    """Signed in, no token: rights read lazily, references resolved through the ORM."""
    client = APIClient()
    client.force_authenticate(world.users["contributor_a"])
    return client


def _register(client: APIClient, world: Any, **links: Any) -> Any:
    data = {"model": world.tree["a"]["model"].pk, "version": uuid.uuid4().hex[:12], **links}
    return client.post(URL, json.dumps(data), content_type="application/json")


@pytest.fixture(params=["token", "session"])
def client(request: Any, world: Any) -> APIClient:
    return _token_client(world) if request.param == "token" else _session_client(world)


def test_a_list_of_references_resolves_in_order_with_duplicates(
    world: Any, client: APIClient
) -> None:
    dataset = world.tree["a"]["dataset"]
    a, b = world.tree["a"]["dataset_version"], f.dataset_version(dataset)
    c = f.dataset_version(f.dataset(world.uc_a, name="second"))
    response = _register(client, world, test_datasets=[c.pk, str(a.pk), b.pk, c.pk])
    assert response.status_code == 201, response.content
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert set(version.test_datasets.values_list("pk", flat=True)) == {a.pk, b.pk, c.pk}


def test_token_references_cost_one_statement_per_list(world: Any) -> None:
    client = _token_client(world)
    dataset = world.tree["a"]["dataset"]
    many = [f.dataset_version(dataset).pk for _ in range(4)]
    _register(client, world)  # warm-up
    with CaptureQueriesContext(connection) as ctx:
        response = _register(client, world, training_datasets=many)
    assert response.status_code == 201, response.content
    reads = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].removeprefix("BEGIN; ").startswith('SELECT "registry_datasetversion"')
    ]
    assert len(reads) == 1  # DRF would issue one per item


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "does not exist"),
        (10**30, "does not exist"),  # beyond the column's range: never a 500
        (-1, "does not exist"),
        ("abc", "Incorrect type"),
        (True, "Incorrect type"),
        ({"id": 1}, "Incorrect type"),
    ],
)
def test_bad_references_are_400s_naming_the_field(
    world: Any, client: APIClient, value: Any, message: str
) -> None:
    before = ModelVersion.objects.count()
    ok = world.tree["a"]["dataset_version"].pk
    response = _register(client, world, validation_datasets=[ok, value])
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]["validation_datasets"]
    assert any(message in e for e in errors), errors
    assert ModelVersion.objects.count() == before


def test_an_unseen_object_reads_as_missing_and_the_first_bad_item_is_named(
    world: Any, client: APIClient
) -> None:
    unseen = world.tree["b"]["dataset_version"].pk  # use case B: not the caller's
    response = _register(client, world, training_datasets=[unseen, "abc"])
    assert response.status_code == 400
    assert response.json()["errors"]["training_datasets"] == [
        f'Invalid pk "{unseen}" - object does not exist.'
    ]
    hidden = _register(client, world, model=world.tree["b"]["model"].pk)
    assert hidden.status_code == 400
    assert hidden.json()["errors"]["model"] == [
        f'Invalid pk "{world.tree["b"]["model"].pk}" - object does not exist.'
    ]
    assert _register(client, world, test_datasets="12").status_code == 400  # not a list


def test_serializers_share_no_bound_field(world: Any) -> None:
    """Fields are built once per class and copied: each instance binds its own."""
    first = ModelVersionSerializer(context={"request": "first"})
    second = ModelVersionSerializer(context={"request": "second"})
    for name in ("version", "metrics", "model", "training_datasets", "artifacts"):
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
    child = second.fields["training_datasets"].child_relation
    assert child.context["request"] == "second"
    assert first.fields["training_datasets"].child_relation.context["request"] == "first"
    assert first.fields["version"].validators is not None
