"""A session user is read with their rights, roles and unread notifications in one
statement per request (portal.auth.SessionBackend), and nothing of it outlives the request."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from approvals.models import Notification
from approvals.services import notify
from portal import roles
from tests import factories as f

USER_TABLES = ("auth_user", "auth_group", "auth_permission", "approvals_notification")


def _page(client: Client, path: str = "/use-cases/") -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in ctx.captured_queries]


def test_one_statement_reads_the_user_their_rights_roles_and_inbox(db: Any) -> None:
    ann = f.user("ann", roles=(roles.BOARD,))
    notify([ann], "Please review the credit model")
    client = Client()
    client.force_login(ann)
    _page(client)
    html, sql = _page(client, "/audit/")  # needs audits.view_auditevent (a board right)
    reads = [s for s in sql if any(f'"{t}"' in s for t in USER_TABLES)]
    assert len(reads) == 1, reads
    assert all(f'"{t}"' in reads[0] for t in USER_TABLES)
    assert reads[0].endswith(f'WHERE "auth_user"."id" = {ann.pk}')
    # and PostgreSQL plans it once per database session (prepared on its second run)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%"approvals_notification"%WHERE "auth_user"."id" = $%'],
        )
        assert cursor.fetchone()[0] == 1
    assert '<span class="role-chip">governance board</span>' in html
    assert 'aria-label="Notifications: 1 unread"' in html


def test_role_inbox_and_account_changes_count_from_the_next_request(db: Any) -> None:
    ann = f.user("ann", roles=(roles.BOARD,))
    notify([ann], "Please review the credit model")
    client = Client()
    client.force_login(ann)
    assert client.get("/audit/").status_code == 200
    ann.groups.remove(Group.objects.get(name=roles.BOARD))
    ann.groups.add(Group.objects.get(name=roles.VIEWER))
    Notification.objects.filter(user=ann).update(read_at=ann.date_joined)
    html, _ = _page(client)
    assert '<span class="role-chip">viewer</span>' in html
    assert "governance board" not in html
    assert 'aria-label="Notifications: 0 unread"' in html
    assert client.get("/audit/").status_code in (403, 404)  # the board's right went with it
    ann.is_active = False
    ann.save(update_fields=["is_active"])
    response = client.get("/use-cases/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_real_login_is_served_by_the_same_backend(db: Any) -> None:
    f.user("bob", roles=(roles.AUDITOR,))
    client = Client()
    assert client.post("/login/", {"username": "bob", "password": "pw-bob"}).status_code == 302
    assert client.session["_auth_user_backend"] == "portal.auth.SessionBackend"
    html, sql = _page(client)
    assert '<span class="role-chip">auditor</span>' in html
    assert [s for s in sql if '"approvals_notification"' in s]
