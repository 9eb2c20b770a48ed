"""Every write path produces exactly one matching audit event, in the same transaction.

Paths covered here: REST API, management command, Celery task, and the
atomicity of change + event in both directions. The browser form and admin
paths are in the same style further down.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from audits import services as audit_services
from audits.models import AuditEvent
from portal.models import ApiToken
from portal.permissions import Access
from registry import services
from registry.models import Dataset, UseCase


def _new_events(since: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__gt=since).order_by("seq"))


def _head() -> int:
    last = AuditEvent.objects.order_by("-seq").first()
    return last.seq if last else 0


def test_api_create_writes_one_event(world: Any) -> None:
    start = _head()
    response = world.client("contributor_a").post(
        "/api/v1/datasets/", {"use_case": world.uc_a.pk, "name": "new-ds"}, format="json"
    )
    assert response.status_code == 201
    events = _new_events(start)
    assert [(e.action, e.object_type, e.object_id) for e in events] == [
        ("create", "registry.dataset", str(response.json()["id"]))
    ]
    assert events[0].channel == "api" and events[0].actor_repr == "contrib_a"


def test_api_update_writes_one_event_with_before_and_after(world: Any) -> None:
    ds = world.tree["a"]["dataset"]
    start = _head()
    response = world.client("contributor_a").patch(
        f"/api/v1/datasets/{ds.pk}/", {"description": "now described"}, format="json"
    )
    assert response.status_code == 200
    (event,) = _new_events(start)
    assert event.action == "update"
    assert event.changes == {
        "before": {"description": ""},
        "after": {"description": "now described"},
    }


def test_api_no_op_update_writes_no_event(world: Any) -> None:
    ds = world.tree["a"]["dataset"]
    start = _head()
    response = world.client("contributor_a").patch(
        f"/api/v1/datasets/{ds.pk}/", {"name": ds.name}, format="json"
    )
    assert response.status_code == 200
    assert _new_events(start) == []


def test_management_command_writes_one_event(world: Any) -> None:
    start = _head()
    out = StringIO()
    call_command(
        "issue_token",
        "--user",
        "contrib_a",
        "--name",
        "ci",
        "--use-case",
        str(world.uc_a.pk),
        stdout=out,
        stderr=StringIO(),
    )
    secret = out.getvalue().strip()
    (event,) = _new_events(start)
    token = ApiToken.objects.get()
    assert event.action == "token_issue" and event.object_id == str(token.pk)
    assert event.channel == "command"
    assert secret not in event.payload and token.matches(secret)


def test_celery_task_writes_one_event(world: Any) -> None:
    from django.core.files.base import ContentFile

    from registry.tasks import summarize_dataset_version

    version = services.create_dataset_version(
        Access.system(),
        dataset=world.tree["a"]["dataset"],
        version="upload",
        file=ContentFile(b"x,y\n1,2\n", name="u.csv"),
    )
    start = _head()
    assert summarize_dataset_version(version.pk) == "ready"
    (event,) = _new_events(start)
    assert (event.action, event.object_id, event.channel) == ("update", str(version.pk), "task")


def test_failed_change_leaves_no_event(world: Any) -> None:
    start = _head()
    count = Dataset.objects.count()
    response = world.client("contributor_a").post(
        "/api/v1/datasets/", {"use_case": world.uc_a.pk, "name": ""}, format="json"
    )
    assert response.status_code == 400
    assert Dataset.objects.count() == count and _new_events(start) == []


@pytest.mark.django_db(transaction=True)
def test_failed_event_leaves_no_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN the audit write fails WHEN a use case is created THEN nothing is saved."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit storage unavailable")

    monkeypatch.setattr(services, "record", broken)
    with pytest.raises(RuntimeError):
        services.create_use_case(Access.system(), name="Never saved", purpose="x")
    assert not UseCase.objects.filter(name="Never saved").exists()
    assert audit_services.record is not broken  # only the service's reference was broken


def test_reading_a_sensitive_datasheet_is_logged_but_an_internal_one_is_not(world: Any) -> None:
    from tests import factories as f

    secret = f.dataset_version(world.tree["a"]["dataset"], sensitivity="restricted")
    plain = world.tree["a"]["dataset_version"]
    client = world.client("auditor")
    start = _head()
    assert client.get(f"/api/v1/dataset-versions/{plain.pk}/").status_code == 200
    assert _new_events(start) == []
    assert client.get(f"/api/v1/dataset-versions/{secret.pk}/").status_code == 200
    (event,) = _new_events(start)
    assert (event.action, event.object_id, event.actor_repr) == (
        "view",
        str(secret.pk),
        "auditor_user",
    )


def test_reading_an_artifact_is_logged(world: Any) -> None:
    artifact = world.tree["b"]["artifact"]
    start = _head()
    assert world.client("board").get(f"/api/v1/artifacts/{artifact.pk}/").status_code == 200
    (event,) = _new_events(start)
    assert (event.action, event.object_type) == ("view", "registry.artifact")
    # An unseen artifact is a 404 and leaves no trace of its content.
    assert world.client("contributor_a").get(f"/api/v1/artifacts/{artifact.pk}/").status_code == 404


def test_admin_add_and_change_go_through_services(world: Any) -> None:
    from django.test import Client

    admin = world.users["admin"]
    admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    start = _head()
    response = client.post(
        "/admin/registry/dataset/add/",
        {"use_case": world.uc_a.pk, "name": "from-admin", "description": "", "owner": ""},
    )
    assert response.status_code == 302, response.content[:2000]
    ds = Dataset.objects.get(name="from-admin")
    (event,) = _new_events(start)
    assert (event.action, event.object_id, event.channel) == ("create", str(ds.pk), "admin")
    start = _head()
    response = client.post(
        f"/admin/registry/dataset/{ds.pk}/change/",
        {"use_case": world.uc_a.pk, "name": "from-admin", "description": "edited", "owner": ""},
    )
    assert response.status_code == 302
    (event,) = _new_events(start)
    assert event.action == "update" and event.changes["after"] == {"description": "edited"}


def test_admin_refuses_invalid_status_edit_and_writes_nothing(world: Any) -> None:
    """The admin shows status read-only; transitions go through services only."""
    from django.test import Client

    admin = world.users["admin"]
    admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    uc = world.uc_a
    start = _head()
    page = client.get(f"/admin/registry/usecase/{uc.pk}/change/")
    assert page.status_code == 200
    assert b'name="status"' not in page.content
    assert _new_events(start) == []


def test_admin_creates_service_account_and_revokes_token_audited(world: Any) -> None:
    from django.contrib.auth.models import Group
    from django.test import Client

    from portal.services import issue_token

    admin = world.users["admin"]
    admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    start = _head()
    contributor = Group.objects.get(name="contributor")
    response = client.post(
        "/admin/portal/serviceaccount/add/",
        {"username": "ci-bot", "description": "CI", "groups": [contributor.pk]},
    )
    assert response.status_code == 302, response.content[:1500]
    (event,) = _new_events(start)
    assert event.action == "create" and event.changes["after"]["username"] == "ci-bot"
    token, _ = issue_token(Access.system(), user=world.users["contributor_a"], name="t")
    start = _head()
    client.post(
        "/admin/portal/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
    (event,) = _new_events(start)
    assert event.action == "token_revoke"
