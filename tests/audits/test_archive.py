"""Retention by archiving whole signed segments (issue 3): never by editing rows."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from audits.archive import ArchiveError, archive_segment
from audits.models import AuditEvent, Segment
from audits.services import create_checkpoint, export_chain
from audits.verify import verify_chain
from tests import factories as f
from tests.audits.helpers import head_seq, rewrite_member, run_offline


def _events(n: int = 4) -> None:
    for _ in range(n):
        f.dataset(f.use_case())


@pytest.fixture
def archive_dir(tmp_path: Path, settings: Any) -> Path:
    settings.AUDIT_ARCHIVE_DIR = tmp_path / "archive"
    return settings.AUDIT_ARCHIVE_DIR


def _archive_first_stretch() -> tuple[Segment, int]:
    _events()
    cp = create_checkpoint()
    _events(2)
    segment = archive_segment(through_seq=cp.seq)
    return segment, cp.seq


@pytest.mark.django_db
def test_archiving_moves_a_signed_prefix_out_and_the_chain_still_verifies(
    archive_dir: Path, tmp_path: Path
) -> None:
    before = head_seq()
    _events()
    cp = create_checkpoint()
    _events(2)
    head_before = head_seq()
    segment = archive_segment(through_seq=cp.seq)

    assert (segment.first_seq, segment.last_seq, segment.events) == (1, cp.seq, cp.seq)
    assert before == 0
    # the rows are gone, the rest is untouched, and the archiving itself is an event
    assert not AuditEvent.objects.filter(seq__lte=cp.seq).exists()
    last = AuditEvent.objects.order_by("-seq").first()
    assert last.seq == head_before + 1 and last.action == "archive"
    assert last.changes["last_seq"] == cp.seq and last.changes["file"] == segment.file_name
    for deep in (False, True):
        result = verify_chain(deep=deep, archives=True)
        assert result.ok, result
        assert result.length == last.seq

    # the archive verifies offline on its own, and a full export still verifies
    archived = archive_dir / segment.file_name
    proc = run_offline(archived)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"OK {cp.seq} events, 1 checkpoints" in proc.stdout
    out = tmp_path / "export.zip"
    export_chain(out)
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("segments.json"))[0]["last_seq"] == cp.seq
        first_line = zf.read("events.jsonl").splitlines()[0]
    assert json.loads(first_line)["seq"] == cp.seq + 1
    proc = run_offline(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.django_db
def test_second_segment_continues_the_first(archive_dir: Path) -> None:
    first, _ = _archive_first_stretch()
    cp = create_checkpoint()
    second = archive_segment(through_seq=cp.seq)
    assert second.first_seq == first.last_seq + 1
    assert second.prev_hash == first.last_hash
    assert verify_chain(deep=False, archives=True).ok
    proc = run_offline(archive_dir / second.file_name)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.django_db
def test_archive_refusals_write_nothing(archive_dir: Path) -> None:
    _events()
    with pytest.raises(ArchiveError, match="no signed checkpoint"):
        archive_segment(through_seq=2)
    cp = create_checkpoint()
    _events(1)
    with pytest.raises(ArchiveError, match="past the newest signed checkpoint"):
        archive_segment(through_seq=cp.seq + 1)
    archive_segment(through_seq=cp.seq)
    with pytest.raises(ArchiveError, match=f"up to seq {cp.seq} are already archived"):
        archive_segment(through_seq=cp.seq)
    assert Segment.objects.count() == 1


@pytest.mark.django_db
def test_command_archives_through_the_newest_checkpoint(
    archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CommandError, match="no signed checkpoint"):
        call_command("archive_audit", "--through-checkpoint")
    _events()
    cp = create_checkpoint()
    call_command("archive_audit", "--through-checkpoint")
    assert f"archived seq 1-{cp.seq}" in capsys.readouterr().out
    assert AuditEvent.objects.order_by("-seq").first().channel == "command"


@pytest.mark.django_db
def test_rows_can_be_deleted_only_when_archived_and_only_while_archiving(
    archive_dir: Path,
) -> None:
    segment, _ = _archive_first_stretch()
    uncovered = AuditEvent.objects.order_by("seq").first().seq
    assert uncovered == segment.last_seq + 1
    with connection.cursor() as cursor:
        for sql in (
            # an uncovered row, even with the archiving flag
            "SET LOCAL charter.archiving = 'on'; DELETE FROM audits_auditevent WHERE seq = %s",
            # any row without it
            "DELETE FROM audits_auditevent WHERE seq = %s",
        ):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                for statement in sql.split("; "):
                    cursor.execute(statement, [uncovered] if "%s" in statement else [])
        for sql in ("UPDATE audits_segment SET events = 0", "DELETE FROM audits_segment"):
            refused = pytest.raises(DatabaseError, match="audits_segment is append-only")
            with refused, transaction.atomic():
                cursor.execute(sql)
    assert AuditEvent.objects.filter(seq=uncovered).exists()


@pytest.mark.django_db
def test_altered_archive_file_is_found(archive_dir: Path) -> None:
    segment, _ = _archive_first_stretch()
    path = archive_dir / segment.file_name

    def flip(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[1] = lines[1].replace(b'"action', b'"Action', 1)
        return b"\n".join(lines)

    rewrite_member(path, "events.jsonl", flip)
    result = verify_chain(deep=False, archives=True)
    assert not result.ok and result.first_bad_seq == segment.first_seq
    assert "differs from the signed manifest" in result.reason
    assert verify_chain(deep=False).ok  # without the files, the manifests still hold
    proc = run_offline(path)
    assert proc.returncode == 1
    assert "events.jsonl differs from the signed segment manifest" in proc.stdout


@pytest.mark.django_db
def test_forged_segment_row_is_found(archive_dir: Path) -> None:
    segment, _ = _archive_first_stretch()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audits_segment DISABLE TRIGGER audits_segment_append_only")
        cursor.execute("UPDATE audits_segment SET events = events + 1 WHERE id = %s", [segment.pk])
        cursor.execute("ALTER TABLE audits_segment ENABLE TRIGGER audits_segment_append_only")
    result = verify_chain(deep=True)
    assert not result.ok and result.first_bad_seq == 1
    assert "segment manifest differs" in result.reason


@pytest.mark.django_db
def test_chain_page_lists_archived_segments(archive_dir: Path, world: Any, client: Any) -> None:
    segment, _ = _archive_first_stretch()
    client.force_login(world.users["auditor"])
    page = client.get("/audit/chain/").content.decode()
    assert f"{segment.first_seq}–{segment.last_seq}" in page
    assert segment.file_name in page
