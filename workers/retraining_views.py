"""Retraining job pages: the list, a job's detail with its live status (htmx), cancel and
retry. Everything is narrowed to what the user may see (404 else); writes go through
``workers.retraining``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.permissions import Access
from workers import executors, retraining
from workers.models import RetrainingJob

STATES = {
    "active": ["awaiting_approval", "pending", "queued", "running"],
    "ended": list(RetrainingJob.FINAL),
}


def _job(request: HttpRequest, pk: int) -> RetrainingJob:
    return get_object_or_404(retraining.visible_jobs(Access(user=request.user)), pk=pk)


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "all")
    rows = retraining.visible_jobs(Access(user=request.user))
    if state in STATES:
        rows = rows.filter(state__in=STATES[state])
    else:
        state = "all"
    page = Paginator(rows.order_by("-created_at", "-pk"), 25).get_page(request.GET.get("page"))
    return render(request, "workers/job_list.html", {"page": page, "state": state})


def _executor_facts(job: RetrainingJob) -> dict:
    try:
        return executors.get_executor(job.executor).describe()
    except executors.ExecutorError as exc:
        return {"name": job.executor, "kind": f"not configured here ({exc})"}


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = _job(request, pk)
    access = Access(user=request.user)
    return render(
        request,
        "workers/job_detail.html",
        {
            "job": job,
            "executor": _executor_facts(job),
            "datasets": job.dataset_versions.select_related("dataset"),
            "can_act": retraining.can_act(access, job),
            "retries": job.retries.order_by("pk"),
        },
    )


@login_required
def job_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The htmx partial: state, progress bar and log tail (polled while the job is active)."""
    job = _job(request, pk)
    return render(request, "workers/_job_status.html", {"job": job})


@login_required
@require_POST
def job_act(request: HttpRequest, pk: int) -> HttpResponse:
    job = _job(request, pk)
    access = Access(user=request.user)
    what = request.POST.get("action", "")
    reason = request.POST.get("reason", "")
    try:
        if what == "cancel":
            retraining.cancel(access, job, reason=reason)
            messages.success(request, "Cancel requested.")
        elif what == "retry":
            new = retraining.retry(access, job, reason=reason)
            messages.success(request, f"Job #{new.pk} started as a retry of #{job.pk}.")
            return redirect(new)
        else:
            messages.error(request, "Unknown action.")
    except retraining.Conflict as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    return redirect(job)
