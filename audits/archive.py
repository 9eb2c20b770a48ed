"""Retention by archiving whole signed segments of the chain, never by editing rows.

``archive_segment(through_seq=N)`` takes the oldest events still in the table up
to N (which must not pass the newest signed checkpoint), checks that stretch of
the chain, writes it to a zip in ``AUDIT_ARCHIVE_DIR`` in the export format
(``events.jsonl``, ``checkpoints.json``, ``portal_public_keys.pem``) plus
``segment.json``: a manifest {first_seq, last_seq, prev_hash, last_hash, events,
events_sha256} in a DSSE envelope signed by the portal key. In one transaction
it then stores the Segment, logs an ``archive`` event and deletes the rows: the
PostgreSQL trigger lets a DELETE through only for rows a Segment covers, in a
session that sets ``charter.archiving``. The remaining chain verifies from the
last segment's ``last_hash``; each archive verifies on its own with
``tools/verify_audit_export.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import rfc8785
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audits.models import GENESIS_HASH, AuditEvent, Checkpoint, Segment
from audits.services import _lock_head, _public_keys_pem, format_time, record

SEGMENT_PAYLOAD_TYPE = "application/vnd.charter.audit-segment+json"
_BATCH = 20_000


class ArchiveError(Exception):
    """The requested segment cannot be archived; the message says why."""


def manifest_of(segment: Segment) -> dict[str, Any]:
    return {
        "first_seq": segment.first_seq,
        "last_seq": segment.last_seq,
        "prev_hash": segment.prev_hash,
        "last_hash": segment.last_hash,
        "events": segment.events,
        "events_sha256": segment.events_sha256,
    }


def _rows(first: int, last: int) -> Iterator[tuple[int, str, str, str]]:
    after = first - 1
    with connection.cursor() as cursor:
        while after < last:
            cursor.execute(
                "SELECT seq, prev_hash, hash, payload FROM audits_auditevent "
                "WHERE seq > %s AND seq <= %s ORDER BY seq LIMIT %s",
                [after, last, _BATCH],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            yield from rows
            after = rows[-1][0]


def export_line(seq: int, prev_hash: str, hash_: str, payload: str) -> bytes:
    """One line of ``events.jsonl`` (the export format of audits.services.export_chain)."""
    row = {"seq": seq, "prev_hash": prev_hash, "hash": hash_, "payload": payload}
    return json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"


def archive_segment(
    *, through_seq: int, actor: Any = None, directory: Path | None = None
) -> Segment:
    """Archive the oldest events still held, up to ``through_seq``; see the module doc."""
    import zipfile

    from portal.dsse import sign_envelope
    from portal.keys import portal_key

    key = portal_key()  # fail before taking the lock if there is no key
    directory = Path(directory or settings.AUDIT_ARCHIVE_DIR)
    with transaction.atomic():
        _lock_head()
        last = Segment.objects.order_by("-last_seq").first()
        first = last.last_seq + 1 if last else 1
        prev = last.last_hash if last else GENESIS_HASH
        newest_cp = Checkpoint.objects.order_by("-seq").values_list("seq", flat=True).first()
        if newest_cp is None:
            raise ArchiveError("no signed checkpoint yet: sign one before archiving")
        if through_seq > newest_cp:
            raise ArchiveError(
                f"through_seq {through_seq} is past the newest signed checkpoint "
                f"(seq {newest_cp}); archive up to a checkpointed seq"
            )
        if through_seq < first:
            raise ArchiveError(f"events up to seq {first - 1} are already archived")

        directory.mkdir(parents=True, exist_ok=True)
        name = f"audit-segment-{first:012d}-{through_seq:012d}.zip"
        tmp = directory / (name + ".part")
        digest = hashlib.sha256()
        expected, count = first, 0
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            with archive.open("events.jsonl", "w") as stream:
                for seq, prev_hash, hash_, payload in _rows(first, through_seq):
                    if seq != expected:
                        raise ArchiveError(f"seq {expected} is missing; nothing archived")
                    if prev_hash != prev or (
                        hashlib.sha256((prev_hash + payload).encode()).hexdigest() != hash_
                    ):
                        raise ArchiveError(
                            f"the chain is broken at seq {seq}; nothing archived (run verify_audit)"
                        )
                    line = export_line(seq, prev_hash, hash_, payload)
                    digest.update(line)
                    stream.write(line)
                    prev, expected, count = hash_, expected + 1, count + 1
            if expected != through_seq + 1:
                raise ArchiveError(f"seq {expected} is missing; nothing archived")
            segment = Segment(
                first_seq=first,
                last_seq=through_seq,
                prev_hash=last.last_hash if last else GENESIS_HASH,
                last_hash=prev,
                events=count,
                events_sha256=digest.hexdigest(),
                file_name=name,
                created_at=timezone.now(),
                key_id=key.key_id,
            )
            body = rfc8785.dumps(
                {**manifest_of(segment), "created_at": format_time(segment.created_at)}
            )
            segment.envelope = sign_envelope(
                body, key.key_id, key.sign, payload_type=SEGMENT_PAYLOAD_TYPE
            )
            checkpoints = [
                {
                    "seq": cp.seq,
                    "hash": cp.hash,
                    "created_at": format_time(cp.created_at),
                    "key_id": cp.key_id,
                    "envelope": cp.envelope,
                }
                for cp in Checkpoint.objects.filter(seq__gte=first, seq__lte=through_seq)
            ]
            archive.writestr(
                "segment.json",
                json.dumps({**manifest_of(segment), "envelope": segment.envelope}, indent=1),
            )
            archive.writestr("checkpoints.json", json.dumps(checkpoints, indent=1) + "\n")
            archive.writestr("portal_public_keys.pem", _public_keys_pem())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, directory / name)

        segment.save()
        record(
            AuditEvent.Action.ARCHIVE,
            actor=actor,
            obj=segment,
            changes={**manifest_of(segment), "file": name},
        )
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL charter.archiving = 'on'")
            cursor.execute(
                "DELETE FROM audits_auditevent WHERE seq >= %s AND seq <= %s",
                [first, through_seq],
            )
            if cursor.rowcount != count:
                raise ArchiveError("the rows changed while archiving; nothing archived")
        return segment


def check_segment_file(segment: Segment, path: Path) -> str | None:
    """None if the archive at ``path`` holds exactly this segment; otherwise the reason."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("events.jsonl")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        return f"archive {path.name} is unreadable ({exc})"
    if hashlib.sha256(data).hexdigest() != segment.events_sha256:
        return f"archive {path.name}: events.jsonl differs from the signed manifest"
    prev, expected = segment.prev_hash, segment.first_seq
    for line in data.splitlines():
        row = json.loads(line)
        seq, prev_hash, hash_, payload = row["seq"], row["prev_hash"], row["hash"], row["payload"]
        if seq != expected or prev_hash != prev:
            return f"archive {path.name}: chain broken at seq {expected}"
        if hashlib.sha256((prev_hash + payload).encode()).hexdigest() != hash_:
            return f"archive {path.name}: hash mismatch at seq {seq}"
        prev, expected = hash_, expected + 1
    if expected != segment.last_seq + 1 or prev != segment.last_hash:
        return f"archive {path.name}: does not end at the manifest's last seq/hash"
    return None
