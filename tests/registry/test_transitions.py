"""Every allowed status transition works and is audited once; every other one is refused."""

from __future__ import annotations

from typing import Any

import pytest

from audits.models import AuditEvent
from portal import roles
from portal.permissions import Access
from registry import services
from registry.models import Deployment, ModelVersion, UseCase
from registry.services import InvalidTransition
from tests import factories as f
from tests.helpers import fast_password_hashing  # noqa: F401  (autouse fixture)


def _use_case() -> UseCase:
    return f.use_case()


def _model_version() -> ModelVersion:
    return f.model_version()


def _deployment() -> Deployment:
    return f.deployment(f.model_version())


SUBJECTS = {
    "use_case": (UseCase, _use_case, services.transition_use_case),
    "model_version": (ModelVersion, _model_version, services.transition_model_version),
    "deployment": (Deployment, _deployment, services.transition_deployment),
}


def _pairs(allowed: bool) -> list[Any]:
    params = []
    for name, (model, _, _) in SUBJECTS.items():
        states = [s for s, _ in model.Status.choices]
        for source in states:
            for target in states:
                if (target in model.TRANSITIONS[source]) == allowed:
                    params.append(
                        pytest.param(name, source, target, id=f"{name}:{source}->{target}")
                    )
    return params


def test_transition_tables_cover_exactly_the_status_choices() -> None:
    for model, _, _ in SUBJECTS.values():
        states = {s for s, _ in model.Status.choices}
        assert set(model.TRANSITIONS) == states
        for targets in model.TRANSITIONS.values():
            assert targets <= states


def test_lifecycles_match_the_design() -> None:
    assert UseCase.TRANSITIONS["proposed"] == {"assessed", "retired"}
    assert ModelVersion.TRANSITIONS["registered"] == {"in_review", "retired"}
    assert "deployed" not in ModelVersion.TRANSITIONS["registered"]
    assert "deployed" not in ModelVersion.TRANSITIONS["in_review"]
    for model in (UseCase, ModelVersion, Deployment):
        assert model.TRANSITIONS["retired"] == set()


@pytest.fixture
def admin(db: Any) -> Access:
    return Access(user=f.user("transition_admin", roles=(roles.ADMIN,)))


def _at(name: str, status: str) -> Any:
    model, make, _ = SUBJECTS[name]
    obj = make()
    model.objects.filter(pk=obj.pk).update(status=status)  # arrange only: bypasses the rules
    obj.refresh_from_db()
    return obj


@pytest.mark.parametrize(("name", "source", "target"), _pairs(allowed=True))
def test_allowed_transition_writes_exactly_one_audit_event(
    admin: Access, name: str, source: str, target: str
) -> None:
    obj = _at(name, source)
    before = AuditEvent.objects.count()
    SUBJECTS[name][2](admin, obj, target, reason="because")
    obj.refresh_from_db()
    assert obj.status == target
    events = list(AuditEvent.objects.order_by("seq")[before:])
    assert len(events) == 1
    event = events[0]
    assert event.action == "transition"
    assert event.object_id == str(obj.pk)
    assert event.actor_id == admin.user.pk
    assert event.changes == {
        "before": {"status": source},
        "after": {"status": target},
        "reason": "because",
    }


@pytest.mark.parametrize(("name", "source", "target"), _pairs(allowed=False))
def test_forbidden_transition_changes_nothing(
    admin: Access, name: str, source: str, target: str
) -> None:
    obj = _at(name, source)
    before = AuditEvent.objects.count()
    with pytest.raises(InvalidTransition) as exc:
        SUBJECTS[name][2](admin, obj, target)
    assert exc.value.current == source and exc.value.target == target
    assert exc.value.allowed == sorted(SUBJECTS[name][0].TRANSITIONS[source])
    assert exc.value.field == "status"
    obj.refresh_from_db()
    assert obj.status == source
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_unknown_status_is_refused(admin: Access, name: str) -> None:
    obj = SUBJECTS[name][1]()
    start = obj.status
    with pytest.raises(InvalidTransition):
        SUBJECTS[name][2](admin, obj, "teleported")
    obj.refresh_from_db()
    assert obj.status == start


def test_transition_needs_the_right_permission(db: Any) -> None:
    from django.core.exceptions import PermissionDenied

    board = Access(user=f.user("board_member", roles=(roles.BOARD,)))
    mv = _model_version()
    before = AuditEvent.objects.count()
    with pytest.raises(PermissionDenied):
        services.transition_model_version(board, mv, "in_review")
    with pytest.raises(PermissionDenied):
        services.transition_use_case(board, mv.use_case, "assessed")
    assert AuditEvent.objects.count() == before


def test_replacing_a_deployment_transitions_the_old_one(admin: Access) -> None:
    old = _deployment()
    before = AuditEvent.objects.count()
    new = services.record_deployment(
        admin, model_version=old.model_version, replaces=old, environment="staging"
    )
    old.refresh_from_db()
    assert old.status == "replaced"
    actions = list(AuditEvent.objects.order_by("seq")[before:].values_list("action", "object_id"))
    assert actions == [("create", str(new.pk)), ("transition", str(old.pk))]


def test_rollback_restores_the_replaced_version(admin: Access) -> None:
    old = _deployment()
    new = services.record_deployment(
        admin,
        model_version=f.model_version(old.model_version.model),
        replaces=old,
        environment="staging",
    )
    restored = services.rollback_deployment(admin, new, reason="bad canary")
    new.refresh_from_db()
    assert new.status == "rolled_back"
    assert restored.model_version_id == old.model_version_id and restored.replaces_id == new.pk
    with pytest.raises(InvalidTransition):
        services.rollback_deployment(admin, new)
