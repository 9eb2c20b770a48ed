"""Delivery against a real local HTTP receiver: signature, retries, timeouts, the SSRF re-check."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from portal import webhooks
from portal.models import WebhookAttempt, WebhookDelivery
from portal.permissions import Access
from tests import factories as f
from tests.webhooks.helpers import subscribe
from tests.webhooks.receiver import Receiver, running_receiver


def _register(world: Any, capture: Any, who: str = "contributor_a", uc: str = "a") -> int:
    model = world.tree[uc]["model"]
    with capture(execute=True):
        response = world.client(who).post(
            "/api/v1/model-versions/",
            {"model": model.pk, "version": f"9.{f.next_n()}", "metrics": {"auc": 0.93}},
            format="json",
        )
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def test_signature_verifies_with_the_secret(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    sub, secret = subscribe(
        world, "contributor_a", receiver.url, ["version.registered"], world.uc_a
    )
    assert secret.startswith("whsec_")
    version_id = _register(world, django_capture_on_commit_callbacks)

    (got,) = receiver.received
    assert got.path == "/hooks/charter"
    headers = got.headers
    assert headers["X-Charter-Event"] == "version.registered"
    assert headers["Content-Type"] == "application/json"
    timestamp = headers["X-Charter-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + got.body, hashlib.sha256
    ).hexdigest()
    assert headers["X-Charter-Signature"] == f"sha256={expected}"
    assert webhooks.verify_signature(secret, timestamp, got.body, headers["X-Charter-Signature"])
    assert not webhooks.verify_signature("whsec_wrong", timestamp, got.body, expected)

    payload = got.json
    assert payload["id"] == headers["X-Charter-Delivery"]
    assert payload["event"] == "version.registered"
    assert payload["use_case"] == world.uc_a.pk
    assert payload["object"]["type"] == "registry.modelversion"
    assert payload["object"]["id"] == str(version_id)
    assert payload["object"]["url"].endswith(f"/models/versions/{version_id}/")
    assert payload["changes"]["after"]["metrics"] == {"auc": 0.93}
    assert payload["occurred_at"] and payload["actor"] == "contrib_a"

    delivery = WebhookDelivery.objects.get(pk=payload["id"])
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 1, 200)
    assert delivery.subscription_id == sub.pk


def test_500_twice_then_200_is_tried_three_times_and_every_try_is_logged(
    world: Any, allow_local: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """GIVEN a receiver answering 500, 500, then 200 WHEN an event fires THEN Celery
    retries (eagerly here, without the countdown) until the 200, logging each try."""
    with running_receiver(answers=[500, 500, 200]) as receiver:
        subscribe(world, "contributor_a", receiver.url, ["version.registered"], world.uc_a)
        _register(world, django_capture_on_commit_callbacks)
    assert len(receiver.received) == 3
    ids = {r.headers["X-Charter-Delivery"] for r in receiver.received}
    assert len(ids) == 1, "the same delivery id on every try"
    delivery = WebhookDelivery.objects.get(pk=ids.pop())
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 3, 200)
    tries = list(delivery.tries.order_by("number"))
    assert [(t.number, t.status_code) for t in tries] == [(1, 500), (2, 500), (3, 200)]
    assert all(t.duration_ms >= 0 and t.at is not None for t in tries)


def test_gives_up_after_the_configured_number_of_tries(
    world: Any, allow_local: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CHARTER_WEBHOOK_MAX_ATTEMPTS = 3
    with running_receiver(answers=[503]) as receiver:
        subscribe(world, "contributor_a", receiver.url, ["version.registered"], world.uc_a)
        _register(world, django_capture_on_commit_callbacks)
    assert len(receiver.received) == 3
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert "gave up after 3 tries" in delivery.last_error
    assert list(delivery.tries.values_list("status_code", flat=True)) == [503, 503, 503]


def test_retry_loop_with_backoff_when_driven_directly(
    world: Any, allow_local: Any, settings: Any
) -> None:
    """The worker's view: ``deliver`` says when to try again; the delays double."""
    settings.CHARTER_WEBHOOK_BACKOFF_S = 10
    with running_receiver(answers=[502, 500, 200]) as receiver:
        sub, _ = webhooks.create_subscription(
            Access(world.users["admin"]), url=receiver.url, events=["deployment.recorded"]
        )
        delivery = webhooks.send_test(Access(world.users["admin"]), sub)
        first = webhooks.deliver(str(delivery.pk))
        second = webhooks.deliver(str(delivery.pk))
        third = webhooks.deliver(str(delivery.pk))
        again = webhooks.deliver(str(delivery.pk))
    assert first.status == "pending" and 8 <= first.retry_in <= 12
    assert second.status == "pending" and 16 <= second.retry_in <= 24
    assert third.status == "succeeded" and third.retry_in is None
    assert again.status == "succeeded" and len(receiver.received) == 3, "finished: not resent"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is None and delivery.finished_at is not None
    assert receiver.received[0].headers["X-Charter-Event"] == "ping"


def test_timeouts_and_refused_connections_are_retried(
    world: Any, allow_local: Any, settings: Any
) -> None:
    settings.CHARTER_WEBHOOK_TIMEOUT_S = 1
    admin = Access(world.users["admin"])
    with running_receiver(delay=2.5) as slow:
        sub, _ = webhooks.create_subscription(admin, url=slow.url, events=["drift.alert"])
        delivery = webhooks.send_test(admin, sub)
        outcome = webhooks.deliver(str(delivery.pk))
    assert outcome.status == "pending" and outcome.retry_in is not None
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None and "timed out" in attempt.error
    assert attempt.duration_ms >= 900

    # the receiver is gone now: connection refused, also retried
    outcome = webhooks.deliver(str(delivery.pk))
    assert outcome.status == "pending"
    second = WebhookAttempt.objects.get(delivery=delivery, number=2)
    assert "ConnectionRefused" in second.error


def test_client_errors_and_redirects_are_not_retried(world: Any, allow_local: Any) -> None:
    admin = Access(world.users["admin"])
    for code, words in ((404, ""), (410, ""), (302, "redirects are not followed")):
        with running_receiver(answers=[code]) as receiver:
            sub, _ = webhooks.create_subscription(
                admin, url=receiver.url, events=["incident.opened"]
            )
            delivery = webhooks.send_test(admin, sub)
            outcome = webhooks.deliver(str(delivery.pk))
        assert outcome.status == "failed" and outcome.retry_in is None
        assert len(receiver.received) == 1
        delivery.refresh_from_db()
        assert delivery.response_status == code and words in delivery.last_error


def test_target_is_checked_again_at_delivery_time(
    world: Any, receiver: Receiver, settings: Any
) -> None:
    """A target allowed when saved but internal by the time of sending (DNS rebinding,
    or a changed policy) is refused then, and the refusal is not retried."""
    admin = Access(world.users["admin"])
    sub, _ = webhooks.create_subscription(admin, url=receiver.url, events=["incident.closed"])
    delivery = webhooks.send_test(admin, sub)
    settings.CHARTER_WEBHOOK_ALLOWED_HOSTS = []
    outcome = webhooks.deliver(str(delivery.pk))
    assert outcome.status == "failed" and outcome.retry_in is None
    assert receiver.received == []
    delivery.refresh_from_db()
    assert "loopback address" in delivery.last_error


def test_eager_task_round_trip_of_a_ping(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    sub, secret = subscribe(
        world, "contributor_a", receiver.url, ["version.registered"], world.uc_a
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = world.client("contributor_a").post(f"/api/v1/webhooks/{sub.pk}/test/")
    assert response.status_code == 202
    (got,) = receiver.received
    assert got.headers["X-Charter-Event"] == "ping" and got.json["event"] == "ping"
    assert got.json["object"]["type"] == "portal.webhooksubscription"
    deliveries = world.client("contributor_a").get(f"/api/v1/webhooks/{sub.pk}/deliveries/").json()
    (row,) = deliveries["results"]
    assert row["status"] == "succeeded" and row["tries"][0]["status_code"] == 200
    assert json.loads(got.body)["id"] == row["id"]


@pytest.mark.parametrize("entry", ["127.0.0.0/8", "127.0.0.1"])
def test_allowed_hosts_accepts_addresses_and_networks(entry: str, settings: Any) -> None:
    settings.CHARTER_WEBHOOK_ALLOWED_HOSTS = [entry]
    assert webhooks.resolve_target("http://127.0.0.1:9/x").addresses == ("127.0.0.1",)
