from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from rest_framework.test import APIClient

from portal import roles
from portal.permissions import Access
from portal.services import grant_access
from tests import factories as f


@receiver(connection_created)
def _allow_truncate(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Let transactional tests reset the database (see audits migration 0002)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET charter.allow_truncate = 'on'")


@pytest.fixture(autouse=True)
def _test_settings(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    # Fast hashing for the many test users (production keeps Django's default).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _roles_after_flush(request: Any) -> None:
    """Transactional tests flush the database, data-migration rows included: restore roles."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or "live_server" in (
        request.fixturenames
    )
    if marker is not None and marker.kwargs.get("transaction"):
        transactional = True
    if transactional:
        from django.contrib.auth.models import Group, Permission

        request.getfixturevalue("transactional_db")
        roles.ensure_roles(Group, Permission)
        from approvals.defaults import install_defaults
        from approvals.models import ApprovalPolicy

        install_defaults(ApprovalPolicy)


@pytest.fixture(autouse=True)
def _eager_celery() -> Any:
    """Tasks run in-process unless a test starts a real worker (tests/worker.py)."""
    from portal.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = True


@dataclass
class World:
    """Two use cases (A, B) with a full tree each, and one user per role.

    ``contributor_a`` contributes to A only, ``contributor_b`` to B only,
    ``viewer_a`` may only look at A, ``outsider`` has no role and no grant.
    """

    uc_a: Any
    uc_b: Any
    tree: dict[str, dict[str, Any]]
    users: dict[str, Any]

    def client(self, who: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(self.users[who])
        return client


def build_tree(uc: Any) -> dict[str, Any]:
    ds = f.dataset(uc)
    dv = f.dataset_version(ds)
    m = f.model(uc)
    mv = f.model_version(m, training_datasets=[dv])
    return {
        "use_case": uc,
        "dataset": ds,
        "dataset_version": dv,
        "model": m,
        "model_version": mv,
        "evidence": f.evidence(mv),
        "artifact": f.artifact(mv),
        "deployment": f.deployment(mv),
    }


@pytest.fixture
def world(db: Any) -> World:
    uc_a = f.use_case(name="Credit scoring")
    uc_b = f.use_case(name="Fraud detection")
    users = {
        "admin": f.user("admin_user", roles=(roles.ADMIN,), is_staff=True),
        "board": f.user("board_user", roles=(roles.BOARD,)),
        "risk": f.user("risk_user", roles=(roles.RISK_OFFICER,)),
        "auditor": f.user("auditor_user", roles=(roles.AUDITOR,)),
        "contributor_a": f.user("contrib_a", roles=(roles.CONTRIBUTOR,)),
        "contributor_b": f.user("contrib_b", roles=(roles.CONTRIBUTOR,)),
        "viewer_a": f.user("viewer_a", roles=(roles.VIEWER,)),
        "outsider": f.user("outsider"),
    }
    system = Access.system()
    grant_access(system, uc_a, users["contributor_a"], "contribute")
    grant_access(system, uc_b, users["contributor_b"], "contribute")
    grant_access(system, uc_a, users["viewer_a"], "view")
    return World(uc_a, uc_b, {"a": build_tree(uc_a), "b": build_tree(uc_b)}, users)
