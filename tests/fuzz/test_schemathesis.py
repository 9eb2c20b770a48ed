"""Schemathesis against the live OpenAPI schema (``/api/schema/``), once per role.

Every operation of the schema runs for every role of ``seed.ROLES`` with that role's real
API token (``Authorization: Bearer chtr_…``), through the WSGI app in this process. The
checks: no 5xx, status code / content type / headers / body as documented, and
authentication actually enforced (``ignored_auth`` re-sends without the token). A token
that is refused (401) fails the test at once, and ``test_every_role_was_authenticated``
fails the run if a role got no successful answers at all (schemathesis' "missing auth"
warning, made an error).

Bounded and reproducible: hypothesis is derandomized with a fixed seed, writes no
example database, and draws ``MAX_EXAMPLES`` cases per operation and role (plus the
schema's examples; ``DEEP_ROLES`` also run schemathesis' coverage phase: boundary and
invalid values of every parameter and field). Path parameters, id filters and references
in bodies are drawn from the seeded objects (``seed.REFS``) as well as generated, so
requests reach real objects and the service layer behind them.

Checks left out, with the reason: ``positive_data_acceptance`` (schema-valid input is
rightly refused when a business rule says no: an id that does not exist, separation of
duties, a state transition; those answers are 4xx naming the field, which the other
checks verify) and ``negative_data_rejection`` (DRF accepts some values stricter JSON
Schema formats reject, e.g. a date-time without seconds; lenient, not wrong).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from schemathesis.config import SchemathesisConfig

from lineage import cache
from tests.fuzz import seed as seeding

MAX_EXAMPLES = 3
SEED = 20240613
DEEP_ROLES = ("admin",)
LIGHT_ROLES = tuple(r for r in seeding.ROLES if r not in DEEP_ROLES)


def _config(*, coverage: bool) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "no-shrink": True,
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": coverage},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {
                "not_a_server_error": {"enabled": True},
                "status_code_conformance": {"enabled": True},
                "content_type_conformance": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
                "response_headers_conformance": {"enabled": True},
                "ignored_auth": {"enabled": True},
                "positive_data_acceptance": {"enabled": False},
                "negative_data_rejection": {"enabled": False},
            },
        }
    )


# The marker makes pytest-django create the test database (it sets up only the databases
# that collected tests ask for; the module-scoped seed alone would not ask).
pytestmark = pytest.mark.django_db

APP = get_wsgi_application()
deep_schema = schemathesis.openapi.from_wsgi("/api/schema/", APP, config=_config(coverage=True))
light_schema = schemathesis.openapi.from_wsgi("/api/schema/", APP, config=_config(coverage=False))

# ------------------------------------------------------------------ real ids

# The collection a path's ``{id}`` belongs to, by the URL segment(s) before it.
SEGMENT_KINDS = {
    "use-cases": "use_case",
    "datasets": "dataset",
    "dataset-versions": "dataset_version",
    "models": "model",
    "model-versions": "model_version",
    "evidence": "evidence",
    "artifacts": "artifact",
    "deployments": "deployment",
    "attestations": "attestation",
    "signing-keys": "signing_key",
    "approval-requests": "approval_request",
    "approval-policies": "approval_policy",
    "alert-rules": "alert_rule",
    "incidents": "incident",
    "retraining-templates": "retraining_template",
    "lineage/events": "lineage_event",
    "lineage/nodes": "lineage_node",
    "tokens": "token",
    "webhooks": "webhook",
}
# Query filters and body fields that name another object.
FIELD_KINDS = {
    "use_case": "use_case",
    "use_cases": "use_case",
    "dataset": "dataset",
    "dataset_version": "dataset_version",
    "training_dataset": "dataset_version",
    "training_datasets": "dataset_version",
    "validation_datasets": "dataset_version",
    "test_datasets": "dataset_version",
    "derived_from": "dataset_version",
    "model": "model",
    "model_version": "model_version",
    "parent": "model_version",
    "base_version": "model_version",
    "produced_version": "model_version",
    "deployment": "deployment",
    "replaces": "deployment",
    "artifact": "artifact",
    "evidence": "evidence",
    "incident": "incident",
    "rule": "alert_rule",
    "signer_key": "signing_key",
    "owner": "user",
    "user": "user",
    "nodeId": "node_key",
    "from": "node_key",
    "to": "node_key",
}
_ID = re.compile(r"/api/v1/(.+?)/\{id\}")


def _real(kind: str | None) -> list[Any]:
    return list(seeding.REFS.get(kind, [])) if kind else []


def _with_real_values(values: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``values`` with each reference swapped for a seeded id, or left as generated."""
    choices: dict[str, st.SearchStrategy[Any]] = {}
    for name, value in values.items():
        real = _real(FIELD_KINDS.get(name))
        if not real:
            choices[name] = st.just(value)
        elif isinstance(value, list):
            choices[name] = st.sampled_from([[r] for r in real] + [value])
        else:
            choices[name] = st.sampled_from([*real, value])
    return st.fixed_dictionaries(choices)


def flatmap_path_parameters(context: Any, path_parameters: Any) -> Any:
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    match = _ID.match(context.operation.path)
    real = _real(SEGMENT_KINDS.get(match.group(1)) if match else None)
    options = [{**path_parameters, "id": r} for r in real] + [path_parameters]
    if "dv" in path_parameters:
        options = [{**o, "dv": dv} for o in options for dv in _real("dataset_version")] + options
    return st.sampled_from(options)


def flatmap_query(context: Any, query: dict[str, Any]) -> Any:
    return _with_real_values(query) if isinstance(query, dict) else st.just(query)


def flatmap_body(context: Any, body: Any) -> Any:
    return _with_real_values(body) if isinstance(body, dict) else st.just(body)


for _schema in (deep_schema, light_schema):
    _schema.hook(flatmap_path_parameters)
    _schema.hook(flatmap_query)
    _schema.hook(flatmap_body)

# ------------------------------------------------------------------ the runs

# (role, operation) -> status codes received; read by test_every_role_was_authenticated.
STATUSES: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)


def _run(case: Any, role: str, world: seeding.Seeded) -> None:
    headers = {"Authorization": f"Bearer {world.tokens[role]}"}
    with transaction.atomic():
        cache.reset()
        response = case.call(headers=headers)
        STATUSES[(role, case.operation.label)][response.status_code] += 1
        assert response.status_code != 401, (
            f"{role}'s valid token was refused by {case.operation.label}: {response.text[:300]}"
        )
        # Inside the savepoint: ignored_auth re-sends the request without the token.
        case.validate_response(response, headers=headers, transport_kwargs={"headers": headers})
        transaction.set_rollback(True)
    cache.reset()


@pytest.mark.parametrize("role", DEEP_ROLES)
@deep_schema.parametrize()
def test_api_deep(case: Any, role: str, fuzz_world: seeding.Seeded) -> None:
    _run(case, role, fuzz_world)


@pytest.mark.parametrize("role", LIGHT_ROLES)
@light_schema.parametrize()
def test_api(case: Any, role: str, fuzz_world: seeding.Seeded) -> None:
    _run(case, role, fuzz_world)


def test_every_role_was_authenticated() -> None:
    """Schemathesis' "missing auth" warning as a failure: each role's token must work.

    Runs after the fuzzing above (pytest keeps a module's order). Each role must have
    had 2xx answers from at least a third of the read operations: a role whose every
    call was refused would mean its credentials were ignored, not that the API is right.
    """
    labels = {result.ok().label for result in light_schema.get_all_operations()}
    reads = {label for label in labels if label.startswith("GET ")}
    for role in seeding.ROLES:
        seen = {op for (r, op), codes in STATUSES.items() if r == role}
        assert seen, f"no fuzzing ran for {role}: run the whole module"
        ok = {
            op
            for (r, op), codes in STATUSES.items()
            if r == role and op in reads and any(200 <= c < 300 for c in codes)
        }
        # An outsider (no role, no grant) still lists empty collections: 29 of 64 reads.
        assert len(ok) >= len(reads) // 3, f"{role}: 2xx on only {sorted(ok)}"
