"""Which changes fire which events, to whom; nothing for a rolled-back change."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from approvals import services as approvals
from audits.models import AuditEvent
from audits.services import record
from portal import webhooks
from portal.models import WebhookDelivery
from portal.permissions import Access
from registry import services
from tests import factories as f
from tests.webhooks.helpers import subscribe
from tests.webhooks.receiver import Receiver

ALL = [
    "version.registered",
    "approval.requested",
    "approval.decided",
    "deployment.recorded",
]


def test_version_approval_and_deployment_events_fire(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(world, "contributor_a", receiver.url, ALL, world.uc_a)
    contributor = world.client("contributor_a")
    capture = django_capture_on_commit_callbacks

    with capture(execute=True):
        mv = contributor.post(
            "/api/v1/model-versions/",
            {"model": world.tree["a"]["model"].pk, "version": "3.0.0"},
            format="json",
        ).json()
    with capture(execute=True):
        req = contributor.post(
            "/api/v1/approval-requests/",
            {"model_version": mv["id"], "environment": "production"},
            format="json",
        )
    assert req.status_code == 201, req.json()
    with capture(execute=True):
        decided = world.client("board").post(
            f"/api/v1/approval-requests/{req.json()['id']}/decide/",
            {"verdict": "request_changes", "comment": "Add a bias evaluation."},
            format="json",
        )
    assert decided.status_code == 201, decided.json()
    with capture(execute=True):
        deployed = contributor.post(
            "/api/v1/deployments/",
            {"model_version": mv["id"], "environment": "staging", "region": "eu"},
            format="json",
        )
    assert deployed.status_code == 201, deployed.json()

    assert receiver.events() == [
        "version.registered",
        "approval.requested",
        "approval.decided",
        "deployment.recorded",
    ]
    requested, decision = receiver.received[1].json, receiver.received[2].json
    assert requested["object"]["type"] == "approvals.approvalrequest"
    assert requested["changes"]["after"]["state"] == "submitted"
    assert decision["changes"]["after"]["state"] == "changes_requested"
    assert decision["actor"] == "board_user"
    deployment = receiver.received[3].json
    assert deployment["object"]["id"] == str(deployed.json()["id"])
    assert deployment["changes"]["after"]["environment"] == "staging"
    assert {r.json["use_case"] for r in receiver.received} == {world.uc_a.pk}


def test_an_approval_that_is_approved_is_decided(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    from tests.approvals.rig import make_version

    admin = Access(world.users["admin"])
    webhooks.create_subscription(admin, url=receiver.url, events=["approval.decided"])
    mv, _ = make_version(world.uc_a, world.users["contributor_a"])
    req = approvals.create_request(
        Access(world.users["contributor_a"]), model_version=mv, environment="staging"
    )
    with django_capture_on_commit_callbacks(execute=True):
        approvals.decide(Access(world.users["risk"]), req, verdict="approve", comment="ok")
    states = [r.json["changes"]["after"]["state"] for r in receiver.received]
    assert "approved" in states and set(states) <= {"approved"}


def test_a_rolled_back_change_sends_nothing(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(world, "contributor_a", receiver.url, ALL, world.uc_a)
    before = WebhookDelivery.objects.count()
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.register_model_version(
            Access(world.users["contributor_a"]),
            model=world.tree["a"]["model"],
            version="doomed",
        )
        raise RuntimeError("the pipeline failed after registering")
    assert callbacks == []
    assert WebhookDelivery.objects.count() == before
    assert receiver.received == []


def test_use_case_subscription_gets_only_its_use_case(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    sub_a, _ = subscribe(world, "contributor_a", receiver.url, ALL, world.uc_a)
    with django_capture_on_commit_callbacks(execute=True):
        f.model_version(world.tree["b"]["model"])
        f.deployment(world.tree["b"]["model_version"])
    assert receiver.received == []
    assert not WebhookDelivery.objects.filter(subscription=sub_a).exists()

    # a global subscription (administrators) hears both use cases
    sub_all, _ = subscribe(world, "admin", receiver.url, ["version.registered"])
    with django_capture_on_commit_callbacks(execute=True):
        f.model_version(world.tree["b"]["model"])
        f.model_version(world.tree["a"]["model"])
    by_sub = {
        (d.subscription_id, d.payload["use_case"])
        for d in WebhookDelivery.objects.filter(event="version.registered")
    }
    assert by_sub == {
        (sub_all.pk, world.uc_b.pk),
        (sub_all.pk, world.uc_a.pk),
        (sub_a.pk, world.uc_a.pk),
    }
    assert len(receiver.received) == 3


def test_unsubscribed_events_and_paused_subscriptions_send_nothing(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    sub, _ = subscribe(world, "contributor_a", receiver.url, ["deployment.recorded"], world.uc_a)
    with django_capture_on_commit_callbacks(execute=True):
        f.model_version(world.tree["a"]["model"])  # not subscribed
    webhooks.update_subscription(Access(world.users["contributor_a"]), sub, active=False)
    with django_capture_on_commit_callbacks(execute=True):
        f.deployment(world.tree["a"]["model_version"])  # paused
    assert receiver.received == []


def test_an_owner_who_lost_access_gets_nothing(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    from portal.services import revoke_access

    subscribe(world, "contributor_a", receiver.url, ALL, world.uc_a)
    revoke_access(Access.system(), world.uc_a, world.users["contributor_a"])
    with django_capture_on_commit_callbacks(execute=True):
        f.model_version(world.tree["a"]["model"])
    assert receiver.received == []


def _incident_event(action: str, changes: dict[str, Any], object_type: str) -> None:
    with transaction.atomic():
        record(action, actor=None, object_type=object_type, object_id="7", changes=changes)


def test_incident_and_retraining_events_are_mapped_by_object_type(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    """The workers app's models may not exist on this branch: events are recognised by
    their audit object type and changes alone."""
    webhooks.create_subscription(
        Access(world.users["admin"]),
        url=receiver.url,
        events=["drift.alert", "incident.opened", "incident.closed", "retraining.finished"],
    )
    with django_capture_on_commit_callbacks(execute=True):
        _incident_event(
            "create",
            {"after": {"title": "PSI", "kind": "drift", "use_case": world.uc_a.pk}},
            "workers.incident",
        )
        _incident_event("create", {"after": {"title": "latency"}}, "workers.incident")
        _incident_event("update", {"after": {"status": "acknowledged"}}, "workers.incident")
        _incident_event("update", {"after": {"status": "closed"}}, "workers.incident")
        _incident_event("transition", {"after": {"status": "running"}}, "workers.retrainingjob")
        _incident_event("transition", {"after": {"status": "succeeded"}}, "workers.retrainingjob")
    assert receiver.events() == [
        "incident.opened",
        "drift.alert",
        "incident.opened",
        "incident.closed",
        "retraining.finished",
    ]
    assert receiver.received[0].json["use_case"] == world.uc_a.pk


@pytest.mark.parametrize(
    ("action", "object_type", "changes", "expected"),
    [
        ("create", "registry.modelversion", {}, ["version.registered"]),
        ("update", "registry.modelversion", {}, []),
        (
            "transition",
            "approvals.approvalrequest",
            {"after": {"state": "submitted"}},
            ["approval.requested"],
        ),
        ("transition", "approvals.approvalrequest", {"after": {"state": "in_review"}}, []),
        (
            "transition",
            "approvals.approvalrequest",
            {"after": {"state": "rejected"}},
            ["approval.decided"],
        ),
        ("transition", "approvals.approvalrequest", {"after": {"state": "superseded"}}, []),
        ("create", "approvals.approvalrequest", {"after": {"state": "draft"}}, []),
        ("create", "registry.deployment", {}, ["deployment.recorded"]),
        ("transition", "registry.deployment", {"after": {"status": "retired"}}, []),
        ("transition", "workers.incident", {"after": {"status": "closed"}}, ["incident.closed"]),
        (
            "transition",
            "workers.retrainingjob",
            {"after": {"status": "failed"}},
            ["retraining.finished"],
        ),
        ("view", "registry.modelversion", {}, []),
    ],
)
def test_event_mapping(action: str, object_type: str, changes: Any, expected: list[str]) -> None:
    assert webhooks.event_names(action, object_type, changes) == expected


def test_audit_events_without_subscribers_cost_at_most_one_query(
    world: Any, django_assert_max_num_queries: Any
) -> None:
    with transaction.atomic(), django_assert_max_num_queries(1):
        webhooks.on_audit_event(
            AuditEvent(action="create", object_type="registry.modelversion", changes={})
        )
    with transaction.atomic(), django_assert_max_num_queries(0):
        webhooks.on_audit_event(AuditEvent(action="view", object_type="registry.artifact"))


def test_stalled_deliveries_are_requeued(
    world: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    """A committed delivery whose task message was lost is sent by the beat task."""
    from datetime import timedelta

    from django.utils import timezone

    sub, _ = subscribe(world, "contributor_a", receiver.url, ALL, world.uc_a)
    with transaction.atomic():  # no on_commit capture: the enqueue is "lost"
        f.model_version(world.tree["a"]["model"])
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(hours=1))
    assert receiver.received == []
    assert webhooks.requeue_stalled() == 1
    assert receiver.events() == ["version.registered"]
    assert webhooks.requeue_stalled() == 0
