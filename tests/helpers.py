"""Shared expectations and assertions for the API acceptance tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.response import Response

from audits.models import AuditEvent
from portal.models import ApiToken
from registry.models import (
    Artifact,
    Dataset,
    DatasetVersion,
    Deployment,
    Evidence,
    Model,
    ModelVersion,
    UseCase,
    UseCaseGroupObjectPermission,
    UseCaseUserObjectPermission,
)
from tests import factories as f

_seq = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_seq)}"


# ------------------------------------------------------------------ roles


@dataclass(frozen=True)
class Role:
    """What one user of the ``world`` fixture may do, per use case ("a", "b").

    ``sees``: the use cases whose tree the user can read; ``contributes``: where
    they may register and change records; ``changes``: whose use-case fields and
    status they may change; ``creates_use_cases``: may propose new ones;
    ``administers``: grants and everyone's tokens.
    """

    sees: frozenset[str]
    contributes: frozenset[str] = frozenset()
    changes: frozenset[str] = frozenset()
    creates_use_cases: bool = False
    administers: bool = False

    def may(self, rule: str, uc: str) -> bool:
        return uc in (self.changes if rule == "change" else self.contributes)

    def expected_write(self, rule: str, uc: str) -> int:
        """200 if allowed, 403 if visible but not allowed, 404 if invisible."""
        if self.may(rule, uc):
            return 200
        return 403 if uc in self.sees else 404


AB = frozenset("ab")
NONE: frozenset[str] = frozenset()

ROLES: dict[str, Role] = {
    "admin": Role(AB, AB, AB, creates_use_cases=True, administers=True),
    "board": Role(AB),
    "risk": Role(AB, NONE, AB, creates_use_cases=True),
    "auditor": Role(AB),
    "contributor_a": Role(frozenset("a"), frozenset("a"), creates_use_cases=True),
    "contributor_b": Role(frozenset("b"), frozenset("b"), creates_use_cases=True),
    "viewer_a": Role(frozenset("a")),
    "outsider": Role(NONE),
}
READ_ONLY_ROLES = ("board", "auditor", "viewer_a", "outsider")


# ------------------------------------------------------------------ endpoints


@dataclass(frozen=True)
class Endpoint:
    """One registry collection and how to exercise it.

    ``key``: the object's name in ``world.tree[...]``; ``parent``: the field of
    the create payload that places the object under a use case; ``create``: a
    payload for a new object under a tree; ``patch``: a harmless change (None:
    records of fact, no PATCH); ``transition``: (from, allowed target, forbidden
    target) of the tree's object; ``rule``: "contribute" or "change".
    """

    path: str
    key: str
    model: type
    parent: str | None
    create: Callable[[dict[str, Any]], dict[str, Any]]
    patch: dict[str, Any] | None = None
    transition: tuple[str, str, str] | None = None
    rule: str = "contribute"

    def url(self, pk: int | None = None, action: str = "") -> str:
        base = f"/api/v1/{self.path}/"
        if pk is not None:
            base += f"{pk}/"
        return base + (f"{action}/" if action else "")


ENDPOINTS: dict[str, Endpoint] = {
    e.path: e
    for e in [
        Endpoint(
            "use-cases",
            "use_case",
            UseCase,
            None,
            lambda t: {"name": unique("Use case"), "purpose": "Route tickets."},
            patch={"purpose": "Changed purpose."},
            transition=("proposed", "assessed", "in_production"),
            rule="change",
        ),
        Endpoint(
            "datasets",
            "dataset",
            Dataset,
            "use_case",
            lambda t: {"use_case": t["use_case"].pk, "name": unique("ds")},
            patch={"description": "Changed description."},
        ),
        Endpoint(
            "dataset-versions",
            "dataset_version",
            DatasetVersion,
            "dataset",
            lambda t: {
                "dataset": t["dataset"].pk,
                "version": unique("v"),
                "sha256": f.digest(unique("dv")),
            },
            patch={"license": "CC-BY-4.0"},
        ),
        Endpoint(
            "models",
            "model",
            Model,
            "use_case",
            lambda t: {"use_case": t["use_case"].pk, "name": unique("m")},
            patch={"task": "ranking"},
        ),
        Endpoint(
            "model-versions",
            "model_version",
            ModelVersion,
            "model",
            lambda t: {"model": t["model"].pk, "version": unique("2.0"), "metrics": {"auc": 0.8}},
            patch={"limitations": "Not for minors."},
            transition=("registered", "in_review", "deployed"),
        ),
        Endpoint(
            "evidence",
            "evidence",
            Evidence,
            "model_version",
            lambda t: {
                "model_version": t["model_version"].pk,
                "kind": "bias_evaluation",
                "title": unique("Bias"),
                "sha256": f.digest(unique("ev")),
            },
        ),
        Endpoint(
            "artifacts",
            "artifact",
            Artifact,
            "model_version",
            lambda t: {
                "model_version": t["model_version"].pk,
                "name": "model.onnx",
                "uri": "s3://bucket/model.onnx",
                "sha256": f.digest(unique("art")),
                "size_bytes": 10,
            },
        ),
        Endpoint(
            "deployments",
            "deployment",
            Deployment,
            "model_version",
            lambda t: {"model_version": t["model_version"].pk, "environment": "staging"},
            transition=("active", "retired", "pending"),
        ),
    ]
}


# ------------------------------------------------------------------ assertions


def body(response: Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.content[:500]


def listed_ids(response: Response) -> set[int]:
    assert response.status_code == 200, body(response)
    data = response.json()
    rows = data["results"] if isinstance(data, dict) else data
    return {row["id"] for row in rows}


def assert_listed(actual: set[int], expected: set[int], *, who: str, what: str) -> None:
    """Exactly ``expected`` appear; name what leaked to whom, and what went missing."""
    leaked = sorted(actual - expected)
    missing = sorted(expected - actual)
    problems = []
    if leaked:
        problems.append(f"{what} {leaked} leaked to {who}")
    if missing:
        problems.append(f"{what} {missing} hidden from {who}, who should see them")
    assert not problems, "; ".join(problems)


def assert_error_names(response: Response, *fields: str, status: int = 400) -> dict[str, Any]:
    """A 4xx in the API's error shape whose ``errors`` name each of ``fields``."""
    assert response.status_code == status, (response.status_code, body(response))
    data = response.json()
    assert isinstance(data.get("detail"), str) and data["detail"], data
    errors = data.get("errors")
    assert isinstance(errors, dict), data
    for name in fields:
        assert name in errors, f"errors do not name {name!r}: {errors}"
        messages = errors[name]
        assert messages and all(isinstance(m, str) and m for m in _flat(messages)), errors
    return errors


def _flat(messages: Any) -> Iterable[Any]:
    if isinstance(messages, list):
        for m in messages:
            yield from _flat(m)
    elif isinstance(messages, dict):
        for m in messages.values():
            yield from _flat(m)
    else:
        yield messages


COUNTED = (
    UseCase,
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    Evidence,
    Artifact,
    Deployment,
    ApiToken,
    AuditEvent,
    UseCaseUserObjectPermission,
    UseCaseGroupObjectPermission,
    Permission,
)


@dataclass
class Counts:
    """Row counts of everything an API write could touch (audit events included)."""

    values: dict[str, int] = field(default_factory=dict)

    @classmethod
    def take(cls) -> Counts:
        return cls({m.__name__: m.objects.count() for m in COUNTED})

    def unchanged(self) -> None:
        now = Counts.take().values
        diff = {k: (v, now[k]) for k, v in self.values.items() if now[k] != v}
        assert not diff, f"rows were written: {diff}"

    def grew(self, **expected: int) -> None:
        now = Counts.take().values
        diff = {k: now[k] - v for k, v in self.values.items() if now[k] != v}
        assert diff == expected, f"expected new rows {expected}, got {diff}"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """The ``world`` fixture creates eight users; PBKDF2 at full cost makes that ~5 s.

    Import this into a test module to use it (it must run before ``world``).
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class ServiceAccount:
    user: Any
    token: ApiToken
    secret: str
    client: Any  # an APIClient sending the token


def service_account(username: str, role: str, use_case: Any, right: str) -> ServiceAccount:
    """A user in ``role`` granted ``right`` on ``use_case``, with a token scoped to it
    and an API client that sends the token (as a pipeline calls the API)."""
    from rest_framework.test import APIClient

    from portal.permissions import Access
    from portal.services import grant_access, issue_token

    system = Access.system()
    user = f.user(username, roles=(role,))
    grant_access(system, use_case, user, right)
    token, secret = issue_token(system, user=user, name="ci", use_cases=[use_case])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return ServiceAccount(user, token, secret, client)
