"""portal.db.postgresql: savepoints travel with the next statement, and mean the same.

Each case checks what the database holds afterwards, not how the SQL was sent, so a
savepoint dropped too early or sent too late fails here as a wrong row set.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


_BEFORE: set[str] = set()


def names() -> list[str]:
    """The groups this test made (the role groups are there from the migrations)."""
    return sorted(set(Group.objects.values_list("name", flat=True)) - _BEFORE)


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (the README's test command provides it)")
    assert type(connections["default"]).__module__ == "portal.db.postgresql.base"
    _BEFORE.clear()
    _BEFORE.update(Group.objects.values_list("name", flat=True))


def test_a_nested_block_costs_no_round_trip_of_its_own() -> None:
    with transaction.atomic():
        Group.objects.create(name="outer")
        with CaptureQueriesContext(connection) as ctx, transaction.atomic():
            Group.objects.create(name="inner")
        with CaptureQueriesContext(connection) as after:
            Group.objects.create(name="next")
    sent = [q["sql"] for q in ctx.captured_queries + after.captured_queries]
    assert len(sent) == 2  # the two inserts; SAVEPOINT and RELEASE ride along
    assert sent[0].startswith("SAVEPOINT ") and "INSERT INTO" in sent[0]
    assert sent[1].startswith("RELEASE SAVEPOINT ") and "INSERT INTO" in sent[1]
    assert names() == ["inner", "next", "outer"]


def test_rolled_back_inner_writes_are_undone_and_outer_ones_kept() -> None:
    with transaction.atomic():
        Group.objects.create(name="kept")
        with pytest.raises(Boom), transaction.atomic():
            Group.objects.create(name="undone")
            Group.objects.create(name="undone too")
            raise Boom
        Group.objects.create(name="after")
    assert names() == ["after", "kept"]


def test_nested_three_deep_with_the_middle_one_failing() -> None:
    with transaction.atomic():
        Group.objects.create(name="a")
        with pytest.raises(Boom), transaction.atomic():
            with transaction.atomic():
                Group.objects.create(name="b")  # released into the middle block...
            with transaction.atomic():
                pass  # a block with no statement at all
            raise Boom  # ...and undone with it
        with transaction.atomic():
            Group.objects.create(name="c")
    assert names() == ["a", "c"]


def test_a_block_failing_before_any_statement_leaves_nothing_behind() -> None:
    with transaction.atomic():
        with pytest.raises(Boom), transaction.atomic():
            raise Boom  # its SAVEPOINT was never sent: nothing to roll back or release
        Group.objects.create(name="fine")
    assert names() == ["fine"]


def test_a_database_error_inside_rolls_back_to_the_savepoint() -> None:
    Group.objects.create(name="taken")
    with transaction.atomic():
        Group.objects.create(name="first")
        with pytest.raises(IntegrityError), transaction.atomic():
            Group.objects.create(name="taken")  # fails in the same round trip as SAVEPOINT
        Group.objects.create(name="second")  # the transaction is usable again
    assert names() == ["first", "second", "taken"]


def test_a_server_side_cursor_sees_what_the_savepoint_holds() -> None:
    with transaction.atomic(), transaction.atomic():
        Group.objects.create(name="visible")
        # iterator(): a named cursor, whose DECLARE cannot carry the queued SAVEPOINT
        rows = Group.objects.exclude(name__in=_BEFORE).order_by("name")
        seen = [g.name for g in rows.iterator(chunk_size=1)]
        with pytest.raises(Boom), transaction.atomic():
            Group.objects.create(name="gone")
            raise Boom
    assert seen == ["visible"]
    assert names() == ["visible"]


def test_the_queue_survives_a_statement_that_never_reached_the_server(settings: Any) -> None:
    with transaction.atomic():
        Group.objects.create(name="x")
        with pytest.raises(Boom), transaction.atomic():
            with pytest.raises(Exception), connection.cursor() as cursor:  # noqa: B017,PT011
                cursor.execute("SELECT %s", [object()])  # cannot be adapted: never sent
            Group.objects.create(name="y")  # carries the SAVEPOINT after all
            raise Boom
    assert names() == ["x"]


def test_executemany_as_the_first_statement_is_inside_the_savepoint() -> None:
    with transaction.atomic():
        Group.objects.create(name="stays")
        with pytest.raises(Boom), transaction.atomic():
            with connection.cursor() as cursor:  # cannot carry the queue: sends it first
                cursor.executemany("INSERT INTO auth_group (name) VALUES (%s)", [("m1",), ("m2",)])
            raise Boom
    assert names() == ["stays"]


def _other_session_sees(name: str) -> bool:
    """Whether a separate database session sees a group (i.e. it was committed)."""
    import psycopg
    from django.conf import settings as django_settings

    db = django_settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
        dbname=db["NAME"], autocommit=True,
    ) as other:  # fmt: skip
        return (
            other.execute("SELECT 1 FROM auth_group WHERE name = %s", [name]).fetchone() is not None
        )


def test_begin_travels_with_the_first_statement_and_the_block_is_one_transaction() -> None:
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        Group.objects.create(name="first")
        assert not _other_session_sees("first")  # not committed on its own
        Group.objects.create(name="second")
        assert not _other_session_sees("second")
    sent = [q["sql"] for q in ctx.captured_queries if q["sql"] != "BEGIN"]
    assert sent[0].startswith("BEGIN; INSERT INTO")  # no round trip for BEGIN alone
    assert _other_session_sees("first") and _other_session_sees("second")


def test_an_outer_block_rolled_back_leaves_nothing_and_an_empty_one_sends_nothing() -> None:
    with pytest.raises(Boom), transaction.atomic():
        Group.objects.create(name="never")
        raise Boom
    assert names() == [] and not _other_session_sees("never")
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        pass
    assert [q["sql"] for q in ctx.captured_queries if q["sql"] not in ("BEGIN",)] == []
    Group.objects.create(name="autocommit")  # outside a block: committed at once
    assert _other_session_sees("autocommit")


def _defer_group(name: str, counts: list[int] | None = None) -> bool:
    from portal.db import defer

    return defer(
        "INSERT INTO auth_group (name) VALUES (%s)",
        [name],
        on_result=None if counts is None else counts.append,
    )


def test_a_deferred_write_goes_with_the_next_statement_and_reports_its_row_count() -> None:
    counts: list[int] = []
    with transaction.atomic():
        assert _defer_group("50% deferred", counts)  # a literal '%' in the carried text
        assert counts == []  # not sent yet
        with CaptureQueriesContext(connection) as ctx:
            seen = list(
                Group.objects.filter(name__in=["50% deferred"]).values_list("name", flat=True)
            )
        assert seen == ["50% deferred"]  # the read carried it, and saw it
        assert counts == [1]
        assert len(ctx.captured_queries) == 1
    assert names() == ["50% deferred"]


def test_deferred_writes_are_sent_before_commit_and_undone_with_a_savepoint() -> None:
    counts: list[int] = []
    with transaction.atomic():
        Group.objects.create(name="anchor")
        with transaction.atomic():
            assert _defer_group("kept", counts)  # released with nothing else inside: kept
        with pytest.raises(Boom), transaction.atomic():
            assert _defer_group("undone", counts)
            raise Boom  # its savepoint never reached the server: both dropped
        assert _defer_group("last")  # nothing follows: COMMIT sends it first
    assert counts == [1]
    assert names() == ["anchor", "kept", "last"]
    assert not _defer_group("outside")  # no transaction: the caller runs it itself


def test_a_first_statement_that_never_reached_the_server_keeps_the_transaction() -> None:
    with pytest.raises(Boom), transaction.atomic():
        with pytest.raises(Exception), connection.cursor() as cursor:  # noqa: B017,PT011
            cursor.execute("SELECT %s", [object()])  # would have carried BEGIN: never sent
        Group.objects.create(name="inside")
        assert not _other_session_sees("inside")  # BEGIN went with it: not autocommitted
        raise Boom
    assert names() == []


def test_deferred_writes_travel_with_commit_in_one_round_trip() -> None:
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        Group.objects.create(name="first")
        assert _defer_group("with commit")
        assert not _other_session_sees("with commit")  # queued, not sent
    sent = [q["sql"] for q in ctx.captured_queries if q["sql"] != "BEGIN"]  # Django's log line
    assert len(sent) == 2  # BEGIN with the insert; the deferred insert with COMMIT
    assert sent[1].startswith("INSERT INTO auth_group") and sent[1].endswith("; COMMIT")
    assert names() == ["first", "with commit"]
    assert _other_session_sees("with commit")


def test_a_deferred_write_failing_at_commit_rolls_the_whole_transaction_back() -> None:
    Group.objects.create(name="taken")
    with pytest.raises(IntegrityError) as failed, transaction.atomic():
        Group.objects.create(name="written before")
        assert _defer_group("taken")  # violates auth_group's unique name at COMMIT
    assert failed.value.__cause__.diag.constraint_name == "auth_group_name_key"
    assert names() == ["taken"]  # COMMIT never ran: nothing of the block is kept
    Group.objects.create(name="the connection works")  # and is usable again
    assert names() == ["taken", "the connection works"]


def test_writes_waiting_for_their_answer_go_before_commit_so_callbacks_still_write() -> None:
    def fallback(count: int) -> None:
        Group.objects.create(name=f"callback saw {count}")  # inside the transaction

    with transaction.atomic():
        Group.objects.create(name="anchor")
        assert _defer_group("answered", None)
        from portal.db import defer

        assert defer("INSERT INTO auth_group (name) VALUES ('checked')", on_result=fallback)
    assert names() == ["anchor", "answered", "callback saw 1", "checked"]


def test_a_block_of_only_deferred_writes_is_one_transaction_with_its_commit() -> None:
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        assert _defer_group("alone")
        assert _defer_group("alone too")
    sent = [q["sql"] for q in ctx.captured_queries if q["sql"] != "BEGIN"]
    assert sent == [
        "BEGIN; INSERT INTO auth_group (name) VALUES ('alone'); "
        "INSERT INTO auth_group (name) VALUES ('alone too'); COMMIT"
    ]
    assert names() == ["alone", "alone too"]


def test_the_health_check_of_an_idle_live_connection_sends_nothing(monkeypatch: Any) -> None:
    conn = connections["default"]
    conn.ensure_connection()
    sent: list[Any] = []
    raw_cursor, raw_execute = conn.connection.cursor, conn.connection.execute
    monkeypatch.setattr(
        conn.connection, "cursor", lambda *a, **k: sent.append(a) or raw_cursor(*a, **k)
    )
    monkeypatch.setattr(
        conn.connection, "execute", lambda *a, **k: sent.append(a) or raw_execute(*a, **k)
    )
    with CaptureQueriesContext(conn) as ctx:
        assert conn.is_usable()
    assert ctx.captured_queries == [] and sent == []
    pid = conn.connection.info.backend_pid
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid  # still the same session, still answering


def test_the_health_check_finds_a_connection_the_server_dropped() -> None:
    """A backend terminated by the server (as on a restart): the request that would reuse
    the connection gets a fresh one instead of an error."""
    import time

    import psycopg

    conn = connections["default"]
    conn.ensure_connection()
    pid = conn.connection.info.backend_pid
    with psycopg.connect(conn.connection.info.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)  # the server's goodbye reaches the socket
    assert not conn.is_usable()
    conn.health_check_done = False
    conn.close_if_health_check_failed()
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_a_statement_run_repeatedly_is_prepared_and_answers_as_before() -> None:
    """PostgreSQL parses and plans a repeated statement once per connection: it is bound
    on the server and prepared once psycopg has seen it prepare_threshold times."""
    Group.objects.create(name="needle")
    runs = connection.connection.prepare_threshold + 2
    found = [
        list(Group.objects.filter(name=name).values_list("name", flat=True))
        for name in ["needle", "hay"] * runs
    ]
    assert found == [["needle"], []] * runs
    statement = (
        'SELECT "auth_group"."name" AS "name" FROM "auth_group" WHERE "auth_group"."name" = $1'
    )
    assert _prepared_statements().count(statement) == 1


def test_captured_queries_show_the_values_of_a_statement_bound_on_the_server() -> None:
    with CaptureQueriesContext(connection) as ctx:
        list(Group.objects.filter(name="shown").values_list("name", flat=True))
    assert "= 'shown'" in ctx.captured_queries[0]["sql"]
    assert "$1" not in ctx.captured_queries[0]["sql"]


def test_a_statement_carrying_begin_or_a_savepoint_is_prepared_in_the_same_round_trip() -> None:
    """The first statement of a transaction carries BEGIN, the first in a nested block its
    SAVEPOINT: psycopg's pipeline sends both in one round trip, the statement bound on the
    server and prepared like any other."""
    for name in ("p1", "p2", "p3"):
        with transaction.atomic():
            with CaptureQueriesContext(connection) as ctx:
                Group.objects.create(name=name)  # carries BEGIN
            with transaction.atomic(), CaptureQueriesContext(connection) as nested:
                Group.objects.create(name=f"{name}-inner")  # carries SAVEPOINT
    assert len(ctx.captured_queries) == 1 and len(nested.captured_queries) == 1
    assert ctx.captured_queries[0]["sql"].startswith("BEGIN; INSERT")
    assert "'p3'" in ctx.captured_queries[0]["sql"]
    assert nested.captured_queries[0]["sql"].startswith("SAVEPOINT ")
    insert = 'INSERT INTO "auth_group" ("name") VALUES ($1) RETURNING "auth_group"."id"'
    assert _prepared_statements().count(insert) == 1
    assert names() == ["p1", "p1-inner", "p2", "p2-inner", "p3", "p3-inner"]


def test_a_failing_statement_after_begin_leaves_nothing_and_the_next_transaction_works() -> None:
    Group.objects.create(name="taken")
    for _ in range(3):
        with pytest.raises(IntegrityError), transaction.atomic():
            Group.objects.create(name="taken")  # carries BEGIN; fails on the unique name
    with transaction.atomic():
        Group.objects.create(name="after")
    assert names() == ["after", "taken"]


def test_with_prepared_statements_off_nothing_is_prepared(settings: Any) -> None:
    settings.CHARTER_DB_PREPARED_STATEMENTS = False
    connection.close()
    try:
        for _ in range(connection.ensure_connection() or 8):
            list(Group.objects.filter(name="x").values_list("name", flat=True))
        assert connection.connection.prepare_threshold is None
        assert _prepared_statements() == []
    finally:
        connection.close()
