"""Connects the approval workflow to retraining jobs waiting for a decision."""

from __future__ import annotations

from typing import Any

from approvals.signals import approval_closed


def _on_approval_closed(sender: Any, request: Any, **kwargs: Any) -> None:
    from workers.retraining import on_approval_closed

    on_approval_closed(request)


approval_closed.connect(_on_approval_closed, dispatch_uid="workers-retraining-approval")
