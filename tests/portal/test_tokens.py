"""API tokens: issued once, stored hashed, scoped, expiring, revocable, audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework.test import APIClient

from audits.models import AuditEvent
from portal.models import ApiToken
from portal.permissions import Access
from portal.services import issue_token


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_token_is_shown_once_and_only_its_hash_is_stored(world: Any) -> None:
    client = world.client("contributor_a")
    before = AuditEvent.objects.count()
    response = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201
    secret = response.json()["token"]
    token = ApiToken.objects.get(pk=response.json()["id"])
    row = {f.attname: str(getattr(token, f.attname)) for f in ApiToken._meta.concrete_fields}
    assert not any(secret in value for value in row.values())
    assert token.matches(secret)
    assert "token" not in client.get(f"/api/v1/tokens/{token.pk}/").json() or (
        client.get(f"/api/v1/tokens/{token.pk}/").json()["token"] in (None, "")
    )
    assert AuditEvent.objects.count() == before + 1
    assert AuditEvent.objects.order_by("-seq").first().action == "token_issue"


def test_token_authenticates_and_records_last_use(world: Any) -> None:
    token, secret = issue_token(Access.system(), user=world.users["contributor_a"], name="t")
    assert token.last_used_at is None
    response = bearer(secret).get("/api/v1/model-versions/")
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert world.tree["a"]["model_version"].pk in ids
    assert world.tree["b"]["model_version"].pk not in ids
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_token_scoped_to_a_cannot_reach_b_even_for_an_admin(world: Any) -> None:
    _, secret = issue_token(
        Access.system(), user=world.users["admin"], name="scoped", use_cases=[world.uc_a]
    )
    client = bearer(secret)
    listed = {row["id"] for row in client.get("/api/v1/use-cases/").json()["results"]}
    assert listed == {world.uc_a.pk}
    assert client.get(f"/api/v1/use-cases/{world.uc_b.pk}/").status_code == 404
    mv_b = world.tree["b"]["model_version"]
    assert client.get(f"/api/v1/model-versions/{mv_b.pk}/").status_code == 404
    response = client.post(
        "/api/v1/datasets/", {"use_case": world.uc_b.pk, "name": "sneaky"}, format="json"
    )
    assert response.status_code == 400 and "use_case" in response.json()["errors"]
    assert client.post("/api/v1/use-cases/", {"name": "x", "purpose": "y"}).status_code == 403
    ok = client.post("/api/v1/datasets/", {"use_case": world.uc_a.pk, "name": "fine"})
    assert ok.status_code == 201


def test_expired_and_revoked_tokens_are_refused_with_a_reason(world: Any) -> None:
    user = world.users["contributor_a"]
    expired, expired_secret = issue_token(Access.system(), user=user, name="old")
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(expired_secret).get("/api/v1/use-cases/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]

    revoked, revoked_secret = issue_token(Access.system(), user=user, name="gone")
    client = world.client("contributor_a")
    assert (
        client.post(f"/api/v1/tokens/{revoked.pk}/revoke/", {"reason": "leak"}).status_code == 200
    )
    response = bearer(revoked_secret).get("/api/v1/use-cases/")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    assert AuditEvent.objects.order_by("-seq").first().action == "token_revoke"

    for bad in ("chtr_nothing", "chtr_abcd1234_wrong", "not-a-token"):
        assert bearer(bad).get("/api/v1/use-cases/").status_code == 401


def test_tokens_of_others_are_invisible_except_to_admins(world: Any) -> None:
    token, _ = issue_token(Access.system(), user=world.users["contributor_a"], name="mine")
    other = world.client("contributor_b")
    assert other.get(f"/api/v1/tokens/{token.pk}/").status_code == 404
    assert other.post(f"/api/v1/tokens/{token.pk}/revoke/").status_code == 404
    assert token.pk not in {t["id"] for t in other.get("/api/v1/tokens/").json()["results"]}
    admin = world.client("admin")
    assert admin.post(f"/api/v1/tokens/{token.pk}/revoke/", {}).status_code == 200


def test_a_token_cannot_be_scoped_to_a_use_case_its_user_cannot_see(world: Any) -> None:
    client = world.client("contributor_a")
    response = client.post(
        "/api/v1/tokens/", {"name": "x", "use_cases": [world.uc_b.pk]}, format="json"
    )
    assert response.status_code == 400 and "use_cases" in response.json()["errors"]
    assert not ApiToken.objects.exists()
