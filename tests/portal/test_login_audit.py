from typing import Any

from django.test import Client

from audits.models import AuditEvent
from tests import factories as f


def test_login_success_failure_and_logout_are_audited(db: Any) -> None:
    f.user("ann")
    client = Client()
    start = AuditEvent.objects.count()
    response = client.post("/login/", {"username": "ann", "password": "wrong"})
    assert response.status_code == 200  # the form again, with an error
    failed = AuditEvent.objects.order_by("-seq").first()
    assert failed.action == "login_failed" and failed.changes == {"username": "ann"}
    assert "wrong" not in failed.payload  # the attempted password is never recorded
    assert client.post("/login/", {"username": "ann", "password": "pw-ann"}).status_code == 302
    assert client.post("/logout/").status_code == 302
    actions = list(
        AuditEvent.objects.filter(seq__gt=failed.seq)
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["login", "logout"]
    assert AuditEvent.objects.count() == start + 3
