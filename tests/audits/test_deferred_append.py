"""``record(deferred=True)``: the append travels with the transaction's next statement (at
the end of a request, its COMMIT), so the chain head — which every audited write holds from
its append to its commit — is not held while the rest of the request runs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from audits.models import AuditEvent
from audits.services import record
from audits.verify import verify_chain
from tests import factories as f

HOLD_S = 2.0


def _slow_writer(deferred: bool, appended: threading.Event, errors: list[Any]) -> None:
    """A transaction that records its event, then works on for HOLD_S before committing."""
    try:
        with transaction.atomic():
            record("update", actor=None, object_type="test.slow", object_id="1", deferred=deferred)
            appended.set()
            time.sleep(HOLD_S)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
        appended.set()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("deferred", [True, False])
def test_a_deferred_append_does_not_hold_the_chain_while_its_transaction_works_on(
    deferred: bool,
) -> None:
    appended, errors = threading.Event(), []
    slow = threading.Thread(target=_slow_writer, args=(deferred, appended, errors))
    slow.start()
    assert appended.wait(10)
    started = time.monotonic()
    with transaction.atomic():
        record("update", actor=None, object_type="test.quick", object_id="2")
    waited = time.monotonic() - started
    slow.join(HOLD_S + 10)
    assert not errors, errors
    if deferred:
        # the quick writer went first and did not wait; the slow one's event follows it
        assert waited < HOLD_S / 2, f"waited {waited:.2f} s for the chain head"
        order = ["test.quick", "test.slow"]
    else:  # the control: an append made at once holds the head until its commit
        assert waited >= HOLD_S * 0.75, f"waited only {waited:.2f} s"
        order = ["test.slow", "test.quick"]
    events = list(AuditEvent.objects.order_by("seq").values_list("object_type", flat=True))
    assert events[-2:] == order
    result = verify_chain()
    assert result.ok, result


@pytest.mark.django_db(transaction=True)
def test_a_deferred_append_commits_and_rolls_back_with_its_change() -> None:
    before = AuditEvent.objects.count()
    with transaction.atomic():
        event = record("create", actor=None, object_type="test.kept", object_id="1", deferred=True)
        assert event.pk is None and event.seq is None  # not sent yet
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint, undone
            record("create", actor=None, object_type="test.undone", object_id="2", deferred=True)
            raise RuntimeError("the change fails after its event was recorded")
        # a read in the same transaction sends the deferred append first: it sees it
        assert AuditEvent.objects.filter(object_type="test.kept").count() == 1
        record("update", actor=None, object_type="test.kept", object_id="1", deferred=True)
    with pytest.raises(RuntimeError), transaction.atomic():
        record("create", actor=None, object_type="test.rolled", object_id="3", deferred=True)
        raise RuntimeError("the whole transaction fails")
    kinds = list(
        AuditEvent.objects.order_by("seq")
        .filter(seq__gt=before)
        .values_list("object_type", "action")
    )
    assert kinds == [("test.kept", "create"), ("test.kept", "update")]
    result = verify_chain()
    assert result.ok, result


@pytest.mark.django_db(transaction=True)
def test_an_event_a_webhook_could_stand_for_is_appended_at_once() -> None:
    version = f.model_version(f.model(f.use_case()))
    with transaction.atomic():
        event = record("create", actor=None, obj=version, deferred=True)
        assert event.pk is not None and event.seq is not None  # version.registered: read now
