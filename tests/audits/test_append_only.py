from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from tests import factories as f


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audits_auditevent SET payload = payload || ' ' WHERE seq = 1",
        "UPDATE audits_auditevent SET actor_repr = 'someone else'",
        "DELETE FROM audits_auditevent WHERE seq = 1",
        "DELETE FROM audits_auditevent",
    ],
)
def test_raw_update_and_delete_are_refused(sql: str) -> None:
    f.use_case()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audits_auditevent WHERE actor_repr = 'someone else'")
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT count(*) FROM audits_auditevent")
        assert cursor.fetchone()[0] >= 1


@pytest.mark.django_db
def test_truncate_is_refused_without_the_session_setting() -> None:
    f.use_case()
    with (
        pytest.raises(DatabaseError, match="TRUNCATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL charter.allow_truncate = 'off'")
        cursor.execute("TRUNCATE audits_auditevent")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    ["DELETE FROM audits_checkpoint", "UPDATE audits_checkpoint SET hash = repeat('0', 64)"],
)
def test_checkpoints_cannot_be_deleted_or_edited(sql: str) -> None:
    from audits.services import create_checkpoint

    f.use_case()
    checkpoint = create_checkpoint()
    assert checkpoint is not None
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    with connection.cursor() as cursor:
        cursor.execute("SELECT hash FROM audits_checkpoint")
        assert [row[0] for row in cursor.fetchall()] == [checkpoint.hash]
