from __future__ import annotations

import json
from typing import Any

from django.test import Client

from audits.models import AuditEvent, VerificationRun


def browser(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


def test_audit_pages_are_for_auditing_roles_only(world: Any) -> None:
    for who in ("auditor", "board", "risk", "admin"):
        assert browser(world, who).get("/audit/").status_code == 200, who
        assert browser(world, who).get("/audit/chain/").status_code == 200, who
    for who in ("contributor_a", "viewer_a", "outsider"):
        assert browser(world, who).get("/audit/").status_code == 403, who
        assert browser(world, who).post("/audit/chain/verify/").status_code == 403, who


def test_trail_filters_by_object_and_action(world: Any) -> None:
    mv = world.tree["a"]["model_version"]
    body = (
        browser(world, "auditor")
        .get(f"/audit/?object_type=registry.modelversion&object_id={mv.pk}&action=create")
        .content.decode()
    )
    assert str(mv) in body
    assert world.uc_b.name not in body


def test_exports_carry_the_filtered_rows_and_are_audited(world: Any) -> None:
    client = browser(world, "auditor")
    uc = world.uc_a
    response = client.get(f"/audit/?object_type=registry.usecase&object_id={uc.pk}&format=jsonl")
    lines = [json.loads(x) for x in b"".join(response.streaming_content).decode().splitlines()]
    expected = AuditEvent.objects.filter(object_type="registry.usecase", object_id=str(uc.pk))
    assert [row["seq"] for row in lines] == sorted(expected.values_list("seq", flat=True))
    assert all(json.loads(row["payload"])["object_id"] == str(uc.pk) for row in lines)
    export = AuditEvent.objects.order_by("-seq").first()
    assert (export.action, export.actor_repr) == ("export", "auditor_user")
    csv_body = b"".join(client.get("/audit/?action=grant&format=csv").streaming_content).decode()
    header, *rows = csv_body.strip().splitlines()
    assert header.startswith("seq,created_at,actor_repr,action")
    assert len(rows) == AuditEvent.objects.filter(action="grant").count()


def test_verify_now_runs_the_chain_walk_and_shows_the_verdict(
    world: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = browser(world, "auditor")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/audit/chain/verify/").status_code == 302
    run = VerificationRun.objects.get()
    assert run.ok is True and run.length == AuditEvent.objects.count()
    assert "intact" in client.get("/audit/chain/").content.decode()
