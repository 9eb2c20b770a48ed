"""Idempotency-Key on API writes: a retried write is answered from the first one, never
repeated; a reused key with another body is refused."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from audits.models import AuditEvent
from portal.models import IdempotencyRecord
from portal.permissions import Access
from portal.services import issue_token
from registry.models import Dataset


def _client(world: Any, who: str) -> APIClient:
    """A caller with a real bearer token (the key is scoped to the credentials)."""
    _, secret = issue_token(Access.system(), user=world.users[who], name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _post(client: APIClient, body: dict[str, Any], key: str) -> Any:
    return client.post(
        "/api/v1/datasets/",
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


@pytest.mark.django_db
def test_same_key_same_request_is_replayed_not_repeated(world: Any) -> None:
    client = _client(world, "contributor_a")
    body = {"use_case": world.uc_a.pk, "name": "retried"}
    events = AuditEvent.objects.count()
    first = _post(client, body, "k-1")
    second = _post(client, body, "k-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Dataset.objects.filter(name="retried").count() == 1
    assert AuditEvent.objects.count() == events + 1


@pytest.mark.django_db
def test_same_key_other_request_is_refused_and_other_callers_are_separate(world: Any) -> None:
    client = _client(world, "contributor_a")
    assert _post(client, {"use_case": world.uc_a.pk, "name": "one"}, "k-2").status_code == 201
    other = _post(client, {"use_case": world.uc_a.pk, "name": "two"}, "k-2")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["errors"]
    # another caller may use the same key for its own request
    theirs = _post(_client(world, "contributor_b"), {"use_case": world.uc_b.pk, "name": "b"}, "k-2")
    assert theirs.status_code == 201
    assert set(
        Dataset.objects.filter(name__in=["one", "two", "b"]).values_list("name", flat=True)
    ) == {
        "one",
        "b",
    }


@pytest.mark.django_db
def test_refusals_are_replayed_too_and_writes_without_a_key_are_untouched(world: Any) -> None:
    client = _client(world, "contributor_a")
    bad = {"use_case": world.uc_a.pk, "name": ""}
    first = _post(client, bad, "k-3")
    assert first.status_code == 400
    assert _post(client, bad, "k-3").json() == first.json()
    plain = client.post(
        "/api/v1/datasets/", {"use_case": world.uc_a.pk, "name": "x"}, format="json"
    )
    assert plain.status_code == 201
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db
def test_in_flight_key_answers_409_and_an_abandoned_one_runs_again(
    world: Any, settings: Any
) -> None:
    client = _client(world, "contributor_a")
    body = {"use_case": world.uc_a.pk, "name": "pending"}
    raw = json.dumps(body).encode()
    import hashlib

    # a record left pending by a request still running (or by a crashed worker)
    auth = client._credentials["HTTP_AUTHORIZATION"]
    principal = hashlib.sha256(auth.encode()).hexdigest()
    digest = hashlib.sha256(b"POST /api/v1/datasets/\n" + raw).hexdigest()
    record = IdempotencyRecord.objects.create(principal=principal, key="k-4", request_sha256=digest)
    busy = _post(client, body, "k-4")
    assert busy.status_code == 409 and busy["Retry-After"] == "1"
    assert not Dataset.objects.filter(name="pending").exists()
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=record.created_at
        - timedelta(seconds=settings.CHARTER_IDEMPOTENCY_PENDING_SECONDS + 1)
    )
    assert _post(client, body, "k-4").status_code == 201
    assert Dataset.objects.filter(name="pending").count() == 1
