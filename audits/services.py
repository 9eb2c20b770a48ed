"""The one place audit events are written.

Every service function that changes data calls :func:`record` inside its own
``transaction.atomic`` block, so the change and its event commit or roll back
together. On PostgreSQL the chain head's row lock serialises writers, from their
append to their commit, so concurrent writers can neither fork the chain nor leave
gaps; a writer that does not need its event back appends with its commit
(``record(deferred=True)``) and holds the head only while that runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import rfc8785
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from audits import context
from audits.models import GENESIS_HASH, AuditEvent, Checkpoint
from portal.db import defer
from portal.webhooks import ACTIVE_SUBSCRIPTIONS_SUBQUERY, candidate_events, on_audit_event

# Arbitrary constant naming the audit chain's advisory lock.
AUDIT_LOCK_KEY = 0x43484152  # "CHAR"


def to_json_value(value: Any) -> Any:
    """Reduce a value to plain JSON types (dates, decimals and UUIDs become strings)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def canonical(event: dict[str, Any]) -> bytes:
    """RFC 8785 (JSON Canonicalization Scheme) bytes of an event.

    An event whose values JCS writes exactly as Python's C JSON encoder does (see
    :func:`_encodes_alike`; nearly every event) is encoded by the latter, several times
    faster than ``rfc8785``'s pure-Python encoder; any other goes through ``rfc8785``,
    which also raises for what JCS cannot hold."""
    if _encodes_alike(event):
        try:
            return json.dumps(
                event, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 raises its own error for it
    return rfc8785.dumps(event)


_JCS_INT = 2**53 - 1  # JCS integers are IEEE 754 doubles' safe integers


def _encodes_alike(value: Any) -> bool:
    """Whether RFC 8785 and ``json.dumps(sort_keys=True, ensure_ascii=False, compact)``
    give the same text for ``value``: both escape strings alike (the two-character forms,
    ``\\u00xx`` for other control characters, nothing else); JCS writes a float as
    ECMAScript does, which equals Python's ``repr`` unless it is zero, integral (``1.0``)
    or in exponent form; JCS refuses integers beyond 2**53-1 and keys that are not
    strings (``json`` would write them); and JCS orders keys by UTF-16 code units, which
    is code point order below U+D800."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -_JCS_INT <= value <= _JCS_INT
    if isinstance(value, float):
        text = repr(value)
        return value != 0 and math.isfinite(value) and "e" not in text and text[-2:] != ".0"
    if isinstance(value, list | tuple):
        return all(_encodes_alike(item) for item in value)
    if isinstance(value, dict):
        return all(
            isinstance(key, str)
            and (key.isascii() or max(map(ord, key)) < 0xD800)
            and _encodes_alike(item)
            for key, item in value.items()
        )
    return False


def chain_hash(prev_hash: str, payload: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + payload).hexdigest()


def format_time(value: Any) -> str:
    return value.astimezone(timezone.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def actor_label(actor: Any) -> str:
    if actor is None:
        return "system"
    if getattr(actor, "is_anonymous", False):
        return "anonymous"
    return str(actor.get_username())


def object_label(obj: models.Model) -> tuple[str, str, str]:
    meta = obj._meta
    return f"{meta.app_label}.{meta.model_name}", str(obj.pk), str(obj)[:300]


_SEED_HEAD = """
INSERT INTO audits_chainhead (id, seq, hash)
SELECT 1, coalesce(max(seq), 0),
       coalesce((SELECT hash FROM audits_auditevent ORDER BY seq DESC LIMIT 1), %s)
FROM audits_auditevent
ON CONFLICT (id) DO NOTHING
"""
# Fields the database fills in (seq, time, the chain link) are spliced into the
# canonical JSON there; everything else is canonicalised in Python beforehand.
_FIXED_COLUMNS = (
    "actor_id",
    "actor_repr",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "changes",
    "request_id",
    "client_ip",
    "user_agent",
    "channel",
)
_SEQ_TIME_MARK = '"seq":0,"time":""'


def _lock_head() -> None:
    """Hold the writers' lock on the chain head until the transaction ends."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq FROM audits_chainhead WHERE id = 1 FOR UPDATE")
        if cursor.fetchone() is None:
            _seed_head(cursor)
            cursor.execute("SELECT seq FROM audits_chainhead WHERE id = 1 FOR UPDATE")


def _seed_head(cursor: Any) -> None:
    """(Re)create the head row from the event table, e.g. after a database flush."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AUDIT_LOCK_KEY])
    cursor.execute(_SEED_HEAD, [GENESIS_HASH])


_APPEND_SQL = (
    "SELECT a.*{extra} FROM charter_audit_append(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, "
    "%s, %s, %s, %s) a"
)


def _append_statement(
    body: dict[str, Any], columns: dict[str, Any], *, subscriptions: bool = False
) -> tuple[str, list[Any]]:
    """One call of ``charter_audit_append`` (audits migration 0007), and its parameters.

    The function locks the head row (``SELECT … FOR UPDATE`` returns the latest
    committed head even after waiting for another writer, so appends queue up and
    never fork), splices seq and time into the pre-canonicalised JSON, hashes it
    with PostgreSQL's ``sha256()``, inserts the event and moves the head.
    ``subscriptions``: the same statement also reads the active webhook subscriptions
    (one more column), for an event that a webhook could stand for.
    """
    text = canonical({"seq": 0, "time": "", **body}).decode("utf-8")
    before, mark, after = text.rpartition(_SEQ_TIME_MARK)
    assert mark, "canonical form lost the seq/time marker"
    extra = f", {ACTIVE_SUBSCRIPTIONS_SUBQUERY}" if subscriptions else ""
    return _APPEND_SQL.format(extra=extra), [
        before + '"seq":',
        after,
        *(columns[c] for c in _FIXED_COLUMNS),
    ]


def _append_now(sql: str, params: list[Any]) -> tuple[Any, ...]:
    """Run an append (:func:`_append_statement`) now: the event's row."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def record(
    action: str,
    *,
    actor: Any,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    changes: dict[str, Any] | None = None,
    deferred: bool = False,
) -> AuditEvent:
    """Append one event to the chain. Must run inside the change's transaction.

    ``deferred``: for a caller that does not use the event it gets back. On PostgreSQL the
    append then travels with the transaction's next statement — at the end of a request,
    its ``COMMIT`` (``portal.db.defer``) — instead of running now, so the chain head, which
    every audited write holds from its append to its commit, is not held while the rest of
    the request runs in Python. The event keeps its place among the transaction's other
    events and commits or rolls back with the change as before; the one returned has no
    ``seq``, ``hash`` or ``pk`` (they exist once it is sent). An event a webhook could
    stand for is appended now, as it reads the subscriptions in the same statement."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit events must be written inside the transaction of the change")
    if obj is not None:
        object_type, object_id, object_repr = object_label(obj)
    ctx = context.current()
    if actor is not None and getattr(actor, "is_anonymous", False):
        actor = None
    body = {
        "actor": actor_label(actor),
        "actor_id": actor.pk if actor is not None else None,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "object_repr": object_repr[:300],
        "changes": to_json_value(changes or {}),
        "request_id": ctx.request_id,
        "client_ip": ctx.client_ip,
        "user_agent": ctx.user_agent[:300],
        "channel": ctx.channel,
        "token_id": ctx.token_id,
    }
    event = AuditEvent(
        actor=actor,
        actor_repr=body["actor"],
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=body["object_repr"],
        changes=body["changes"],
        request_id=ctx.request_id,
        client_ip=ctx.client_ip,
        user_agent=body["user_agent"],
        channel=ctx.channel,
    )
    candidates = candidate_events(action, object_type, event.changes)
    if connection.vendor == "postgresql":
        columns = {c: getattr(event, c) for c in _FIXED_COLUMNS}
        columns["changes"] = json.dumps(event.changes)
        sql, params = _append_statement(body, columns, subscriptions=bool(candidates))
        if deferred and not candidates and defer(sql, params):
            return event
        row = _append_now(sql, params)
        event.pk, event.seq, event.created_at, event.payload, event.prev_hash, event.hash = row[:6]
        event._state.adding = False
        event._state.db = connection.alias
        return on_audit_event(event, candidates, row[6] if candidates else None)
    # SQLite: transactions take the database write lock up front (IMMEDIATE mode).
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    event.seq, event.prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
    event.created_at = timezone.now()
    payload = canonical({"seq": event.seq, "time": format_time(event.created_at), **body})
    event.payload = payload.decode("utf-8")
    event.hash = chain_hash(event.prev_hash, payload)
    event.save()
    return on_audit_event(event, candidates)


def record_access(action: str, *, actor: Any, obj: models.Model, **extra: Any) -> AuditEvent:
    """Log a view or download of a sensitive object in its own short transaction."""
    with transaction.atomic():
        return record(action, actor=actor, obj=obj, changes=extra or None)


def history_for(obj: models.Model) -> models.QuerySet[AuditEvent]:
    object_type, object_id, _ = object_label(obj)
    return AuditEvent.objects.filter(object_type=object_type, object_id=object_id)


def create_checkpoint(*, actor: Any = None) -> Checkpoint | None:
    """Sign the chain head, then log the checkpoint as an event of its own.

    A no-op (returning None) when no event other than checkpoint events was
    written since the last checkpoint, or when the chain is empty.
    """
    from audits.verify import CHECKPOINT_PAYLOAD_TYPE
    from portal.dsse import sign_envelope
    from portal.keys import portal_key

    key = portal_key()  # fail before taking the lock if there is no key
    with transaction.atomic():
        _lock_head()
        moved = (
            AuditEvent.objects.exclude(action=AuditEvent.Action.CHECKPOINT)
            .order_by("-seq")
            .values_list("seq", flat=True)
            .first()
        )
        last = Checkpoint.objects.order_by("-seq").values_list("seq", flat=True).first()
        if moved is None or (last is not None and moved <= last):
            return None
        seq, head_hash = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        now = timezone.now()
        body = rfc8785.dumps({"seq": seq, "hash": head_hash, "time": format_time(now)})
        envelope = sign_envelope(body, key.key_id, key.sign, payload_type=CHECKPOINT_PAYLOAD_TYPE)
        checkpoint = Checkpoint.objects.create(
            seq=seq, hash=head_hash, created_at=now, key_id=key.key_id, envelope=envelope
        )
        record(
            AuditEvent.Action.CHECKPOINT,
            actor=actor,
            obj=checkpoint,
            changes={"seq": seq, "hash": head_hash, "key_id": key.key_id},
        )
        return checkpoint


def _public_keys_pem() -> str:
    from portal.keys import portal_key, previous_public_keys, public_pem

    pems = [portal_key().public_pem]
    pems += [public_pem(k) for k in previous_public_keys()]
    return "".join(p if p.endswith("\n") else p + "\n" for p in dict.fromkeys(pems))


def export_chain(out: str | Path, *, actor: Any = None) -> tuple[int, int]:
    """Write the chain to a zip for offline checking; returns (events, checkpoints).

    The zip holds ``events.jsonl`` (one ``{"seq","prev_hash","hash","payload"}``
    object per line, ``payload`` the exact stored text), ``checkpoints.json``,
    ``segments.json`` (signed manifests of archived segments, whose events are no
    longer in the table) and ``portal_public_keys.pem``. The export is audited
    first, so the file ends with its own "export" event; later events are left
    out for a consistent cut.
    """
    out = Path(out)
    with transaction.atomic():
        event = record(
            AuditEvent.Action.EXPORT,
            actor=actor,
            object_type="audits.auditevent",
            object_repr=f"audit chain export to {out.name}",
        )
    last_seq = event.seq
    checkpoints = [
        {
            "seq": cp.seq,
            "hash": cp.hash,
            "created_at": format_time(cp.created_at),
            "key_id": cp.key_id,
            "envelope": cp.envelope,
        }
        for cp in Checkpoint.objects.filter(seq__lte=last_seq).order_by("seq", "id")
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("events.jsonl", "w") as stream, connection.cursor() as cursor:
            after = 0
            while after < last_seq:
                cursor.execute(
                    "SELECT seq, prev_hash, hash, payload FROM audits_auditevent "
                    "WHERE seq > %s AND seq <= %s ORDER BY seq LIMIT %s",
                    [after, last_seq, 20_000],
                )
                rows = cursor.fetchall()
                if not rows:
                    break
                lines = [
                    json.dumps(
                        {"seq": s, "prev_hash": p, "hash": h, "payload": body},
                        ensure_ascii=False,
                    )
                    for s, p, h, body in rows
                ]
                stream.write(("\n".join(lines) + "\n").encode("utf-8"))
                count += len(rows)
                after = rows[-1][0]
        archive.writestr("checkpoints.json", json.dumps(checkpoints, indent=1) + "\n")
        archive.writestr("segments.json", json.dumps(_segments(), indent=1) + "\n")
        archive.writestr("portal_public_keys.pem", _public_keys_pem())
    return count, len(checkpoints)


def _segments() -> list[dict[str, Any]]:
    from audits.archive import manifest_of
    from audits.models import Segment

    return [
        {**manifest_of(s), "file": s.file_name, "envelope": s.envelope}
        for s in Segment.objects.order_by("first_seq")
    ]
