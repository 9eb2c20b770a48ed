"""Browser pages: who sees what, who may write, and forms that go through the services."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audits.models import AuditEvent
from registry.models import Dataset, ModelVersion, UseCase
from tests import factories as f

READERS_OF_A = ["admin", "board", "risk", "auditor", "contributor_a", "viewer_a"]
BLIND_TO_A = ["contributor_b", "outsider"]


def browser(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


def detail_urls(tree: dict[str, Any]) -> list[str]:
    return [
        f"/use-cases/{tree['use_case'].pk}/",
        f"/datasets/{tree['dataset'].pk}/",
        f"/datasets/versions/{tree['dataset_version'].pk}/",
        f"/models/{tree['model'].pk}/",
        f"/models/versions/{tree['model_version'].pk}/",
        f"/deployments/{tree['deployment'].pk}/",
    ]


LIST_PAGES = ["/", "/use-cases/", "/models/", "/datasets/", "/deployments/"]


@pytest.mark.parametrize("who", READERS_OF_A)
def test_readers_of_a_see_its_pages(world: Any, who: str) -> None:
    client = browser(world, who)
    for url in detail_urls(world.tree["a"]):
        assert client.get(url).status_code == 200, f"{who} could not open {url}"


@pytest.mark.parametrize("who", BLIND_TO_A)
def test_others_get_404_on_a_and_do_not_find_it_in_lists(world: Any, who: str) -> None:
    client = browser(world, who)
    for url in detail_urls(world.tree["a"]):
        assert client.get(url).status_code == 404, f"{url} leaked to {who}"
    names = [
        world.uc_a.name,
        str(world.tree["a"]["model_version"]),
        str(world.tree["a"]["dataset_version"]),
    ]
    for url in LIST_PAGES:
        body = client.get(url).content.decode()
        for name in names:
            assert name not in body, f"{name} leaked to {who} on {url}"


def test_anonymous_is_sent_to_login(world: Any) -> None:
    for url in [*LIST_PAGES, *detail_urls(world.tree["a"])]:
        response = Client().get(url)
        assert response.status_code == 302 and response.url.startswith("/login/"), url


@pytest.mark.parametrize(
    ("who", "status"),
    [("viewer_a", 403), ("board", 403), ("auditor", 403), ("contributor_b", 404)],
)
def test_writes_refused_for_those_without_rights(world: Any, who: str, status: int) -> None:
    client = browser(world, who)
    uc = world.uc_a
    mv = world.tree["a"]["model_version"]
    before = AuditEvent.objects.count()
    assert client.post(f"/use-cases/{uc.pk}/datasets/new/", {"name": "x"}).status_code == status
    assert client.post(f"/models/versions/{mv.pk}/evidence/new/", {}).status_code == status
    response = client.post(f"/models/versions/{mv.pk}/transition/", {"status": "in_review"})
    assert response.status_code == status
    assert AuditEvent.objects.count() == before
    mv.refresh_from_db()
    assert mv.status == "registered"


def test_contributor_creates_dataset_through_the_form_audited(world: Any) -> None:
    client = browser(world, "contributor_a")
    before = AuditEvent.objects.order_by("-seq").first().seq
    response = client.post(
        f"/use-cases/{world.uc_a.pk}/datasets/new/", {"name": "from-ui", "description": "d"}
    )
    ds = Dataset.objects.get(name="from-ui")
    assert response.status_code == 302 and response.url == f"/datasets/{ds.pk}/"
    (event,) = AuditEvent.objects.filter(seq__gt=before)
    assert (event.action, event.object_id, event.channel) == ("create", str(ds.pk), "ui")


def test_form_shows_service_validation_errors_and_writes_nothing(world: Any) -> None:
    client = browser(world, "contributor_a")
    model = world.tree["a"]["model"]
    before = AuditEvent.objects.count()
    response = client.post(
        f"/models/{model.pk}/versions/new/",
        {
            "version": "9.9",
            "metrics": '{"auc": "high"}',
            "subgroup_metrics": "{}",
            "parameters": "{}",
            "environment": "{}",
        },
    )
    assert response.status_code == 200
    assert "must be a finite number" in response.content.decode()
    assert not ModelVersion.objects.filter(version="9.9").exists()
    assert AuditEvent.objects.count() == before


def test_invalid_transition_in_the_ui_is_explained_not_applied(world: Any) -> None:
    client = browser(world, "contributor_a")
    mv = world.tree["a"]["model_version"]
    response = client.post(
        f"/models/versions/{mv.pk}/transition/", {"status": "deployed"}, follow=True
    )
    assert (
        "cannot go from &#x27;registered&#x27; to &#x27;deployed&#x27;" in response.content.decode()
    )
    mv.refresh_from_db()
    assert mv.status == "registered"


def test_risk_officer_edits_use_case_risk_tier(world: Any) -> None:
    client = browser(world, "risk")
    uc = world.uc_a
    data = {
        "name": uc.name,
        "purpose": uc.purpose,
        "decision_impact": "automated",
        "risk_tier": "limited",
        "review_cadence_days": 180,
    }
    response = client.post(f"/use-cases/{uc.pk}/edit/", data)
    assert response.status_code == 302
    uc.refresh_from_db()
    assert (uc.risk_tier, uc.decision_impact) == ("limited", "automated")
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.changes["after"]["risk_tier"] == "limited"


def test_model_card_shows_subgroup_table_and_flags_low_recall(world: Any) -> None:
    mv = f.model_version(
        world.tree["a"]["model"],
        metrics={"recall": 0.85},
        subgroup_metrics={"age<30": {"recall": 0.71}, "age>50": {"recall": 0.86}},
    )
    body = browser(world, "board").get(f"/models/versions/{mv.pk}/").content.decode()
    assert "Evaluation per subgroup" in body
    assert '<td class="num low">0.710</td>' in body
    assert '<td class="num">0.860</td>' in body


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", ["/use-cases/", "/models/", "/deployments/", "/datasets/", "/"])
def test_list_pages_query_count_does_not_grow_with_rows(world: Any, url: str) -> None:
    client = browser(world, "board")
    few = _queries(client, url)
    for _ in range(12):
        uc = f.use_case()
        mv = f.model_version(f.model(uc))
        f.dataset_version(f.dataset(uc))
        f.deployment(mv)
    assert UseCase.objects.count() > 12
    assert _queries(client, url) == few


def test_chart_json_cannot_close_its_script_element(world: Any) -> None:
    """A subgroup named like markup stays inside the chart's JSON (escaped)."""
    from django.test import Client

    from portal.permissions import Access
    from registry import services

    mv = world.tree["a"]["model_version"]
    evil = "</script><script>alert(1)</script>"
    services.update_model_version(Access.system(), mv, subgroup_metrics={evil: {"recall": 0.5}})
    client = Client()
    client.force_login(world.users["board"])
    page = client.get(mv.get_absolute_url()).content.decode()
    assert evil not in page
    assert "\\u003c/script\\u003e" in page


def test_a_use_case_page_shows_each_models_latest_versions_and_links_to_the_rest(
    world: Any,
) -> None:
    """A model retrained daily has hundreds of versions: its use case's page shows the
    newest few, in a constant number of queries, and links to the model's page for all."""
    from registry.views import VERSIONS_SHOWN

    uc = world.tree["a"]["use_case"]
    model = f.model(uc)
    client = browser(world, "board")
    url = f"/use-cases/{uc.pk}/"
    few = _queries(client, url)
    versions = [f.model_version(model, version=f"9.{i}") for i in range(VERSIONS_SHOWN + 4)]
    assert _queries(client, url) == few
    page = client.get(url).content.decode()
    newest = [v.version for v in versions[-VERSIONS_SHOWN:]]
    oldest = [v.version for v in versions[:4]]
    assert all(f">{v}</a>" in page for v in newest)
    assert not any(f">{v}</a>" in page for v in oldest)
    assert f'href="{model.get_absolute_url()}">all {len(versions)} versions</a>' in page


def test_a_models_page_lists_its_versions_in_pages_with_their_parents(world: Any) -> None:
    model = f.model(world.tree["a"]["use_case"])
    first = f.model_version(model, version="0.1")
    for i in range(55):
        f.model_version(model, version=f"1.{i}", parent=first)
    client = browser(world, "board")
    url = model.get_absolute_url()
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(url).content.decode()
    assert len(ctx.captured_queries) < 15  # not one per version (the parent is joined)
    assert "Page 1 of 2 · 56 in all" in page
    assert ">1.54</a>" in page and ">0.1</a>" not in page
    second = client.get(f"{url}?page=2").content.decode()
    assert ">0.1</a>" in second and ">1.54</a>" not in second
