"""Verify the audit hash chain and its signed checkpoints.

Rows are streamed in ``seq`` order through a raw cursor, in keyset-paginated
batches (no ORM instances), so memory stays flat however long the chain is.
Each row must continue the sequence from 1, link to the previous row's hash and
carry ``hash = SHA-256(prev_hash || payload)``. Deep mode also parses each
payload and compares it with the row's indexed columns. Every checkpoint's DSSE
signature is checked against the portal's current and previous public keys, and
its (seq, hash) against the row at that seq. Verification stops at the first
broken seq and reports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import connection, transaction

from audits.models import GENESIS_HASH, AuditEvent, Checkpoint, Segment
from portal import dsse, keys

BATCH_SIZE = 20_000
CHECKPOINT_PAYLOAD_TYPE = "application/vnd.charter.checkpoint+json"

_FAST_SQL = (
    "SELECT seq, prev_hash, hash, payload FROM audits_auditevent "
    "WHERE seq > %s ORDER BY seq LIMIT %s"
)
_DEEP_SQL = (
    "SELECT seq, prev_hash, hash, payload, action, object_type, object_id, actor_repr "
    "FROM audits_auditevent WHERE seq > %s ORDER BY seq LIMIT %s"
)


@dataclass(frozen=True)
class Result:
    ok: bool
    length: int
    head_hash: str
    first_bad_seq: int | None
    reason: str
    checked_checkpoints: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def known_public_keys() -> dict[str, Ed25519PublicKey]:
    """Key id -> public key for the portal's current key (if loadable) and retired keys."""
    found: dict[str, Ed25519PublicKey] = {}
    try:
        current = keys.portal_key().public
    except keys.SigningKeyUnavailable:
        current = None
    if current is not None:
        found[keys.key_id(current)] = current
    else:
        # The private key file is missing or unreadable: its public half, registered as a
        # portal SigningKey when it signed, still verifies the checkpoints it made. (Only in
        # this degraded state: otherwise the keys come from outside the database, which is
        # what checkpoints protect; the offline verifier uses the exported PEM file.)
        from django.apps import apps

        signing_key = apps.get_model("registry", "SigningKey")
        for pem in signing_key.objects.filter(kind="portal").values_list(
            "public_key_pem", flat=True
        ):
            public = keys.load_public_pem(pem)
            found[keys.key_id(public)] = public
    for public in keys.previous_public_keys():
        found[keys.key_id(public)] = public
    return found


def check_checkpoint_envelope(
    envelope: Any, seq: int, hash_: str, public_keys: dict[str, Ed25519PublicKey]
) -> str | None:
    """None if the envelope is validly signed over this (seq, hash); otherwise the reason."""
    try:
        verified = dsse.verify_envelope(
            envelope, public_keys.get, expected_payload_type=CHECKPOINT_PAYLOAD_TYPE
        )
    except dsse.EnvelopeError as exc:
        return f"checkpoint signature invalid: {exc}"
    try:
        body = json.loads(verified.payload)
    except ValueError:
        return "checkpoint payload is not JSON"
    if not isinstance(body, dict) or body.get("seq") != seq or body.get("hash") != hash_:
        return "checkpoint payload does not match its seq/hash"
    return None


def _rows(deep: bool, batch_size: int, after: int = 0) -> Iterator[list[tuple[Any, ...]]]:
    sql = _DEEP_SQL if deep else _FAST_SQL
    last = after
    with connection.cursor() as cursor:
        while True:
            cursor.execute(sql, [last, batch_size])
            rows = cursor.fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]


# The in-database check (fast mode on PostgreSQL): every row's hash recomputed by
# PostgreSQL's own sha256() (a parallel sequential scan), every link compared by a
# join on seq+1, and the seqs counted (contiguous because count = max - min + 1 and
# seq has its unique index, which is checked to still exist). It only says "intact"
# or "not"; on "not", the row-by-row walk finds and names the first broken seq.
_SEQ_UNIQUE_SQL = (
    "SELECT count(*) FROM pg_catalog.pg_index i "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
    "WHERE i.indrelid = 'audits_auditevent'::regclass AND i.indisunique AND i.indisvalid "
    "AND i.indnkeyatts = 1 AND a.attname = 'seq'"
)
_DB_HASH_SQL = (
    "SELECT count(*), min(seq), max(seq), "
    "count(*) FILTER (WHERE hash <> encode(pg_catalog.sha256("
    "pg_catalog.convert_to(prev_hash || payload, 'UTF8')), 'hex')) "
    "FROM audits_auditevent WHERE seq >= %s"
)
# Each prev_hash against the previous row's hash: an index-only scan of the seq index,
# which carries both hashes (audits migration 0010).
_DB_LINK_SQL = (
    "SELECT count(*) FROM (SELECT prev_hash, lag(hash) OVER (ORDER BY seq) AS before "
    "FROM audits_auditevent WHERE seq >= %s) t WHERE before IS NOT NULL AND prev_hash <> before"
)


def _intact_in_database(start: int, prev: str) -> tuple[int, str] | None:
    """(length, head hash) if the rows from ``start`` on form an intact chain, else None."""
    with transaction.atomic(), connection.cursor() as cursor:
        workers = max(1, min(8, (os.cpu_count() or 2)))
        cursor.execute(f"SET LOCAL max_parallel_workers_per_gather = {workers}")
        cursor.execute("SET LOCAL parallel_setup_cost = 0")
        cursor.execute("SET LOCAL parallel_tuple_cost = 0")
        cursor.execute("SET LOCAL min_parallel_table_scan_size = 0")
        cursor.execute("SET LOCAL work_mem = '128MB'")  # the link join's hash fits in memory
        cursor.execute("SET LOCAL jit = off")  # compiling costs more than it saves here
        cursor.execute(_SEQ_UNIQUE_SQL)
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(_DB_HASH_SQL, [start])
        rows, low, high, bad_hashes = cursor.fetchone()
        if rows == 0:
            return (start - 1, prev)
        if bad_hashes or low != start or high != start + rows - 1:
            return None
        cursor.execute(_DB_LINK_SQL, [start])
        if cursor.fetchone()[0]:
            return None
        cursor.execute(  # two scalar subqueries: a UNION ALL would not keep their order
            "SELECT (SELECT prev_hash FROM audits_auditevent WHERE seq = %s), "
            "(SELECT hash FROM audits_auditevent WHERE seq = %s)",
            [low, high],
        )
        first_prev, head = cursor.fetchone()
        if first_prev != prev:
            return None
        return (high, head)


def _check_segments(
    public_keys: dict[str, Ed25519PublicKey],
) -> tuple[int, str, list[Segment], tuple[int, str] | None]:
    """Walk the archived segments: (next seq, hash before it, segments, failure or None)."""
    from audits.archive import SEGMENT_PAYLOAD_TYPE, manifest_of

    expected, prev = 1, GENESIS_HASH
    segments = list(Segment.objects.order_by("first_seq"))
    for segment in segments:
        where = segment.first_seq
        if segment.first_seq != expected or segment.prev_hash != prev:
            return expected, prev, segments, (where, "archived segments are not contiguous")
        try:
            verified = dsse.verify_envelope(
                segment.envelope, public_keys.get, expected_payload_type=SEGMENT_PAYLOAD_TYPE
            )
            body = json.loads(verified.payload)
        except (dsse.EnvelopeError, ValueError) as exc:
            return expected, prev, segments, (where, f"segment signature invalid: {exc}")
        manifest = manifest_of(segment)
        if not isinstance(body, dict) or any(body.get(k) != v for k, v in manifest.items()):
            return expected, prev, segments, (where, "segment manifest differs from its row")
        expected, prev = segment.last_seq + 1, segment.last_hash
    return expected, prev, segments, None


def _deep_reason(row: tuple[Any, ...]) -> str | None:
    seq, _, _, payload, action, object_type, object_id, actor_repr = row
    try:
        event = json.loads(payload)
    except ValueError:
        return "payload is not JSON"
    if not isinstance(event, dict):
        return "payload is not a JSON object"
    for key, column in (
        ("seq", seq),
        ("action", action),
        ("object_type", object_type),
        ("object_id", object_id),
        ("actor", actor_repr),
    ):
        if event.get(key) != column:
            return f"payload {key} {event.get(key)!r} differs from column {column!r}"
    return None


def verify_chain(
    deep: bool = True, *, batch_size: int = BATCH_SIZE, archives: bool = False
) -> Result:
    """Check the whole chain; stop at and report the first broken seq.

    Archived segments are checked by their signed manifests (and, with
    ``archives=True``, their files too); the rows still held are then walked
    from the last segment's hash. Fast mode on PostgreSQL checks the rows in the
    database first and walks them row by row only to name a break.
    """
    public_keys = known_public_keys()
    start, start_prev, segments, seg_failure = _check_segments(public_keys)
    if seg_failure is not None:
        seq, reason = seg_failure
        return Result(False, seq - 1, start_prev, seq, reason, 0)
    if archives:
        from audits.archive import check_segment_file

        for segment in segments:
            reason = check_segment_file(segment, settings.AUDIT_ARCHIVE_DIR / segment.file_name)
            if reason is not None:
                return Result(
                    False, segment.first_seq - 1, segment.prev_hash, segment.first_seq, reason, 0
                )
    cp_expected: dict[int, str] = {}
    cp_bad: dict[int, str] = {}
    checkpoints = list(
        Checkpoint.objects.order_by("seq", "id").values_list("seq", "hash", "envelope")
    )
    for cp_seq, cp_hash, envelope in checkpoints:
        reason = check_checkpoint_envelope(envelope, cp_seq, cp_hash, public_keys)
        if reason is not None:
            cp_bad.setdefault(cp_seq, reason)
        elif cp_expected.setdefault(cp_seq, cp_hash) != cp_hash:
            cp_bad.setdefault(cp_seq, "two checkpoints disagree on the hash at this seq")
    cp_seqs = set(cp_expected) | set(cp_bad)
    cp_count = Counter(cp_seq for cp_seq, _, _ in checkpoints)
    checked = 0
    archived_cps = {seq for seq in cp_seqs if seq < start}
    for seq in archived_cps:  # compared with their rows when those were archived
        if seq in cp_bad:
            return Result(False, seq - 1, start_prev, seq, cp_bad[seq], 0)
        if any(seg.last_seq == seq and seg.last_hash != cp_expected[seq] for seg in segments):
            return Result(False, seq - 1, start_prev, seq, "checkpoint differs from segment", 0)
        checked += cp_count[seq]

    expected = start
    prev = start_prev
    sha256 = hashlib.sha256

    if not deep and connection.vendor == "postgresql":
        intact = _intact_in_database(start, start_prev)
        if intact is not None:
            length, head = intact
            held = {seq for seq in cp_seqs if seq >= start}
            bad = sorted(seq for seq in held if seq in cp_bad or seq > length)
            if not bad:
                hashes = dict(AuditEvent.objects.filter(seq__in=held).values_list("seq", "hash"))
                bad = sorted(seq for seq in held if hashes.get(seq) != cp_expected[seq])
            if not bad:
                checked += sum(cp_count[seq] for seq in held)
                return Result(True, length, head, None, "", checked)
            # otherwise fall through: the walk below names the first problem

    def fail(seq: int, reason: str) -> Result:
        return Result(False, expected - 1, prev, seq, reason, checked)

    for rows in _rows(deep, batch_size, after=start - 1):
        for row in rows:
            seq, prev_hash, hash_, payload = row[0], row[1], row[2], row[3]
            if seq != expected:
                return fail(expected, f"seq {expected} is missing (next row has seq {seq})")
            if prev_hash != prev:
                return fail(seq, "prev_hash does not match the previous event's hash")
            if sha256((prev_hash + payload).encode()).hexdigest() != hash_:
                return fail(seq, "hash does not match sha256(prev_hash || payload)")
            if deep:
                reason = _deep_reason(row)
                if reason is not None:
                    return fail(seq, reason)
            if seq in cp_seqs:
                if seq in cp_bad:
                    return fail(seq, cp_bad[seq])
                if cp_expected[seq] != hash_:
                    return fail(seq, "checkpoint hash differs from the event's hash")
                checked += cp_count[seq]
            prev = hash_
            expected += 1
    length = expected - 1
    beyond = sorted(s for s in cp_seqs if s > length)
    if beyond:
        seq = beyond[0]
        return fail(seq, cp_bad.get(seq) or f"checkpoint at seq {seq} is beyond the chain's end")
    return Result(True, length, prev, None, "", checked)
