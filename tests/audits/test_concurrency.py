from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from audits.models import GENESIS_HASH, AuditEvent
from audits.verify import verify_chain
from portal.permissions import Access
from registry import services
from tests import factories as f

THREADS = 8
UPDATES = 250


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_neither_fork_nor_leave_gaps() -> None:
    use_cases = [f.use_case() for _ in range(THREADS)]
    before = AuditEvent.objects.count()
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(uc: Any) -> None:
        try:
            start.wait()
            access = Access.system()
            for i in range(UPDATES):
                services.update_use_case(access, uc, purpose=f"Purpose {i % 2}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(uc,)) for uc in use_cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]

    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "prev_hash", "hash"))
    assert len(rows) == before + THREADS * UPDATES
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    # No fork: every prev_hash is used exactly once and is the previous row's hash.
    prevs = [r[1] for r in rows]
    assert len(set(prevs)) == len(prevs)
    assert prevs == [GENESIS_HASH] + [r[2] for r in rows[:-1]]
    result = verify_chain()
    assert result.ok, result
    assert result.length == len(rows)
    per_object = AuditEvent.objects.filter(action="update").values_list("object_id", flat=True)
    counts: dict[str, int] = {}
    for object_id in per_object:
        counts[object_id] = counts.get(object_id, 0) + 1
    assert sorted(counts.values()) == [UPDATES] * THREADS
