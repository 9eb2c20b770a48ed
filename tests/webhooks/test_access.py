"""Subscriptions from the outside: who may create, see and change them; SSRF refusals;
the secret shown once; audit of every change; the pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audits.models import AuditEvent
from portal.models import WebhookDelivery, WebhookSubscription
from tests.webhooks.helpers import subscribe
from tests.webhooks.receiver import Receiver

EVENTS = ["version.registered"]


def test_secret_is_shown_once_and_never_listed(world: Any, receiver: Receiver) -> None:
    sub, secret = subscribe(world, "contributor_a", receiver.url, EVENTS, world.uc_a)
    client = world.client("contributor_a")
    listed = client.get("/api/v1/webhooks/").json()["results"]
    assert [row["id"] for row in listed] == [sub.pk]
    assert "secret" not in listed[0]
    detail = client.get(f"/api/v1/webhooks/{sub.pk}/").json()
    assert "secret" not in detail and detail["events"] == EVENTS
    assert detail["created_by"] == "contrib_a" and detail["use_case"] == world.uc_a.pk
    assert sub.secret == secret
    events = AuditEvent.objects.filter(object_type="portal.webhooksubscription")
    assert all(secret not in e.payload for e in events)


def test_create_update_delete_are_audited(world: Any, receiver: Receiver) -> None:
    sub, _ = subscribe(world, "contributor_a", receiver.url, EVENTS, world.uc_a)
    client = world.client("contributor_a")
    patched = client.patch(
        f"/api/v1/webhooks/{sub.pk}/",
        {"events": ["deployment.recorded", "version.registered"], "active": False},
        format="json",
    )
    assert patched.status_code == 200, patched.json()
    assert patched.json()["events"] == ["version.registered", "deployment.recorded"]
    noop = client.patch(f"/api/v1/webhooks/{sub.pk}/", {"active": False}, format="json")
    assert noop.status_code == 200
    assert client.delete(f"/api/v1/webhooks/{sub.pk}/").status_code == 204
    trail = list(
        AuditEvent.objects.filter(
            object_type="portal.webhooksubscription", object_id=str(sub.pk)
        ).order_by("seq")
    )
    assert [e.action for e in trail] == ["create", "update", "delete"]
    assert trail[0].changes["after"]["url"] == receiver.url
    assert trail[1].changes == {
        "before": {"active": True, "events": ["version.registered"]},
        "after": {"active": False, "events": ["version.registered", "deployment.recorded"]},
    }
    assert all(e.actor_repr == "contrib_a" for e in trail)
    assert not WebhookSubscription.objects.filter(pk=sub.pk).exists()


def test_non_owners_get_404_and_do_not_see_others_subscriptions(
    world: Any, receiver: Receiver
) -> None:
    sub, _ = subscribe(world, "contributor_a", receiver.url, EVENTS, world.uc_a)
    for who in ("contributor_b", "viewer_a", "outsider", "board", "auditor"):
        client = world.client(who)
        assert client.get("/api/v1/webhooks/").json()["results"] == [], f"leaked to {who}"
        for method, path in (
            ("get", f"/api/v1/webhooks/{sub.pk}/"),
            ("get", f"/api/v1/webhooks/{sub.pk}/deliveries/"),
            ("post", f"/api/v1/webhooks/{sub.pk}/test/"),
            ("patch", f"/api/v1/webhooks/{sub.pk}/"),
            ("delete", f"/api/v1/webhooks/{sub.pk}/"),
        ):
            response = getattr(client, method)(path, {}, format="json")
            assert response.status_code == 404, f"{who} {method} {path}: {response.status_code}"
    assert not WebhookDelivery.objects.exists()
    assert WebhookSubscription.objects.filter(pk=sub.pk, active=True).exists()
    # administrators see every subscription (and may manage it)
    admin = world.client("admin")
    assert [r["id"] for r in admin.get("/api/v1/webhooks/").json()["results"]] == [sub.pk]
    assert admin.get(f"/api/v1/webhooks/{sub.pk}/deliveries/").status_code == 200


def test_who_may_subscribe_where(world: Any, receiver: Receiver) -> None:
    def create(who: str, use_case: Any) -> Any:
        body = {"url": receiver.url, "events": EVENTS, "use_case": use_case}
        return world.client(who).post("/api/v1/webhooks/", body, format="json")

    assert create("contributor_a", world.uc_a.pk).status_code == 201
    # visible but not contributable: 403
    assert create("viewer_a", world.uc_a.pk).status_code == 403
    assert create("board", world.uc_a.pk).status_code == 403
    # invisible: the reference does not resolve (400 naming use_case)
    response = create("contributor_b", world.uc_a.pk)
    assert response.status_code == 400 and "use_case" in response.json()["errors"]
    response = create("outsider", world.uc_a.pk)
    assert response.status_code == 400 and "use_case" in response.json()["errors"]
    # every use case: administrators only
    assert create("contributor_a", None).status_code == 403
    assert create("admin", None).status_code == 201
    assert WebhookSubscription.objects.count() == 2


def test_unauthenticated_requests_are_refused(world: Any, receiver: Receiver) -> None:
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/webhooks/").status_code in (401, 403)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://240.0.0.1/hook",
    ],
)
def test_internal_targets_are_refused(world: Any, url: str) -> None:
    response = world.client("contributor_a").post(
        "/api/v1/webhooks/",
        {"url": url, "events": EVENTS, "use_case": world.uc_a.pk},
        format="json",
    )
    assert response.status_code == 400, response.json()
    assert "url" in response.json()["errors"]
    assert not WebhookSubscription.objects.exists()
    assert not AuditEvent.objects.filter(object_type="portal.webhooksubscription").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.org/x"}, "url"),
        ({"url": "http://user:pw@example.org/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["model.exploded"]}, "events"),
        ({"events": "version.registered"}, "events"),
    ],
)
def test_bad_input_names_the_field(world: Any, receiver: Receiver, body: Any, field: str) -> None:
    data = {"url": receiver.url, "events": EVENTS, "use_case": world.uc_a.pk, **body}
    response = world.client("contributor_a").post("/api/v1/webhooks/", data, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]


def test_changing_the_url_is_checked_and_the_scope_is_fixed(world: Any, receiver: Receiver) -> None:
    sub, _ = subscribe(world, "contributor_a", receiver.url, EVENTS, world.uc_a)
    client = world.client("contributor_a")
    bad = client.patch(f"/api/v1/webhooks/{sub.pk}/", {"url": "http://10.0.0.5/x"}, format="json")
    assert bad.status_code == 400 and "url" in bad.json()["errors"]
    moved = client.patch(f"/api/v1/webhooks/{sub.pk}/", {"use_case": world.uc_b.pk}, format="json")
    assert moved.status_code == 400 and "use_case" in moved.json()["errors"]
    sub.refresh_from_db()
    assert sub.url == receiver.url and sub.use_case_id == world.uc_a.pk


def test_a_contributor_who_lost_the_grant_cannot_change_their_subscription(
    world: Any, receiver: Receiver
) -> None:
    from portal.permissions import Access
    from portal.services import revoke_access

    sub, _ = subscribe(world, "contributor_a", receiver.url, EVENTS, world.uc_a)
    revoke_access(Access.system(), world.uc_a, world.users["contributor_a"])
    response = world.client("contributor_a").patch(
        f"/api/v1/webhooks/{sub.pk}/", {"active": False}, format="json"
    )
    assert response.status_code == 403


# ---------------------------------------------------------------- pages


def _browser(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


def test_pages_create_show_secret_once_log_test_and_delete(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    browser = _browser(world, "contributor_a")
    page = browser.get("/access/webhooks/")
    assert page.status_code == 200 and b"New subscription" in page.content
    created = browser.post(
        "/access/webhooks/",
        {
            "name": "CI notifier",
            "url": receiver.url,
            "events": ["version.registered", "approval.decided"],
            "use_case": world.uc_a.pk,
        },
    )
    assert created.status_code == 200
    sub = WebhookSubscription.objects.get(name="CI notifier")
    assert sub.secret.encode() in created.content
    listing = browser.get("/access/webhooks/")
    assert b"CI notifier" in listing.content and sub.secret.encode() not in listing.content

    with django_capture_on_commit_callbacks(execute=True):
        tested = browser.post(f"/access/webhooks/{sub.pk}/test/", follow=True)
    assert tested.status_code == 200
    assert receiver.events() == ["ping"]
    detail = browser.get(f"/access/webhooks/{sub.pk}/")
    html = detail.content.decode()
    assert "ping" in html and "#1: 200" in html and sub.secret not in html
    fragment = browser.get(f"/access/webhooks/{sub.pk}/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and b"<html" not in fragment.content

    paused = browser.post(f"/access/webhooks/{sub.pk}/update/", {"active": "false"}, follow=True)
    assert paused.status_code == 200
    sub.refresh_from_db()
    assert sub.active is False

    assert browser.post(f"/access/webhooks/{sub.pk}/delete/").status_code == 302
    assert not WebhookSubscription.objects.filter(pk=sub.pk).exists()


def test_pages_refuse_internal_targets_and_hide_others_subscriptions(
    world: Any, receiver: Receiver
) -> None:
    sub, _ = subscribe(world, "contributor_a", receiver.url, EVENTS, world.uc_a)
    other = _browser(world, "contributor_b")
    assert sub.url.encode() not in other.get("/access/webhooks/").content
    for path in ("", "test/", "delete/", "update/"):
        method = other.get if not path else other.post
        assert method(f"/access/webhooks/{sub.pk}/{path}").status_code == 404
    refused = other.post(
        "/access/webhooks/",
        {"url": "http://169.254.169.254/", "events": EVENTS, "use_case": world.uc_b.pk},
    )
    assert refused.status_code == 200 and b"link-local" in refused.content
    assert WebhookSubscription.objects.count() == 1
    # a contributor's form offers only the use cases they contribute to
    form = other.get("/access/webhooks/").content.decode()
    assert world.uc_b.name in form and world.uc_a.name not in form


def test_a_scoped_token_reaches_only_its_use_cases(world: Any, receiver: Receiver) -> None:
    """An administrator's token limited to use case A neither sees nor creates beyond A."""
    from rest_framework.test import APIClient

    from portal.permissions import Access
    from portal.services import issue_token

    admin = world.users["admin"]
    _, secret = issue_token(Access(admin), user=admin, name="ci", use_cases=[world.uc_a])
    subscribe(world, "contributor_b", receiver.url, EVENTS, world.uc_b)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/webhooks/").json()["results"] == []
    for use_case in (world.uc_b.pk, None):
        response = client.post(
            "/api/v1/webhooks/",
            {"url": receiver.url, "events": EVENTS, "use_case": use_case},
            format="json",
        )
        assert response.status_code in (400, 403), response.json()
    ok = client.post(
        "/api/v1/webhooks/",
        {"url": receiver.url, "events": EVENTS, "use_case": world.uc_a.pk},
        format="json",
    )
    assert ok.status_code == 201
    assert [r["use_case"] for r in client.get("/api/v1/webhooks/").json()["results"]] == [
        world.uc_a.pk
    ]
