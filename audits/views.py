"""Auditor pages: the filterable trail with exports, and the chain's status."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from django.contrib.auth.decorators import login_required, permission_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from audits.filters import AuditEventFilter
from audits.models import AuditEvent, ChainHead, Checkpoint, Segment, VerificationRun
from audits.pagination import TrailPaginator
from audits.services import record
from audits.tasks import verify_chain_run

VIEW = "audits.view_auditevent"
EXPORT_FIELDS = (
    "seq",
    "created_at",
    "actor_repr",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "channel",
    "request_id",
    "client_ip",
    "prev_hash",
    "hash",
)


@login_required
@permission_required(VIEW, raise_exception=True)
def trail(request: HttpRequest) -> HttpResponse:
    flt = AuditEventFilter(request.GET, queryset=AuditEvent.objects.order_by("-seq"))
    fmt = request.GET.get("format")
    if fmt in ("csv", "jsonl") and flt.is_valid():
        return _export(request, flt, fmt)
    params = request.GET.copy()
    params.pop("page", None)
    # no filter in force: the whole chain, counted and paged by seq (audits/pagination.py)
    whole_chain = flt.is_valid() and not any(
        value not in (None, "") for value in flt.form.cleaned_data.values()
    )
    return render(
        request,
        "audits/trail.html",
        {
            "filter": flt,
            "page": TrailPaginator(flt.qs, 50, whole_chain=whole_chain).get_page(
                request.GET.get("page")
            ),
            "query": params.urlencode(),
        },
    )


def _export(request: HttpRequest, flt: AuditEventFilter, fmt: str) -> StreamingHttpResponse:
    with transaction.atomic():
        record(
            AuditEvent.Action.EXPORT,
            actor=request.user,
            object_type="audits.auditevent",
            object_repr=f"audit trail export ({fmt})",
            changes={"filters": {k: v for k, v in request.GET.items() if k != "format"}},
        )
    rows = flt.qs.order_by("seq").values_list(*EXPORT_FIELDS, "changes", "payload")

    def lines() -> Iterator[str]:
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow([*EXPORT_FIELDS, "changes"])
            for row in rows.iterator(chunk_size=2000):
                writer.writerow([*row[:-2], json.dumps(row[-2], ensure_ascii=False)])
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            yield buffer.getvalue()
        else:
            for row in rows.iterator(chunk_size=2000):
                seq, prev_hash, hash_ = row[0], row[10], row[11]
                yield (
                    json.dumps(
                        {"seq": seq, "prev_hash": prev_hash, "hash": hash_, "payload": row[-1]},
                        ensure_ascii=False,
                    )
                    + "\n"
                )

    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(lines(), content_type=f"{media}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-trail.{fmt}"'
    return response


@login_required
@permission_required(VIEW, raise_exception=True)
def chain(request: HttpRequest) -> HttpResponse:
    head = AuditEvent.objects.order_by("-seq").values("seq", "hash", "created_at").first()
    return render(
        request,
        "audits/chain.html",
        {
            "head": head,
            "head_row": ChainHead.objects.filter(pk=1).first(),
            "checkpoints": Checkpoint.objects.order_by("-seq")[:10],
            "segments": Segment.objects.order_by("-first_seq")[:10],
            "runs": VerificationRun.objects.select_related("requested_by")[:10],
        },
    )


@login_required
@permission_required(VIEW, raise_exception=True)
@require_POST
def verify_now(request: HttpRequest) -> HttpResponse:
    """Queue a verification (it changes no governance data, so auditors may run it)."""
    run = VerificationRun.objects.create(requested_by=request.user)
    transaction.on_commit(lambda: verify_chain_run.delay(run.pk))
    return redirect("audit-chain")


@login_required
@permission_required(VIEW, raise_exception=True)
def run_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The htmx fragment that the chain page polls while a run is in progress."""
    run = get_object_or_404(VerificationRun, pk=pk)
    return render(request, "audits/_run.html", {"run": run})
