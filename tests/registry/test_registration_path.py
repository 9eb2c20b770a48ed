"""The model-version registration path a pipeline takes (issue 8's benchmark).

A service account's scoped token, ``POST /api/v1/model-versions/`` with an
``Idempotency-Key``: the statements it issues stay within budget while every rule
still holds (rights, audit, idempotency, validation, links, webhooks). Approvals
voided when a registered version's datasets change later: tests/approvals/test_workflow.py.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from audits.models import AuditEvent
from lineage.models import LineageEdge, LineageNode
from portal import roles
from portal.auth import BearerTokenAuthentication
from portal.models import WebhookDelivery
from portal.permissions import GRANTS_ATTR, Access
from portal.services import grant_access, issue_token, revoke_access, revoke_token
from portal.webhooks import create_subscription
from registry.models import ModelVersion
from tests import factories as f
from tests.helpers import (
    fast_password_hashing,  # noqa: F401  (autouse fixture)
    service_account,
)

TOKEN_TABLE = '"portal_apitoken"'

SYSTEM = Access.system()
URL = "/api/v1/model-versions/"

#: Round trips to the database one registration makes (one dataset link), BEGIN and COMMIT
#: not counted: 48 statements before issue 8's work, 19 before the lineage node of a new
#: version was one upsert, 17 before its edges were inserted from the linked rows' nodes,
#: the webhook subscriptions read with the audit event, the unique check left to the
#: database and the Idempotency-Key record written once with its answer, 13 before
#: savepoints travelled with the next statement, and 11 before the node, link and edge
#: inserts travelled with the audit event (portal/db/postgresql). Keep it from creeping back.
STATEMENT_BUDGET = 7
_SAVEPOINTS = re.compile(r'^(BEGIN; |(SAVEPOINT|RELEASE SAVEPOINT) "[^"]+"; )+')


@pytest.fixture
def pipeline(world: Any) -> dict[str, Any]:
    """A service account with contribute rights on use case A, its token scoped to A."""
    account = service_account("pipeline-bot", roles.CONTRIBUTOR, world.uc_a, "contribute")
    user, token, secret, client = account.user, account.token, account.secret, account.client
    return {"user": user, "token": token, "secret": secret, "client": client}


def body(world: Any, version: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": world.tree["a"]["model"].pk,
        "version": version,
        "metrics": {"auc": 0.91},
        "parameters": {"lr": 0.1},
        "training_datasets": [world.tree["a"]["dataset_version"].pk],
        "code_commit": "9fceb02",
        "intended_use": "Scoring.",
        **extra,
    }


def post(client: APIClient, data: dict[str, Any], key: str | None = None) -> Any:
    return client.post(
        URL,
        json.dumps(data),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )


def test_statement_budget_and_what_is_no_longer_asked(world: Any, pipeline: Any) -> None:
    post(pipeline["client"], body(world, "warm-up"))  # content types etc. cached per process
    with CaptureQueriesContext(connection) as ctx:
        response = post(pipeline["client"], body(world, "2.0"))
    assert response.status_code == 201, response.content
    # round trips; a savepoint travels with the statement after it (portal/db/postgresql)
    statements = [_SAVEPOINTS.sub("", q["sql"]) for q in ctx.captured_queries]
    assert len(statements) <= STATEMENT_BUDGET, "\n".join(s[:160] for s in statements)
    assert not [s for s in statements if s.startswith(("SAVEPOINT", "RELEASE"))]
    joined = "\n".join(statements)
    # rights come with the token: one statement reads it (its text holds the two grant
    # subqueries), never a query of guardian's tables
    token_reads = [s for s in statements if s.startswith("SELECT") and TOKEN_TABLE in s]
    assert len(token_reads) == 1
    assert token_reads[0].endswith(f"\"prefix\" = '{pipeline['token'].prefix}'")
    assert not [s for s in statements if "objectpermission" in s and s not in token_reads]
    # the use case comes with the model (a join), not in a statement of its own
    assert not [s for s in statements if s.startswith('SELECT "registry_usecase"')]
    # nothing is read back for the answer: no artifacts, evidence or links queried
    assert "registry_artifact" not in joined and "registry_evidence" not in joined
    assert "approvals_approvalrequest" not in joined  # nothing to void on a new version
    # the new version's lineage node is inserted (no read first), its edges are inserted
    # from the dataset versions' nodes (no read either), and both travel with its
    # dataset link and its audit event in one round trip, which also reads the webhook
    # subscriptions
    assert not [s for s in statements if s.startswith("SELECT") and "lineage_lineage" in s]
    carried = [s for s in statements if "charter_audit_append" in s]
    assert len(carried) == 1
    for part in (
        'INSERT INTO "lineage_lineagenode"',
        'INSERT INTO "registry_modelversion_training_datasets"',
        'INSERT INTO "lineage_lineageedge"',
        "portal_webhooksubscription",
    ):
        assert [s for s in statements if part in s] == carried, part
    assert "SELECT n.id" in carried[0] or "n.id, (SELECT" in carried[0]


def test_answer_matches_what_was_stored(world: Any, pipeline: Any) -> None:
    dv = world.tree["a"]["dataset_version"]
    extra = f.dataset_version(world.tree["a"]["dataset"])
    other = f.dataset_version(f.dataset(world.uc_a, name="aaa-first-by-name"))
    data = body(
        world,
        "3.0",
        validation_datasets=[extra.pk, extra.pk],
        test_datasets=[dv.pk, extra.pk, other.pk],
    )
    response = post(pipeline["client"], data)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["training_datasets"] == [dv.pk]
    assert created["validation_datasets"] == [extra.pk]
    assert created["test_datasets"] == [other.pk, extra.pk, dv.pk]  # the model's ordering
    assert created["artifacts"] == [] and created["evidence"] == []
    assert created["registered_by"] == "pipeline-bot"
    assert created["use_case"] == world.uc_a.pk
    read = pipeline["client"].get(f"{URL}{created['id']}/").json()
    assert {k: v for k, v in read.items() if k != "updated_at"} == {
        k: v for k, v in created.items() if k != "updated_at"
    }
    version = ModelVersion.objects.get(pk=created["id"])
    assert list(version.validation_datasets.values_list("pk", flat=True)) == [extra.pk]
    # exactly one audit event, naming the links it made
    events = AuditEvent.objects.filter(
        object_type="registry.modelversion", object_id=str(version.pk)
    )
    assert events.count() == 1
    after = events.get().changes["after"]
    assert after["training_datasets"] == [dv.pk]
    assert after["validation_datasets"] == [extra.pk]
    assert after["test_datasets"] == sorted([dv.pk, extra.pk, other.pk])
    # lineage edges into the new version, one per link
    node = LineageNode.objects.get(kind="model_version", object_id=version.pk)
    kinds = sorted(LineageEdge.objects.filter(dst=node).values_list("kind", flat=True))
    assert kinds == ["tested_on"] * 3 + ["trained_on", "validated_on"]


def test_retry_with_the_same_key_answers_and_creates_nothing(world: Any, pipeline: Any) -> None:
    key = uuid.uuid4().hex
    first = post(pipeline["client"], body(world, "4.0"), key)
    assert first.status_code == 201
    versions, events = ModelVersion.objects.count(), AuditEvent.objects.count()
    again = post(pipeline["client"], body(world, "4.0"), key)
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert (ModelVersion.objects.count(), AuditEvent.objects.count()) == (versions, events)
    other = post(pipeline["client"], body(world, "4.1"), key)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["errors"]


def test_validation_errors_name_fields(world: Any, pipeline: Any) -> None:
    before = ModelVersion.objects.count()
    duplicate = post(pipeline["client"], body(world, world.tree["a"]["model_version"].version))
    assert duplicate.status_code == 400
    assert "non_field_errors" in duplicate.json()["errors"]
    bad_metric = post(pipeline["client"], body(world, "5.0", metrics={"auc": "high"}))
    assert bad_metric.status_code == 400 and "metrics" in bad_metric.json()["errors"]
    other_use_case = post(
        pipeline["client"],
        body(world, "5.1", training_datasets=[world.tree["b"]["dataset_version"].pk]),
    )
    assert other_use_case.status_code == 400
    assert "training_datasets" in other_use_case.json()["errors"]
    foreign_model = post(pipeline["client"], body(world, "5.2", model=world.tree["b"]["model"].pk))
    assert foreign_model.status_code == 400 and "model" in foreign_model.json()["errors"]
    assert ModelVersion.objects.count() == before


def test_view_rights_alone_are_refused(world: Any) -> None:
    client = service_account("reader-bot", roles.VIEWER, world.uc_a, "view").client
    before = ModelVersion.objects.count()
    response = post(client, body(world, "6.0"))
    assert response.status_code == 403, response.content
    assert ModelVersion.objects.count() == before


def test_revocations_count_from_the_next_request(world: Any, pipeline: Any) -> None:
    assert post(pipeline["client"], body(world, "7.0")).status_code == 201
    revoke_access(SYSTEM, world.uc_a, pipeline["user"])
    assert post(pipeline["client"], body(world, "7.1")).status_code in (400, 403)
    grant_access(SYSTEM, world.uc_a, pipeline["user"], "contribute")
    assert post(pipeline["client"], body(world, "7.2")).status_code == 201
    revoke_token(SYSTEM, pipeline["token"])
    assert post(pipeline["client"], body(world, "7.3")).status_code == 401
    assert not ModelVersion.objects.filter(version__in=["7.1", "7.3"]).exists()


def test_group_grants_reach_through_the_token(world: Any) -> None:
    team = Group.objects.create(name="scoring-team")
    member = f.user("team-bot")
    member.groups.add(team)
    grant_access(SYSTEM, world.uc_a, team, "contribute")
    _, secret = issue_token(SYSTEM, user=member, name="team", use_cases=[])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert post(client, body(world, "8.0")).status_code == 201
    refused = post(client, body(world, "8.1", model=world.tree["b"]["model"].pk))
    assert refused.status_code == 400 and "model" in refused.json()["errors"]


@pytest.mark.parametrize(
    "who", ["admin", "board", "risk", "auditor", "contributor_a", "viewer_a", "outsider"]
)
def test_rights_read_with_the_token_equal_the_lazy_reading(world: Any, who: str) -> None:
    """What the token statement preloads answers every question as the queries do."""
    user = world.users[who]
    team = Group.objects.create(name=f"team-{who}")
    user.groups.add(team)
    grant_access(SYSTEM, world.uc_b, team, "view")
    for scope in ([], [world.uc_b]):  # everyone sees B through the team
        token, secret = issue_token(SYSTEM, user=user, name=f"t{len(scope)}", use_cases=scope)
        authed, _ = BearerTokenAuthentication().authenticate_token(secret)
        assert hasattr(authed, GRANTS_ATTR) != authed.is_superuser
        fresh = type(user).objects.get(pk=user.pk)
        preloaded, lazy = Access(authed, token), Access(fresh, token)
        for uc in (world.uc_a, world.uc_b):
            for question in ("can_view", "can_contribute", "can_change_use_case"):
                assert getattr(preloaded, question)(uc) == getattr(lazy, question)(uc), (
                    question,
                    uc,
                )
        for codename in ("view_usecase", "contribute_usecase", "add_usecase", "manage_access"):
            assert preloaded._global(codename) == lazy._global(codename), codename
        visible = preloaded.visible_use_case_ids()
        expected = lazy.visible_use_case_ids()
        if expected is None:
            assert visible is None
        else:
            assert set(visible.values_list("id", flat=True)) == set(
                expected.values_list("id", flat=True)
            )


def test_webhook_fires_on_registration(world: Any, pipeline: Any, settings: Any) -> None:
    settings.CHARTER_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    sub, _ = create_subscription(
        SYSTEM, url="http://127.0.0.1:9/charter", events=["version.registered"]
    )
    create_subscription(SYSTEM, url="http://127.0.0.1:9/other", events=["incident.opened"])
    create_subscription(
        SYSTEM, url="http://127.0.0.1:9/off", events=["version.registered"], active=False
    )
    response = post(pipeline["client"], body(world, "9.0"))
    assert response.status_code == 201
    deliveries = WebhookDelivery.objects.filter(event="version.registered")
    assert [d.subscription_id for d in deliveries] == [sub.pk]
    assert deliveries.get().payload["object"]["id"] == str(response.json()["id"])


def _token_statements_prepared() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f'SELECT %FROM {TOKEN_TABLE}%."prefix" = $%'],
        )
        return cursor.fetchone()[0]


def test_the_token_statement_is_prepared_per_connection(world: Any, pipeline: Any) -> None:
    """Prepared on its second run in a database session (a new session, e.g. after the
    PostgreSQL restart in tests/faults, prepares it again); a rolled-back request (psycopg
    then deallocates what it prepared) does not break the next."""
    client = pipeline["client"]
    assert post(client, body(world, "p1")).status_code == 201
    assert post(client, body(world, "p2")).status_code == 201
    assert _token_statements_prepared() == 1
    # a refused request (rolled back) leaves the session usable
    assert post(client, body(world, "p1")).status_code == 400
    assert post(client, body(world, "p3")).status_code == 201
    assert post(client, body(world, "p4")).status_code == 201
    assert _token_statements_prepared() == 1
    # a revoked token fails on its next request: nothing is cached beyond the row read
    revoke_token(SYSTEM, pipeline["token"], reason="rotated")
    assert post(client, body(world, "p5")).status_code == 401


#: The same registration in a transaction of its own (as in production, where the request's
#: block is the outermost one): its Idempotency-Key record travels with COMMIT.
ROUND_TRIPS_WITH_COMMIT = 6


@pytest.mark.django_db(transaction=True)
def test_the_key_record_travels_with_commit_and_a_repeat_is_undone_there(
    world: Any, pipeline: Any
) -> None:
    post(pipeline["client"], body(world, "warm-up"))
    key = uuid.uuid4().hex
    with CaptureQueriesContext(connection) as ctx:
        first = post(pipeline["client"], body(world, "7.0"), key)
    assert first.status_code == 201, first.content
    sent = [q["sql"] for q in ctx.captured_queries if q["sql"] != "BEGIN"]  # Django's log line
    assert len(sent) <= ROUND_TRIPS_WITH_COMMIT, "\n".join(s[:160] for s in sent)
    assert 'INSERT INTO "portal_idempotencyrecord"' in sent[-1]
    assert sent[-1].endswith("; COMMIT") and "ON CONFLICT" not in sent[-1]
    versions, events = ModelVersion.objects.count(), AuditEvent.objects.count()
    nodes, edges = LineageNode.objects.count(), LineageEdge.objects.count()
    # the repeat runs, finds the key taken when its record reaches the database with its
    # COMMIT, is rolled back there and answers as the first did
    again = post(pipeline["client"], body(world, "7.0"), key)
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert (ModelVersion.objects.count(), AuditEvent.objects.count()) == (versions, events)
    assert (LineageNode.objects.count(), LineageEdge.objects.count()) == (nodes, edges)
    # a different request under the same key is refused, and writes nothing either
    other = post(pipeline["client"], body(world, "7.1"), key)
    assert other.status_code == 422
    assert not ModelVersion.objects.filter(version="7.1").exists()
    assert AuditEvent.objects.count() == events
    from audits.verify import verify_chain

    assert verify_chain().ok
