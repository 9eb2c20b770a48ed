"""Drift results per window, alert rules, incidents (dedup, notifications, people's actions)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from approvals.facts import open_incidents
from approvals.models import Notification
from audits.models import AuditEvent
from portal.permissions import Access
from tests.monitoring import rig
from workers import services
from workers.models import AlertRule, DriftResult, Incident, IncidentEvent, WindowProfile


@pytest.fixture
def dep(world: Any) -> Any:
    rig.install_reference(world.tree["a"]["dataset_version"])
    uc = world.uc_a
    uc.business_owner = world.users["risk"]
    uc.technical_owner = world.users["contributor_a"]
    uc.save()
    for name in ("risk", "contributor_a"):
        world.users[name].email = f"{name}@example.org"
        world.users[name].save()
    return world.tree["a"]["deployment"]


def _send(world: Any, dep: Any, hours: float, capture: Any, **kw: Any) -> None:
    with capture(execute=True):
        response = rig.post(
            world.client("contributor_a"),
            dep,
            {
                **rig.rows(kw.pop("n", 600), seed=int(hours * 10), **kw),
                "timestamp": rig.hours_ago(hours),
            },
        )
    assert response.status_code == 202, response.json()


def _rule(dep: Any, **data: Any) -> AlertRule:
    data.setdefault("name", "Data drift")
    data.setdefault("kind", "drift")
    data.setdefault("severity", "high")
    return services.create_alert_rule(Access.system(), dep, **data)


def test_drift_result_flags_the_drifting_feature_only(world: Any, dep: Any, capture: Any) -> None:
    _send(world, dep, 3.5, capture, income_factor=1.6)
    window = WindowProfile.objects.get()
    result = services.evaluate_window(window.pk)
    by_name = {f["feature"]: f for f in result.features}
    assert by_name["income"]["drifted"] is True
    assert by_name["income"]["method"] == "wasserstein"  # Evidently's rule: > 1,000 ref rows
    assert not by_name["age"]["drifted"] and not by_name["region"]["drifted"]
    assert by_name["region"]["method"] == "jensenshannon"
    assert result.n_drifted == 1 and result.dataset_drift is False  # 1/3 < 0.5
    assert result.prediction["method"] and result.prediction["drifted"] is False
    assert result.service["requests"] == 600 and result.service["latency_ms"]["p95"] > 0
    assert result.quality["features"]
    assert DriftResult.objects.count() == 1
    assert not WindowProfile.objects.get().dirty


def test_per_feature_overrides_from_the_monitoring_config(
    world: Any, dep: Any, capture: Any
) -> None:
    _send(world, dep, 3.5, capture, income_factor=1.6)
    cfg = services.update_monitoring_config(
        Access(user=world.users["contributor_a"]),
        dep,
        drift_config={
            "per_feature_method": {"income": "psi"},
            "per_feature_threshold": {"income": 50.0},
            "drift_share": 0.3,
        },
    )
    assert cfg.pk
    result = services.evaluate_window(WindowProfile.objects.get().pk)
    income = next(f for f in result.features if f["feature"] == "income")
    assert income["method"] == "psi" and income["threshold"] == 50.0 and not income["drifted"]
    assert AuditEvent.objects.filter(object_type="workers.monitoringconfig").count() == 1
    with pytest.raises(Exception, match="unknown features"):
        services.update_monitoring_config(
            Access.system(), dep, drift_config={"per_feature_method": {"nope": "ks"}}
        )
    response = world.client("contributor_a").patch(
        f"/api/v1/deployments/{dep.pk}/monitoring-config/",
        {"drift_config": {"method": "bogus"}},
        format="json",
    )
    assert response.status_code == 400 and "drift_config" in response.json()["errors"]


def test_closed_windows_are_evaluated_by_the_beat_and_rules_open_one_incident(
    world: Any, dep: Any, capture: Any
) -> None:
    rule = _rule(dep, feature="income", action="retrain")
    _send(world, dep, 5.5, capture, income_factor=1.6)
    _send(world, dep, 3.5, capture, income_factor=1.7)
    _send(world, dep, 0.0, capture, income_factor=1.8)  # the open window: not judged yet
    mail.outbox.clear()
    with capture(execute=True):
        assert services.evaluate_closed_windows() == 2
    assert services.evaluate_closed_windows() == 0  # nothing behind any more
    incident = Incident.objects.get()  # two firings, one incident
    assert incident.rule == rule and incident.severity == "high" and incident.is_open
    assert incident.occurrences == 2
    assert "income" in incident.title
    kinds = list(incident.events.values_list("kind", flat=True))
    assert kinds == ["opened", "notified", "retraining_requested", "recurred"]
    assert incident.retraining_requested
    # owners notified once, in the app and by email
    notes = Notification.objects.filter(url=incident.get_absolute_url())
    assert sorted(n.user.username for n in notes) == ["contrib_a", "risk_user"]
    (email,) = mail.outbox
    assert sorted(email.to) == ["contributor_a@example.org", "risk@example.org"]
    assert incident.get_absolute_url() in email.body
    audit = AuditEvent.objects.filter(object_type="workers.incident", object_id=incident.pk)
    assert [e.action for e in audit.order_by("seq")] == ["create", "update"]
    assert audit.order_by("seq").last().changes["after"] == {"retraining_requested": True}
    # approval checks see it
    assert open_incidents(world.uc_a) == [{"severity": "high", "title": incident.title}]


def test_reevaluating_the_same_window_does_not_count_again(
    world: Any, dep: Any, capture: Any
) -> None:
    _rule(dep)
    services.update_monitoring_config(Access.system(), dep, drift_config={"drift_share": 0.3})
    _send(world, dep, 3.5, capture, income_factor=1.6)
    window = WindowProfile.objects.get()
    services.evaluate_window(window.pk)
    services.evaluate_window(window.pk)
    assert Incident.objects.get().occurrences == 1
    assert IncidentEvent.objects.filter(kind="recurred").count() == 0


def test_a_closed_incident_lets_the_rule_open_a_new_one(world: Any, dep: Any, capture: Any) -> None:
    rule = _rule(dep, feature="income")
    _send(world, dep, 5.5, capture, income_factor=1.6)
    services.evaluate_closed_windows()
    first = Incident.objects.get()
    services.close_incident(
        Access(user=world.users["contributor_a"]), first, resolution="Known: new campaign."
    )
    assert open_incidents(world.uc_a) == []
    _send(world, dep, 3.5, capture, income_factor=1.6)
    services.evaluate_closed_windows()
    assert Incident.objects.filter(rule=rule).count() == 2
    assert Incident.objects.filter(rule=rule, closed_at__isnull=True).count() == 1


def test_service_and_metric_rules(world: Any, dep: Any, capture: Any) -> None:
    _rule(dep, name="Slow", kind="latency_p95", threshold=20.0, severity="medium")
    _rule(dep, name="Failing", kind="error_rate", threshold=0.01, severity="low")
    _rule(dep, name="Accuracy", kind="metric_floor", metric="accuracy", threshold=0.99)
    _rule(dep, name="Quiet", kind="latency_p95", threshold=10_000.0)
    _send(world, dep, 3.5, capture, errors=30, with_ids="m")
    labels = [True] * 600  # the scores are uniform: accuracy about 50%
    with capture(execute=True):
        rig.post(
            world.client("contributor_a"),
            dep,
            {"prediction_ids": [f"m-{i}" for i in range(600)], "labels": labels},
            what="labels",
        )
    services.evaluate_closed_windows()
    titles = sorted(Incident.objects.values_list("title", flat=True))
    assert len(titles) == 3, titles
    assert titles[0].startswith("Accuracy: accuracy 0.")
    assert titles[1].startswith("Failing: error rate 5.00%")
    assert titles[2].startswith("Slow: latency p95")


def test_rule_validation(world: Any, dep: Any) -> None:
    client = world.client("contributor_a")
    base = {"deployment": dep.pk, "name": "r"}
    cases = [
        ({"kind": "metric_floor", "metric": "f1", "threshold": 0.5}, "metric"),
        ({"kind": "latency_p95"}, "threshold"),
        ({"kind": "drift", "feature": "nope"}, "feature"),
        ({"kind": "error_rate", "threshold": 0.1, "feature": "age"}, "feature"),
        ({"kind": "teleport"}, "kind"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/alert-rules/", {**base, **body}, format="json")
        assert response.status_code == 400, response.json()
        assert field in response.json()["errors"], response.json()
    ok = client.post("/api/v1/alert-rules/", {**base, "kind": "drift"}, format="json")
    assert ok.status_code == 201
    off = client.patch(f"/api/v1/alert-rules/{ok.json()['id']}/", {"enabled": False}, format="json")
    assert off.status_code == 200 and off.json()["enabled"] is False
    events = AuditEvent.objects.filter(object_type="workers.alertrule").order_by("seq")
    assert [e.action for e in events] == ["create", "update"]
    viewer = world.client("viewer_a").post(
        "/api/v1/alert-rules/", {**base, "kind": "drift"}, format="json"
    )
    assert viewer.status_code == 403


def test_people_acknowledge_comment_and_close_through_the_api(
    world: Any, dep: Any, capture: Any
) -> None:
    _rule(dep, feature="income", action="rollback_review")
    _send(world, dep, 3.5, capture, income_factor=1.6)
    services.evaluate_closed_windows()
    incident = Incident.objects.get()
    assert incident.rollback_review
    url = f"/api/v1/incidents/{incident.pk}/"
    client = world.client("contributor_a")
    assert world.client("viewer_a").post(url + "acknowledge/", {}, format="json").status_code == 403
    r = client.post(url + "acknowledge/", {"note": "looking"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    assert client.post(url + "acknowledge/", {}, format="json").status_code == 409
    assert client.post(url + "comment/", {"text": "campaign"}, format="json").status_code == 200
    r = client.post(url + "request-retraining/", {"note": "data moved"}, format="json")
    assert r.json()["retraining_requested"] is True
    assert client.post(url + "close/", {}, format="json").status_code == 400
    r = client.post(url + "close/", {"resolution": "Retrained as 1.3"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "closed"
    assert client.post(url + "close/", {"resolution": "again"}, format="json").status_code == 409
    kinds = [e["kind"] for e in client.get(url).json()["events"]]
    assert kinds == [
        "opened",
        "notified",
        "rollback_review",
        "acknowledged",
        "comment",
        "retraining_requested",
        "closed",
    ]
    actions = AuditEvent.objects.filter(object_type="workers.incident").order_by("seq")
    assert [e.actor_repr for e in actions] == ["system", "system", *["contrib_a"] * 4]
    # a risk officer (may change use cases) can act too; a board member only reads
    board = world.client("board").post(
        "/api/v1/incidents/", {"deployment": dep.pk, "title": "x"}, format="json"
    )
    assert board.status_code == 403
    risk = world.client("risk").post(
        "/api/v1/incidents/",
        {"deployment": dep.pk, "title": "Complaint from a customer", "severity": "low"},
        format="json",
    )
    assert risk.status_code == 201, risk.json()
    assert risk.json()["opened_by"] == "risk_user"


def test_evaluate_on_demand(world: Any, dep: Any, capture: Any) -> None:
    url = f"/api/v1/deployments/{dep.pk}/evaluate/"
    assert world.client("contributor_a").post(url).status_code == 404  # no telemetry yet
    _send(world, dep, 0.0, capture, n=300, income_factor=2.0)
    _rule(dep, feature="income")
    r = world.client("contributor_a").post(url)
    assert r.status_code == 200, r.json()
    assert "income" in [f["feature"] for f in r.json()["features"] if f["drifted"]]
    assert Incident.objects.count() == 0  # the window is still open: rules wait for its end
    assert world.client("viewer_a").post(url).status_code == 403
