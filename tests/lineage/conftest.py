"""Helpers for lineage tests: OpenLineage events as plain JSON, a pipeline's token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from portal.permissions import Access
from portal.services import create_service_account, grant_access, issue_token

PRODUCER = "https://github.com/example/pipelines/tree/v1"
SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/"


def facet(name: str = "Custom", **fields: Any) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": f"https://openlineage.io/spec/facets/1-0-0/{name}.json#/$defs/{name}",
        **fields,
    }


def dataset(namespace: str, name: str, **facets: dict[str, Any]) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "facets": facets}


def now() -> str:
    return datetime.now(UTC).isoformat()


def run_event(
    event_type: str = "COMPLETE",
    *,
    run_id: str | None = None,
    job: tuple[str, str] = ("etl", "clean"),
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    run_facets: dict[str, Any] | None = None,
    job_facets: dict[str, Any] | None = None,
    event_time: str | None = None,
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": event_time or now(),
        "run": {"runId": run_id or str(uuid.uuid4()), "facets": run_facets or {}},
        "job": {"namespace": job[0], "name": job[1], "facets": job_facets or {}},
        "inputs": inputs or [],
        "outputs": outputs or [],
        "producer": PRODUCER,
        "schemaURL": SPEC + "RunEvent",
    }


def charter(**fields: Any) -> dict[str, Any]:
    return facet("CharterFacet", **fields)


@dataclass
class Pipeline:
    """A service account contributing to one use case, with a token scoped to it."""

    user: Any
    secret: str

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.secret}")
        return client


def make_pipeline(use_case: Any, username: str) -> Pipeline:
    system = Access.system()
    account = create_service_account(system, username=username)
    grant_access(system, use_case, account.user, "contribute")
    _, secret = issue_token(system, user=account.user, name="ol", use_cases=[use_case])
    return Pipeline(account.user, secret)


@pytest.fixture
def pipeline_a(world: Any) -> Pipeline:
    return make_pipeline(world.uc_a, "etl_a")


@pytest.fixture
def pipeline_b(world: Any) -> Pipeline:
    return make_pipeline(world.uc_b, "etl_b")


def post(client: APIClient, event: Any, path: str = "/api/v1/lineage") -> Any:
    return client.post(path, event, format="json")


@pytest.fixture(autouse=True)
def _fresh_graph_cache() -> Any:
    """Each test's database starts over; so does the process's in-memory graph."""
    from lineage import cache

    cache.reset()
    yield
    cache.reset()
