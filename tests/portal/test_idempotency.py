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
    # given up: that answer is still 409 (nothing written), and the next retry runs
    given_up = _post(client, body, "k-4")
    assert given_up.status_code == 409 and given_up["Retry-After"] == "1"
    assert not Dataset.objects.filter(name="pending").exists()
    assert _post(client, body, "k-4").status_code == 201
    assert Dataset.objects.filter(name="pending").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_write_once_and_answer_alike(world: Any) -> None:
    """Two requests with the same key at once (a client that timed out and retried while
    the first still ran): the later one waits on the key's unique index, then rolls its
    own writes back and replays the first's answer."""
    import threading

    import psycopg
    from django.conf import settings as django_settings
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (the README's test command provides it)")
    client = _client(world, "contributor_a")
    body = {"use_case": world.uc_a.pk, "name": "raced"}
    db = django_settings.DATABASES["default"]
    # Hold the audit chain's head so both requests are inside their transactions at once.
    holder = psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
        dbname=db["NAME"], autocommit=False,
    )  # fmt: skip
    holder.execute("SELECT seq FROM audits_chainhead WHERE id = 1 FOR UPDATE")
    answers: list[Any] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            answers.append(_post(client, body, "k-race"))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    waiting = 0
    for _ in range(200):  # both requests wait for the head lock
        waiting = holder.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
        ).fetchone()[0]
        if waiting >= 2:
            break
        threading.Event().wait(0.05)
    assert waiting >= 2, "both requests should be waiting inside their transactions"
    holder.rollback()
    holder.close()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(a.status_code for a in answers) == [201, 201]
    assert answers[0].json() == answers[1].json()
    assert sorted(a.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    assert Dataset.objects.filter(name="raced").count() == 1
    assert IdempotencyRecord.objects.filter(key="k-race").count() == 1
    created = AuditEvent.objects.filter(object_type="registry.dataset", action="create")
    assert created.filter(object_repr__contains="raced").count() == 1
