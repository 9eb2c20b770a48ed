"""The audit trail's pages cost the same on a chain of any length (audits/pagination.py):
the unfiltered trail is counted and paged by seq, a filtered one counted up to a cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audits.archive import archive_segment
from audits.models import AuditEvent
from audits.services import create_checkpoint, record


def _append(n: int, action: str = "update") -> None:
    with transaction.atomic():
        for i in range(n):
            record(action, actor=None, object_type="test.thing", object_id=str(i))


def _seqs(response: Any) -> list[int]:
    return [event.seq for event in response.context["page"].object_list]


def _trail_sql(client: Client, url: str) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return response, [q["sql"] for q in queries if "audits_auditevent" in q["sql"]]


@pytest.fixture
def auditor(world: Any) -> Client:
    client = Client()
    client.force_login(world.users["auditor"])
    return client


def test_whole_trail_pages_are_seq_ranges_without_count_or_offset(auditor: Client) -> None:
    _append(120)
    held = sorted(AuditEvent.objects.values_list("seq", flat=True), reverse=True)
    assert held == list(range(held[0], held[-1] - 1, -1))  # gapless, as the paging assumes

    response, sql = _trail_sql(auditor, "/audit/")
    page = response.context["page"]
    assert page.paginator.count == len(held)
    assert page.paginator.num_pages == -(-len(held) // 50)
    assert _seqs(response) == held[:50]
    assert f"{len(held)} in all" in response.content.decode()
    # two index lookups for the bounds and one range read: no COUNT(*) walk, no OFFSET
    assert not any("COUNT(" in s.upper() or "OFFSET" in s.upper() for s in sql), sql
    assert len(sql) == 2, sql

    last = page.paginator.num_pages
    assert _seqs(auditor.get("/audit/?page=2")) == held[50:100]
    assert _seqs(auditor.get(f"/audit/?page={last}")) == held[(last - 1) * 50 :]
    # past the end and nonsense: the last and the first page, as Django's get_page does
    assert _seqs(auditor.get("/audit/?page=999")) == held[(last - 1) * 50 :]
    assert _seqs(auditor.get("/audit/?page=x")) == held[:50]


def test_whole_trail_counts_what_is_held_after_a_prefix_was_archived(
    auditor: Client, tmp_path: Path, settings: Any
) -> None:
    settings.AUDIT_ARCHIVE_DIR = tmp_path / "archive"
    _append(30)
    checkpoint = create_checkpoint()
    _append(70)
    archive_segment(through_seq=checkpoint.seq)
    held = sorted(AuditEvent.objects.values_list("seq", flat=True), reverse=True)
    assert held[-1] == checkpoint.seq + 1

    response = auditor.get("/audit/")
    assert response.context["page"].paginator.count == len(held)
    last = response.context["page"].paginator.num_pages
    assert _seqs(auditor.get(f"/audit/?page={last}")) == held[(last - 1) * 50 :]
    assert held[-1] in _seqs(auditor.get(f"/audit/?page={last}"))


def test_filtered_trail_is_counted_exactly_up_to_the_cap(
    auditor: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _append(12, action="unlock")
    unlocked = sorted(
        AuditEvent.objects.filter(action="unlock").values_list("seq", flat=True), reverse=True
    )
    response, sql = _trail_sql(auditor, "/audit/?action=unlock")
    assert response.context["page"].paginator.count == len(unlocked) == 12
    assert _seqs(response) == unlocked
    assert "12 in all" in response.content.decode()

    monkeypatch.setattr("audits.pagination.COUNT_CAP", 5)
    response, sql = _trail_sql(auditor, "/audit/?action=unlock")
    page = response.context["page"]
    assert (page.paginator.count, page.paginator.capped) == (5, True)
    assert _seqs(response) == unlocked  # the page itself is not cut: 12 < 50 rows
    assert "more than 5 in all" in response.content.decode()
    # the count read at most cap + 1 rows
    assert any("LIMIT 6" in s for s in sql if "COUNT(" in s.upper()), sql


def test_an_invalid_filter_is_not_taken_for_the_whole_trail(auditor: Client) -> None:
    _append(3)
    response = auditor.get("/audit/?seq_from=not-a-number")
    assert response.status_code == 200
    assert response.context["page"].paginator.whole_chain is False


def test_actor_and_object_filters_ignore_case(world: Any, auditor: Client) -> None:
    mv = world.tree["a"]["model_version"]
    created = AuditEvent.objects.get(
        object_type="registry.modelversion", object_id=str(mv.pk), action="create"
    )
    for query in (
        f"object_type=Registry.ModelVersion&object_id={mv.pk}&action=create",
        f"object_type=%20registry.modelversion%20&object_id={mv.pk}&action=create",
        f"actor={created.actor_repr.upper()}&object_type=registry.modelversion&object_id={mv.pk}",
    ):
        seqs = _seqs(auditor.get(f"/audit/?{query}"))
        assert created.seq in seqs, query
        assert all(e.object_id == str(mv.pk) for e in AuditEvent.objects.filter(seq__in=seqs)), (
            query
        )
    # and the filters still filter: another object's type and id find none of these
    assert created.seq not in _seqs(auditor.get("/audit/?object_type=registry.usecase"))
    assert _seqs(auditor.get("/audit/?actor=nobody-at-all")) == []
