"""Visibility from the outside (API lists and details, pages) and the monitoring pages."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from portal.permissions import Access
from tests.monitoring import rig
from workers import services
from workers.models import Incident, WindowProfile

LISTS = ["telemetry-batches", "telemetry-windows", "drift-results", "alert-rules", "incidents"]


@pytest.fixture
def monitored(world: Any, capture: Any) -> dict[str, Any]:
    """Both use cases' deployments with telemetry, a result and an open incident."""
    out = {}
    for side, who in (("a", "contributor_a"), ("b", "contributor_b")):
        rig.install_reference(world.tree[side]["dataset_version"])
        dep = world.tree[side]["deployment"]
        services.create_alert_rule(
            Access.system(), dep, name=f"Drift {side}", kind="drift", feature="income"
        )
        with capture(execute=True):
            rig.post(
                world.client(who),
                dep,
                {**rig.rows(400, income_factor=1.8), "timestamp": rig.hours_ago(2.5)},
            )
        services.evaluate_closed_windows()
        out[side] = dep
    assert Incident.objects.count() == 2
    return out


def _page(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


@pytest.mark.parametrize("endpoint", LISTS)
def test_lists_show_only_visible_use_cases(world: Any, monitored: Any, endpoint: str) -> None:
    url = f"/api/v1/{endpoint}/"
    seen = {
        who: {row["deployment"] for row in world.client(who).get(url).json()["results"]}
        for who in ("admin", "auditor", "contributor_a", "viewer_a", "contributor_b", "outsider")
    }
    a, b = monitored["a"].pk, monitored["b"].pk
    assert seen["admin"] == seen["auditor"] == {a, b}
    assert seen["contributor_a"] == seen["viewer_a"] == {a}
    assert seen["contributor_b"] == {b}
    assert seen["outsider"] == set()


def test_details_of_unseen_objects_are_404(world: Any, monitored: Any) -> None:
    incident = Incident.objects.get(deployment=monitored["a"])
    window = WindowProfile.objects.get(deployment=monitored["a"])
    client = world.client("contributor_b")
    for url in (
        f"/api/v1/incidents/{incident.pk}/",
        f"/api/v1/telemetry-windows/{window.pk}/",
        f"/api/v1/deployments/{monitored['a'].pk}/monitoring-config/",
    ):
        assert client.get(url).status_code == 404, url
        assert world.client("viewer_a").get(url).status_code == 200, url
    assert (
        client.post(f"/api/v1/incidents/{incident.pk}/close/", {"resolution": "x"}).status_code
        == 404
    )
    forged = client.post(
        "/api/v1/incidents/", {"deployment": monitored["a"].pk, "title": "x"}, format="json"
    )
    assert forged.status_code == 400 and "deployment" in forged.json()["errors"]


def test_token_scope_narrows_telemetry_too(world: Any, monitored: Any) -> None:
    from portal.services import issue_token

    _, secret = issue_token(
        Access.system(), user=world.users["admin"], name="b only", use_cases=[world.uc_b]
    )
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    rows = client.get("/api/v1/incidents/").json()["results"]
    assert {r["deployment"] for r in rows} == {monitored["b"].pk}
    assert rig.post(client, monitored["a"], rig.rows(5)).status_code == 404


def test_pages_are_404_for_unseen_deployments_and_incidents(world: Any, monitored: Any) -> None:
    incident = Incident.objects.get(deployment=monitored["a"])
    outsider = _page(world, "contributor_b")
    assert outsider.get(f"/deployments/{monitored['a'].pk}/monitoring/").status_code == 404
    assert outsider.get(f"/incidents/{incident.pk}/").status_code == 404
    listing = outsider.get("/incidents/").content.decode()
    assert escape(incident.title) not in listing and "Drift a" not in listing
    dashboard = outsider.get("/").content.decode()
    assert "Drift a" not in dashboard
    assert "Drift b" in dashboard


def test_monitoring_page_shows_drift_charts_and_the_feature_table(
    world: Any, monitored: Any
) -> None:
    dep = monitored["a"]
    html = _page(world, "viewer_a").get(f"/deployments/{dep.pk}/monitoring/").content.decode()
    for chart in ("drift-chart", "pred-chart", "lat-chart", "err-chart"):
        assert f'data-chart="{chart}"' in html, chart
    specs = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html, re.S)
    assert len(specs) >= 5
    for name, text in specs:
        assert "<" not in text, name  # escaped: no way out of the script element
        json.loads(text)
    assert "<script>" not in html and " onclick=" not in html  # no inline scripts
    table = html[html.index('id="feat-h"') :]
    body = table[table.index("<tbody>") :]
    first_row = body[: body.index("</tr>")]
    assert "income" in first_row and "drift" in first_row  # sorted by drift
    assert "Open incidents" in html
    assert "Evaluate this window now" not in html  # a viewer cannot
    contributor = _page(world, "contributor_a")
    assert (
        "Evaluate this window now"
        in contributor.get(f"/deployments/{dep.pk}/monitoring/").content.decode()
    )


def test_histogram_partial_and_window_picker(world: Any, monitored: Any) -> None:
    dep = monitored["a"]
    window = WindowProfile.objects.get(deployment=dep)
    client = _page(world, "viewer_a")
    partial = client.get(
        f"/deployments/{dep.pk}/monitoring/feature/?window={window.pk}&feature=region",
        HTTP_HX_REQUEST="true",
    )
    assert partial.status_code == 200
    text = partial.content.decode()
    assert "region: reference against this window" in text and "<html" not in text
    assert (
        client.get(
            f"/deployments/{dep.pk}/monitoring/feature/?window={window.pk}&feature=nope"
        ).status_code
        == 404
    )
    other = WindowProfile.objects.get(deployment=monitored["b"])
    assert (
        client.get(
            f"/deployments/{dep.pk}/monitoring/feature/?window={other.pk}&feature=age"
        ).status_code
        == 404
    )
    page = client.get(f"/deployments/{dep.pk}/monitoring/?window={window.pk}&feature=age&days=3")
    assert page.status_code == 200 and "age: reference against this window" in page.content.decode()


def test_deployment_page_links_monitoring_and_shows_incidents(world: Any, monitored: Any) -> None:
    dep = monitored["a"]
    html = _page(world, "viewer_a").get(f"/deployments/{dep.pk}/").content.decode()
    assert f"/deployments/{dep.pk}/monitoring/" in html
    assert escape(Incident.objects.get(deployment=dep).title) in html


def test_incident_page_and_actions(world: Any, monitored: Any) -> None:
    incident = Incident.objects.get(deployment=monitored["a"])
    viewer = _page(world, "viewer_a")
    html = viewer.get(f"/incidents/{incident.pk}/").content.decode()
    assert "Timeline" in html and "Opened" in html and "Acknowledge" not in html
    assert (
        viewer.post(f"/incidents/{incident.pk}/act/", {"action": "acknowledge"}).status_code == 403
    )
    client = _page(world, "contributor_a")
    assert "Acknowledge" in client.get(f"/incidents/{incident.pk}/").content.decode()
    for action, text in (
        ("acknowledge", "on it"),
        ("rollback", "canary first"),
        ("close", "fixed upstream"),
    ):
        r = client.post(f"/incidents/{incident.pk}/act/", {"action": action, "text": text})
        assert r.status_code == 302
    incident.refresh_from_db()
    assert incident.status == "closed" and incident.rollback_review
    assert incident.resolution == "fixed upstream"
    listing = client.get("/incidents/?state=closed").content.decode()
    assert escape(incident.title) in listing


def test_evaluate_button(world: Any, monitored: Any) -> None:
    dep = monitored["a"]
    window = WindowProfile.objects.get(deployment=dep)
    r = _page(world, "contributor_a").post(
        f"/deployments/{dep.pk}/monitoring/evaluate/", {"window": window.pk}
    )
    assert r.status_code == 302 and f"window={window.pk}" in r["Location"]
    r = _page(world, "viewer_a").post(f"/deployments/{dep.pk}/monitoring/evaluate/")
    assert r.status_code == 403
