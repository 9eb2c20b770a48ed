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
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import connection

from audits.models import GENESIS_HASH, Checkpoint
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


def _rows(deep: bool, batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    sql = _DEEP_SQL if deep else _FAST_SQL
    last = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(sql, [last, batch_size])
            rows = cursor.fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]


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


def verify_chain(deep: bool = True, *, batch_size: int = BATCH_SIZE) -> Result:
    """Walk the whole chain; stop at and report the first broken seq."""
    public_keys = known_public_keys()
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

    expected = 1
    prev = GENESIS_HASH
    sha256 = hashlib.sha256

    def fail(seq: int, reason: str) -> Result:
        return Result(False, expected - 1, prev, seq, reason, checked)

    for rows in _rows(deep, batch_size):
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
