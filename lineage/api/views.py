"""Lineage API: OpenLineage intake (``POST /api/v1/lineage``, ``/lineage/batch``) and queries.

The intake path is the one the official openlineage-python HTTP transport posts
to by default (``api/v1/lineage``); its ``api_key`` auth sends the service
account's token as ``Authorization: Bearer chtr_…``, and its ``gzip``
compression sets ``Content-Encoding: gzip``, which is accepted here.
"""

from __future__ import annotations

import json
import re
import zlib
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import OperationalError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lineage import graph, services
from lineage.api import serializers as s
from lineage.models import LineageEvent, LineageNode
from lineage.validation import EventInvalid, parse_time
from portal.api.schema import ERRORS_READ, ERRORS_WRITE
from portal.permissions import Access

_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
DEADLOCK_RETRIES = 3


class BodyError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        super().__init__(message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json(request: Request) -> Any:
    """The request body as JSON, gunzipped when ``Content-Encoding: gzip``."""
    content_type = request.content_type.split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise BodyError(415, f"Content-Type must be application/json, not {content_type!r}.")
    raw = request.body
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    limit = settings.CHARTER_MAX_BODY_BYTES
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise BodyError(400, f"The gzip body cannot be decompressed: {exc}.") from None
        if len(raw) > limit:
            raise BodyError(413, f"The decompressed body exceeds the limit of {limit} bytes.")
        if not inflater.eof:
            raise BodyError(400, "The gzip body is truncated.")
    elif encoding not in ("", "identity"):
        raise BodyError(415, f"Content-Encoding {encoding!r} is not supported (use gzip).")
    if not raw.strip():
        raise BodyError(400, "The body is empty; expected a JSON OpenLineage event.")
    if _NUL.search(raw):
        raise BodyError(400, "Strings must not contain the NUL character (\\u0000).")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BodyError(400, "The body is not UTF-8.") from None
    except ValueError as exc:
        raise BodyError(400, f"The body is not valid JSON: {exc}") from None


def _body_error(exc: BodyError) -> Response:
    return Response({"detail": str(exc), "errors": {"body": [str(exc)]}}, status=exc.status_code)


def _invalid(exc: EventInvalid) -> Response:
    return Response(
        {"detail": "Invalid OpenLineage event.", "errors": exc.errors},
        status=status.HTTP_400_BAD_REQUEST,
    )


def _is_deadlock(exc: OperationalError) -> bool:
    cause = exc.__cause__
    return type(cause).__name__ == "DeadlockDetected" or "deadlock detected" in str(exc)


def _ingest(request: Request, items: list[Any], *, is_batch: bool) -> list[services.Stored]:
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return services.ingest(Access.for_request(request), items, is_batch=is_batch)
        except OperationalError as exc:
            if not _is_deadlock(exc) or attempt == DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _result(r: services.Stored) -> dict[str, Any]:
    return {"id": r.id, "sha256": r.sha256, "stored": r.stored, "useCase": r.use_case_id}


# ---------------------------------------------------------------- parameters


class ParamError(Exception):
    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


def _param_error(exc: ParamError) -> Response:
    return Response(
        {"detail": f"Invalid query parameter '{exc.name}'.", "errors": {exc.name: [str(exc)]}},
        status=status.HTTP_400_BAD_REQUEST,
    )


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name, "").strip()
    if not value:
        raise ParamError(name, "is required")
    return value


def _depth(request: Request, default: int | None = None) -> int | None:
    raw = request.query_params.get("depth")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > graph.MAX_DEPTH:
        raise ParamError("depth", f"must be a whole number from 0 to {graph.MAX_DEPTH}")
    return int(raw)


def _whole(request: Request, name: str, default: int | None, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > high:
        raise ParamError(name, f"must be a whole number from 0 to {high}")
    return int(raw)


def _time(request: Request, name: str) -> datetime:
    raw = _required(request, name)
    value = parse_time(raw)
    if value is None:
        raise ParamError(name, "must be an RFC 3339 date-time with a time zone offset")
    return value


NODE_ID = OpenApiParameter(
    "nodeId",
    str,
    required=True,
    description="node id: `dataset:<namespace>:<name>`, `job:<namespace>:<name>`, `run:<uuid>`, "
    "`dataset_version:<id>`, `model_version:<id>`, `deployment:<id>`, `use_case:<id>`, "
    "or the node's number",
)
DEPTH = OpenApiParameter(
    "depth", int, description=f"steps to follow (default {graph.DEFAULT_DEPTH}, at most 100)"
)
IMPACT_LIMIT, IMPACT_MAX_LIMIT = 250, 100_000
LIMIT = OpenApiParameter(
    "limit",
    int,
    description=f"targets listed per kind (default {IMPACT_LIMIT}, at most {IMPACT_MAX_LIMIT}); "
    "`counts` and `total` always cover the whole reach and `complete` says whether every "
    "target is listed",
)
OFFSET = OpenApiParameter("offset", int, description="targets of each kind to skip (default 0)")
EVENT_BODY = {
    "application/json": {
        "type": "object",
        "description": "An OpenLineage 2-0-2 RunEvent, DatasetEvent or JobEvent",
        "additionalProperties": True,
    }
}


class _Query(APIView):
    """Shared error handling of the query endpoints."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ParamError):
            return _param_error(exc)
        return super().handle_exception(exc)


class LineageView(_Query):
    """``/api/v1/lineage``: POST an OpenLineage event; GET the graph around a node."""

    parser_classes: list[Any] = []

    @extend_schema(
        operation_id="lineage_ingest",
        summary="Record one OpenLineage event (RunEvent, DatasetEvent or JobEvent)",
        description=(
            "The OpenLineage HTTP transport's endpoint. Bearer token auth; `Content-Encoding: "
            "gzip` accepted. An identical event already stored answers 200 with `stored: false`."
            " The event's use case: a `charter` facet's `useCase` (run, job or dataset facets), "
            "else the token's single scoped use case, else the caller's only contributable one."
        ),
        request=EVENT_BODY,
        responses={
            201: s.IngestResultSerializer,
            200: OpenApiResponse(s.IngestResultSerializer, description="Already stored"),
            415: OpenApiResponse(description="Not JSON, or an unsupported Content-Encoding"),
            **ERRORS_WRITE,
        },
    )
    def post(self, request: Request) -> Response:
        try:
            body = read_json(request)
        except BodyError as exc:
            return _body_error(exc)
        if isinstance(body, list):
            return Response(
                {
                    "detail": "Post one event here; a JSON array goes to /api/v1/lineage/batch.",
                    "errors": {"body": ["expected one JSON object (an event), not an array"]},
                },
                status=400,
            )
        try:
            (result,) = _ingest(request, [body], is_batch=False)
        except EventInvalid as exc:
            return _invalid(exc)
        code = status.HTTP_201_CREATED if result.stored else status.HTTP_200_OK
        return Response(_result(result), status=code)

    @extend_schema(
        operation_id="lineage_graph",
        summary="The lineage graph around a node (Marquez-style), up and down to a depth",
        parameters=[NODE_ID, DEPTH],
        responses={200: s.NeighbourhoodSerializer, **ERRORS_READ},
    )
    def get(self, request: Request) -> Response:
        node = _required(request, "nodeId")
        return Response(graph.neighbourhood(Access.for_request(request), node, _depth(request)))


class LineageBatchView(APIView):
    """``/api/v1/lineage/batch``: a JSON array of events, stored all or nothing."""

    parser_classes: list[Any] = []

    @extend_schema(
        operation_id="lineage_ingest_batch",
        summary=f"Record up to {services.MAX_BATCH} OpenLineage events in one transaction",
        description=(
            "A JSON array of events. Any invalid event refuses the whole batch (400, errors "
            "named `[index].field`). Repeated events are stored once."
        ),
        request={"application/json": {"type": "array", "items": EVENT_BODY["application/json"]}},
        responses={
            201: s.BatchResultSerializer,
            200: OpenApiResponse(s.BatchResultSerializer, description="Nothing new"),
            415: OpenApiResponse(description="Not JSON, or an unsupported Content-Encoding"),
            **ERRORS_WRITE,
        },
    )
    def post(self, request: Request) -> Response:
        try:
            body = read_json(request)
        except BodyError as exc:
            return _body_error(exc)
        if not isinstance(body, list):
            return Response(
                {
                    "detail": "Expected a JSON array of events.",
                    "errors": {"body": ["expected a JSON array of OpenLineage events"]},
                },
                status=400,
            )
        try:
            results = _ingest(request, body, is_batch=True)
        except EventInvalid as exc:
            return _invalid(exc)
        stored = sum(r.stored for r in results)
        data = {
            "received": len(results),
            "stored": stored,
            "duplicates": len(results) - stored,
            "events": [_result(r) for r in results],
        }
        return Response(data, status=status.HTTP_201_CREATED if stored else status.HTTP_200_OK)


class UpstreamView(_Query):
    @extend_schema(
        operation_id="lineage_upstream",
        summary="Provenance: every node the given node was built from",
        parameters=[NODE_ID, DEPTH],
        responses={200: s.SubgraphSerializer, **ERRORS_READ},
    )
    def get(self, request: Request) -> Response:
        node = _required(request, "nodeId")
        return Response(graph.upstream(Access.for_request(request), node, _depth(request)))


class DownstreamView(_Query):
    @extend_schema(
        operation_id="lineage_downstream",
        summary="Everything built from the given node",
        parameters=[NODE_ID, DEPTH],
        responses={200: s.SubgraphSerializer, **ERRORS_READ},
    )
    def get(self, request: Request) -> Response:
        node = _required(request, "nodeId")
        return Response(graph.downstream(Access.for_request(request), node, _depth(request)))


class ImpactView(_Query):
    @extend_schema(
        operation_id="lineage_impact",
        summary="Impact: model versions, deployments and use cases downstream, with paths",
        parameters=[NODE_ID, DEPTH, LIMIT, OFFSET],
        responses={200: s.ImpactSerializer, **ERRORS_READ},
    )
    def get(self, request: Request) -> Response:
        node = _required(request, "nodeId")
        depth = _depth(request)
        limit = _whole(request, "limit", IMPACT_LIMIT, IMPACT_MAX_LIMIT)
        offset = _whole(request, "offset", 0, 10**9) or 0
        access = Access.for_request(request)
        return Response(graph.impact(access, node, depth, limit=limit, offset=offset))


class PathView(_Query):
    @extend_schema(
        operation_id="lineage_path",
        summary="A shortest path between two nodes (with or against the data flow)",
        parameters=[
            OpenApiParameter("from", str, required=True, description="origin node id"),
            OpenApiParameter("to", str, required=True, description="destination node id"),
            OpenApiParameter("depth", int, description="longest path searched (default 100)"),
        ],
        responses={200: s.PathSerializer, **ERRORS_READ},
    )
    def get(self, request: Request) -> Response:
        origin, destination = _required(request, "from"), _required(request, "to")
        access = Access.for_request(request)
        return Response(graph.path(access, origin, destination, _depth(request)))


class ProductionView(_Query):
    @extend_schema(
        operation_id="lineage_production_at",
        summary="What was live in an environment at time T, and what it was trained on",
        parameters=[
            OpenApiParameter(
                "at", OpenApiTypes.DATETIME, required=True, description="RFC 3339 time"
            ),
            OpenApiParameter(
                "environment", str, description="production (default), staging or development"
            ),
            OpenApiParameter(
                "depth", int, description="1 (default): direct datasets; more adds provenance"
            ),
        ],
        responses={200: s.ProductionSerializer, **ERRORS_READ},
    )
    def get(self, request: Request) -> Response:
        at = _time(request, "at")
        environment = request.query_params.get("environment", "production")
        if environment not in ("production", "staging", "development"):
            raise ParamError("environment", "must be production, staging or development")
        depth = _depth(request, 1) or 1
        return Response(graph.production_at(Access.for_request(request), at, environment, depth))


@extend_schema_view(
    list=extend_schema(
        summary="List the lineage nodes you may see",
        parameters=[
            OpenApiParameter("kind", str, description="node kind"),
            OpenApiParameter("namespace", str),
            OpenApiParameter("linked", bool, description="datasets linked to the registry"),
        ],
        responses={200: s.LineageNodeSerializer(many=True), **ERRORS_READ},
    ),
    retrieve=extend_schema(
        summary="Read one lineage node", responses={200: s.LineageNodeSerializer, **ERRORS_READ}
    ),
)
class LineageNodeViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = LineageNode.objects.all()
    serializer_class = s.LineageNodeSerializer
    filterset_fields = ["kind", "namespace", "linked", "use_case"]
    search_fields = ["label", "key"]
    ordering_fields = ["kind", "label", "created_at", "updated_at"]


@extend_schema_view(
    list=extend_schema(
        summary="List the raw OpenLineage events you may see",
        responses={200: s.LineageEventListSerializer(many=True), **ERRORS_READ},
    ),
    retrieve=extend_schema(
        summary="Read one raw OpenLineage event as received",
        responses={200: s.LineageEventSerializer, **ERRORS_READ},
    ),
)
class LineageEventViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = LineageEvent.objects.select_related("received_by")
    filterset_fields = ["kind", "event_type", "run_id", "job_namespace", "job_name", "use_case"]
    search_fields = ["job_name", "sha256"]
    ordering_fields = ["received_at", "event_time"]

    def get_serializer_class(self) -> Any:
        if self.action == "list":
            return s.LineageEventListSerializer
        return s.LineageEventSerializer

    def get_queryset(self) -> Any:
        if self.action == "list":
            return self.queryset.defer("payload")
        return self.queryset
