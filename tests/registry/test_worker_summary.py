"""The worker path, end to end: a real Celery worker process on Redis summarises an upload."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.core.files.base import ContentFile

from audits.models import AuditEvent
from portal.permissions import Access
from registry import services
from registry.models import DatasetVersion
from tests import factories as f
from tests.worker import celery_worker, wait_for

CSV = b"age,income,region,label\n34,52000.5,north,true\n51,,south,false\n29,31000,north,\n"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_process_summarises_uploaded_dataset_version() -> None:
    """GIVEN a running worker WHEN a CSV is uploaded THEN the worker summarises it, audited."""
    ds = f.dataset()
    with celery_worker():
        version = services.create_dataset_version(
            Access.system(), dataset=ds, version="2025-10", file=ContentFile(CSV, name="d.csv")
        )
        assert version.summary_status == "pending"
        done = wait_for(
            lambda: DatasetVersion.objects.get(pk=version.pk).summary_status != "pending"
        )
    assert done, "the worker did not process the task in time"
    version.refresh_from_db()
    assert version.summary_status == "ready"
    assert version.row_count == 3
    assert version.size_bytes == len(CSV)
    assert version.sha256 == hashlib.sha256(CSV).hexdigest()
    assert version.schema == [
        {"name": "age", "type": "integer"},
        {"name": "income", "type": "number"},
        {"name": "region", "type": "string"},
        {"name": "label", "type": "boolean"},
    ]
    assert version.quality_summary["columns"]["income"]["nulls"] == 1
    event = AuditEvent.objects.filter(object_id=str(version.pk), action="update").get()
    assert event.channel == "task" and event.actor_repr == "system"
    assert event.changes["after"]["summary_status"] == "ready"


@pytest.mark.django_db
def test_unreadable_file_marks_summary_failed_with_reason(tmp_path: Any) -> None:
    ds = f.dataset()
    from registry.tasks import summarize_dataset_version

    version = services.create_dataset_version(
        Access.system(), dataset=ds, version="bad", file=ContentFile(b"a,b\n1\n", name="x.csv")
    )
    assert summarize_dataset_version(version.pk) == "failed"
    version.refresh_from_db()
    assert version.summary_status == "failed"
    assert "row 2 has 1 fields" in version.quality_summary["error"]
