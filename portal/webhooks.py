"""Outgoing webhooks: which audit events become which webhook events, and their delivery.

The source of every webhook is the audit chain: ``audits.services.record`` hands each
new event to :func:`on_audit_event`, which maps ``(action, object_type, changes)`` to
webhook event names and, when a subscription wants one of them, writes a
:class:`~portal.models.WebhookDelivery` row *in the transaction of the change* and
enqueues its delivery with ``transaction.on_commit``. A rolled-back change therefore
sends nothing, and a committed one leaves a pending delivery even if the enqueue is
lost (``requeue_stalled`` picks those up).

Each delivery is a JSON POST signed with the subscription's secret::

    X-Charter-Event: version.registered
    X-Charter-Delivery: <delivery uuid>
    X-Charter-Timestamp: <unix seconds>
    X-Charter-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

5xx answers, 429, timeouts and connection errors are retried with exponential backoff
(``CHARTER_WEBHOOK_MAX_ATTEMPTS`` tries in all); every try is kept as a
:class:`~portal.models.WebhookAttempt`. Targets that resolve to private, loopback,
link-local or reserved addresses are refused (unless allowed in settings) when a
subscription is saved and again at each delivery, and the connection goes to the very
address that was checked, so DNS rebinding cannot slip past the check.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import random
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from audits.models import AuditEvent
from portal.models import (
    PING_EVENT,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from portal.permissions import Access

log = logging.getLogger(__name__)

EVENTS: tuple[str, ...] = tuple(WebhookEvent.values)
USER_AGENT = "Charter-Webhooks/1"
EDITABLE_FIELDS = ("name", "url", "events", "active")
_APPROVAL_DECIDED_STATES = {"approved", "rejected", "changes_requested"}
_RETRAINING_FINAL_STATES = {
    "succeeded",
    "failed",
    "cancelled",
    "canceled",
    "completed",
    "finished",
    "timed_out",
    "error",
}
_DRIFT_KINDS = {"drift", "prediction_drift"}
_EXCERPT = 500


# ---------------------------------------------------------------- audit event → webhook events


def _after(changes: Any) -> dict[str, Any]:
    after = changes.get("after") if isinstance(changes, dict) else None
    return after if isinstance(after, dict) else {}


def _is_drift(changes: Any, obj: models.Model | None) -> bool:
    after = _after(changes)
    if after.get("kind") in _DRIFT_KINDS or after.get("source") in _DRIFT_KINDS:
        return True
    if obj is None:
        return False
    if getattr(obj, "kind", None) in _DRIFT_KINDS:
        return True
    rule = getattr(obj, "rule", None)
    return getattr(rule, "kind", None) in _DRIFT_KINDS


def event_names(
    action: str, object_type: str, changes: Any, obj: models.Model | None = None
) -> list[str]:
    """The webhook events an audit event stands for (often none).

    ``obj`` (the audited object, when loaded) only refines ``incident.opened`` into
    ``drift.alert`` as well, when the incident's own kind or its rule's kind is drift.
    """
    after = _after(changes)
    create = action == AuditEvent.Action.CREATE
    moved = action in (AuditEvent.Action.TRANSITION, AuditEvent.Action.UPDATE)
    if object_type == "registry.modelversion" and create:
        return [WebhookEvent.VERSION_REGISTERED]
    if object_type == "approvals.approvalrequest" and action == AuditEvent.Action.TRANSITION:
        state = after.get("state")
        if state == "submitted":
            return [WebhookEvent.APPROVAL_REQUESTED]
        if state in _APPROVAL_DECIDED_STATES:
            return [WebhookEvent.APPROVAL_DECIDED]
        return []
    if object_type == "registry.deployment" and create:
        return [WebhookEvent.DEPLOYMENT_RECORDED]
    if object_type == "workers.incident":
        if create:
            names = [WebhookEvent.INCIDENT_OPENED]
            if _is_drift(changes, obj):
                names.append(WebhookEvent.DRIFT_ALERT)
            return names
        if moved and after.get("status") == "closed":
            return [WebhookEvent.INCIDENT_CLOSED]
        return []
    if object_type == "workers.retrainingjob" and moved:
        state = after.get("status", after.get("state"))
        if state in _RETRAINING_FINAL_STATES:
            return [WebhookEvent.RETRAINING_FINISHED]
    return []


def candidate_events(action: str, object_type: str, changes: Any) -> set[str]:
    """The webhook events an audit event could stand for, before its object is read."""
    names = event_names(action, object_type, changes)
    if object_type == "workers.incident" and action == AuditEvent.Action.CREATE:
        names = [*names, WebhookEvent.DRIFT_ALERT]  # a candidate until the object is seen
    return set(names)


#: Subscription rows to hand to :func:`on_audit_event`, read in the audit append's own
#: statement (``audits.services``): ``[[id, events], …]`` of the active subscriptions.
ACTIVE_SUBSCRIPTIONS_SUBQUERY = (
    "(SELECT coalesce(json_agg(json_build_array(s.id, s.events)), '[]'::json) "
    "FROM portal_webhooksubscription s WHERE s.active)"
)


def on_audit_event(
    event: AuditEvent,
    candidates: set[str] | None = None,
    subscriptions: list[Any] | None = None,
) -> AuditEvent:
    """Called by ``audits.services.record`` for every new event, inside its transaction.

    Costs nothing for events no webhook stands for. For those that do, the active
    subscriptions are read (unless the caller passes ``subscriptions``, the rows of
    :data:`ACTIVE_SUBSCRIPTIONS_SUBQUERY` read with the event's own insert), and that is
    all while none wants them.
    """
    if candidates is None:
        candidates = candidate_events(event.action, event.object_type, event.changes)
    if candidates:
        _fan_out(event, candidates, subscriptions)
    return event


def _load(object_type: str, object_id: str) -> models.Model | None:
    try:
        model = apps.get_model(object_type)
    except (LookupError, ValueError):
        return None
    try:
        return model._default_manager.filter(pk=object_id).first()
    except (ValueError, TypeError, ValidationError):
        return None


def absolute_url(path: str) -> str:
    return f"{settings.CHARTER_BASE_URL.rstrip('/')}{path}" if path else ""


def _object_url(obj: models.Model | None) -> str:
    getter = getattr(obj, "get_absolute_url", None)
    if not callable(getter):
        return ""
    try:
        return absolute_url(getter())
    except Exception:  # noqa: BLE001  (an object without a page still gets its webhook)
        return ""


def _use_case_of(obj: models.Model | None, changes: Any) -> int | None:
    if obj is not None:
        value = getattr(obj, "use_case_id", None)
        if value is not None:
            return int(value)
    value = _after(changes).get("use_case")
    return value if isinstance(value, int) else None


def _still_entitled(sub: WebhookSubscription, use_case: Any) -> bool:
    """The owner must still be allowed what the subscription gives them."""
    owner = sub.created_by
    if owner is None:  # created by the system (a command or task)
        return True
    access = Access(owner)
    if sub.use_case_id is None:
        return access.can_administer()
    return use_case is not None and access.can_view(use_case)


def _wanted(candidates: set[str], rows: list[Any] | None = None) -> list[int]:
    """Ids of the active subscriptions that want one of ``candidates``.

    ``rows``: ``(id, events)`` of the active subscriptions when already read; otherwise
    one short statement with SQL written once per process (it skips the ORM's query
    building, as it runs for most writes and is usually answered "none").
    """
    if rows is None:
        with connection.cursor() as cursor:
            cursor.execute(_active_events_sql())
            rows = cursor.fetchall()
    wanted = []
    for pk, events in rows:
        names = json.loads(events) if isinstance(events, str | bytes) else events
        if isinstance(names, list) and candidates & set(names):
            wanted.append(pk)
    return wanted


@functools.cache
def _active_events_sql() -> str:
    qn = connection.ops.quote_name
    meta = WebhookSubscription._meta
    return (
        f"SELECT {qn(meta.pk.column)}, {qn(meta.get_field('events').column)} "  # noqa: S608  # nosec B608
        f"FROM {qn(meta.db_table)} WHERE {qn(meta.get_field('active').column)}"
    )


def _fan_out(event: AuditEvent, candidates: set[str], rows: list[Any] | None = None) -> None:
    wanted = _wanted(candidates, rows)
    if not wanted:
        return
    subs = [
        s
        for s in WebhookSubscription.objects.filter(pk__in=wanted, active=True).select_related(
            "created_by"
        )
        if candidates & set(s.events)
    ]
    if not subs:
        return
    obj = _load(event.object_type, event.object_id)
    names = event_names(event.action, event.object_type, event.changes, obj)
    use_case_id = _use_case_of(obj, event.changes)
    use_case = getattr(obj, "use_case", None) if use_case_id is not None else None
    base = {
        "occurred_at": event.created_at.isoformat(),
        "use_case": use_case_id,
        "object": {
            "type": event.object_type,
            "id": event.object_id,
            "repr": event.object_repr,
            "url": _object_url(obj),
        },
        "changes": event.changes,
        "actor": event.actor_repr,
        "audit_seq": event.seq,
    }
    deliveries = []
    for sub in subs:
        if sub.use_case_id is not None and sub.use_case_id != use_case_id:
            continue
        if not _still_entitled(sub, use_case):
            continue
        for name in names:
            if name in sub.events:
                deliveries.append(_new_delivery(sub, name, base, audit_seq=event.seq))
    if deliveries:
        WebhookDelivery.objects.bulk_create(deliveries)
        _enqueue_on_commit([d.pk for d in deliveries])


def _new_delivery(
    sub: WebhookSubscription, name: str, base: dict[str, Any], *, audit_seq: int | None
) -> WebhookDelivery:
    delivery = WebhookDelivery(subscription=sub, event=name, audit_seq=audit_seq)
    payload = {"id": str(delivery.pk), "event": name, **base}
    delivery.payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    return delivery


def _enqueue_on_commit(ids: Iterable[Any]) -> None:
    from portal.tasks import deliver_webhook

    ids = [str(i) for i in ids]
    transaction.on_commit(lambda: [deliver_webhook.delay(i) for i in ids])


# ---------------------------------------------------------------- targets (SSRF guard)


class TargetRefused(Exception):
    """The URL is not one Charter may call."""


def _ip_allowed_by_settings(host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if settings.CHARTER_WEBHOOK_ALLOW_PRIVATE:
        return True
    for entry in settings.CHARTER_WEBHOOK_ALLOWED_HOSTS:
        entry = entry.strip().lower()
        if entry == host.lower():
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _forbidden_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
    )
    for label, flag in checks:
        if flag:
            return label
    if not ip.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def resolve_target(url: str) -> Target:
    """Parse and resolve ``url``; refuse it if any address it resolves to is off limits."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise TargetRefused("has no host")
    if parts.username or parts.password:
        raise TargetRefused("must not carry credentials; the signature authenticates Charter")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"host '{host}' does not resolve ({exc})") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address in addresses:
            continue
        ip = ipaddress.ip_address(address)
        kind = _forbidden_kind(ip)
        if kind is not None and not _ip_allowed_by_settings(host, ip):
            raise TargetRefused(
                f"'{host}' resolves to {address}, a {kind} address; Charter does not call "
                "internal addresses (see CHARTER_WEBHOOK_ALLOWED_HOSTS)"
            )
        addresses.append(address)
    if not addresses:
        raise TargetRefused(f"host '{host}' has no address")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Target(parts.scheme, host, port, path, tuple(addresses))


def check_url(url: str) -> None:
    """Raise a ValidationError naming ``url`` if Charter may not call it."""
    try:
        resolve_target(url)
    except TargetRefused as exc:
        raise ValidationError({"url": [str(exc)]}) from exc


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked addresses, whatever DNS says by now."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._addresses = target.addresses

    def _open(self) -> socket.socket:
        last: OSError | None = None
        for address in self._addresses:
            try:
                return socket.create_connection((address, self.port), self.timeout)
            except OSError as exc:
                last = exc
        raise last or OSError("no address to connect to")

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def connect(self) -> None:
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self._open(), server_hostname=self.host)


# ---------------------------------------------------------------- signing and sending


def signature(secret: str, timestamp: str, body: bytes | str) -> str:
    """``sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + raw, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (reject old timestamps too, to stop replays)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def encode_payload(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class Outcome:
    """What one delivery try came to; ``retry_in`` is set when another try is due."""

    status: str
    retry_in: float | None = None


def backoff(attempt: int) -> float:
    """Seconds before try ``attempt + 1``: base × 2^(attempt-1), ±20 % jitter, ≤ 1 hour."""
    base = settings.CHARTER_WEBHOOK_BACKOFF_S * (2 ** max(0, attempt - 1))
    return min(3600.0, base * random.uniform(0.8, 1.2))  # noqa: S311  (jitter, not crypto)


def _post(target: Target, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    timeout = settings.CHARTER_WEBHOOK_TIMEOUT_S
    conn_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = conn_class(target, timeout)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        excerpt = response.read(_EXCERPT).decode("utf-8", "replace")
        return response.status, excerpt
    finally:
        conn.close()


def deliver(delivery_id: str) -> Outcome:
    """Try a pending delivery once; log the try; say whether to try again and when.

    Idempotent for finished deliveries (a redelivered task message does nothing).
    Receivers should deduplicate on ``X-Charter-Delivery``: a worker lost between the
    POST and the bookkeeping sends it again (at-least-once).
    """
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_id).first()
    if delivery is None:
        return Outcome("gone")
    if delivery.status != WebhookDelivery.Status.PENDING:
        return Outcome(delivery.status)
    sub = delivery.subscription
    number = delivery.attempts + 1
    body = encode_payload(delivery.payload)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Charter-Event": delivery.event,
        "X-Charter-Delivery": str(delivery.pk),
        "X-Charter-Timestamp": timestamp,
        "X-Charter-Signature": signature(sub.secret, timestamp, body),
    }
    status_code: int | None = None
    error = ""
    excerpt = ""
    retryable = False
    started = time.monotonic()
    if not sub.active and delivery.event != PING_EVENT:
        error = "the subscription is inactive"
    else:
        try:
            status_code, excerpt = _post(resolve_target(sub.url), body, headers)
        except TargetRefused as exc:
            error = f"refused: {exc}"
        except TimeoutError as exc:
            error, retryable = (
                f"timed out after {settings.CHARTER_WEBHOOK_TIMEOUT_S}s ({exc})",
                True,
            )
        except (OSError, http.client.HTTPException) as exc:
            error, retryable = f"{type(exc).__name__}: {exc}", True
    duration_ms = (time.monotonic() - started) * 1000
    now = timezone.now()
    if status_code is not None:
        if 200 <= status_code < 300:
            state = WebhookDelivery.Status.SUCCEEDED
        else:
            retryable = status_code >= 500 or status_code == 429
            if 300 <= status_code < 400:
                error = "redirects are not followed"
            state = WebhookDelivery.Status.FAILED
    else:
        state = WebhookDelivery.Status.FAILED
    retry_in = None
    if state == WebhookDelivery.Status.FAILED and retryable:
        if number < settings.CHARTER_WEBHOOK_MAX_ATTEMPTS:
            state, retry_in = WebhookDelivery.Status.PENDING, backoff(number)
        else:
            error = (error + "; " if error else "") + f"gave up after {number} tries"
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            at=now,
            status_code=status_code,
            error=error[:2000],
            duration_ms=round(duration_ms, 2),
            response_excerpt=excerpt[:_EXCERPT],
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            attempts=number,
            status=state,
            response_status=status_code,
            last_error=error[:2000],
            next_attempt_at=now + timedelta(seconds=retry_in) if retry_in is not None else None,
            finished_at=None if state == WebhookDelivery.Status.PENDING else now,
        )
    return Outcome(state, retry_in)


def requeue_stalled(grace: timedelta = timedelta(minutes=10)) -> int:
    """Enqueue pending deliveries whose task message was lost (Celery beat)."""
    from portal.tasks import deliver_webhook

    now = timezone.now()
    stalled = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING).filter(
        models.Q(next_attempt_at__lt=now - grace)
        | models.Q(next_attempt_at__isnull=True, created_at__lt=now - grace)
    )
    ids = [str(i) for i in stalled.values_list("pk", flat=True)[:1000]]
    for delivery_id in ids:
        deliver_webhook.delay(delivery_id)
    return len(ids)


# ---------------------------------------------------------------- subscriptions (the service)


def _snapshot(sub: WebhookSubscription) -> dict[str, Any]:
    """Audited fields: never the secret."""
    return {
        "name": sub.name,
        "url": sub.url,
        "events": list(sub.events),
        "use_case": sub.use_case_id,
        "active": sub.active,
        "created_by": sub.created_by_id,
    }


def _clean_events(events: Any) -> list[str]:
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list | tuple) or not events:
        raise ValidationError({"events": [f"choose one or more of: {', '.join(EVENTS)}"]})
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise ValidationError(
            {"events": [f"unknown event {unknown[0]!r}; known: {', '.join(EVENTS)}"]}
        )
    return sorted(set(events), key=EVENTS.index)


def _require_scope(access: Access, use_case: Any) -> None:
    if not access.authenticated:
        raise PermissionDenied("sign in first")
    unscoped_admin = access.can_administer() and access.token_scope() is None
    if use_case is None:
        if not unscoped_admin:
            raise PermissionDenied("only administrators may subscribe to every use case")
    elif not unscoped_admin:
        access.require_contribute(use_case)  # checks the token's scope too


def visible_subscriptions(access: Access) -> QuerySet[WebhookSubscription]:
    """Your own subscriptions; administrators (not through a scoped token) see all."""
    queryset = WebhookSubscription.objects.select_related("use_case", "created_by")
    if access.is_system or (access.can_administer() and access.token_scope() is None):
        return queryset
    if not access.authenticated:
        return queryset.none()
    queryset = queryset.filter(created_by=access.actor)
    scope = access.token_scope()
    if scope is not None:
        queryset = queryset.filter(use_case_id__in=scope)
    return queryset


def _require_manage(access: Access, sub: WebhookSubscription) -> None:
    if not visible_subscriptions(access).filter(pk=sub.pk).exists():
        raise PermissionDenied("this is not your subscription")
    _require_scope(access, sub.use_case)


@transaction.atomic
def create_subscription(
    access: Access,
    *,
    url: str,
    events: Any,
    use_case: Any = None,
    name: str = "",
    active: bool = True,
) -> tuple[WebhookSubscription, str]:
    """Create a subscription; returns it and its secret (shown to the caller once)."""
    from audits.services import record

    _require_scope(access, use_case)
    sub = WebhookSubscription(
        name=name,
        url=url,
        events=_clean_events(events),
        use_case=use_case,
        active=active,
        secret=WebhookSubscription.new_secret(),
        created_by=access.actor if not access.is_system else None,
    )
    sub.full_clean()
    check_url(sub.url)
    sub.save()
    record(AuditEvent.Action.CREATE, actor=access.actor, obj=sub, changes={"after": _snapshot(sub)})
    return sub, sub.secret


@transaction.atomic
def update_subscription(
    access: Access, sub: WebhookSubscription, **data: Any
) -> WebhookSubscription:
    from audits.services import record

    unknown = set(data) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(
            {name: ["cannot be changed; create another subscription"] for name in sorted(unknown)}
        )
    sub = WebhookSubscription.objects.select_for_update().get(pk=sub.pk)
    _require_manage(access, sub)
    before = _snapshot(sub)
    if "events" in data:
        data["events"] = _clean_events(data["events"])
    for name, value in data.items():
        setattr(sub, name, value)
    sub.full_clean()
    if "url" in data and data["url"] != before["url"]:
        check_url(sub.url)
    after = _snapshot(sub)
    changed = sorted(k for k in after if after[k] != before[k])
    if changed:
        sub.save()
        record(
            AuditEvent.Action.UPDATE,
            actor=access.actor,
            obj=sub,
            changes={
                "before": {k: before[k] for k in changed},
                "after": {k: after[k] for k in changed},
            },
        )
    return sub


@transaction.atomic
def delete_subscription(access: Access, sub: WebhookSubscription, *, reason: str = "") -> None:
    """Delete a subscription with its delivery log."""
    from audits.services import record

    _require_manage(access, sub)
    record(
        AuditEvent.Action.DELETE,
        actor=access.actor,
        obj=sub,
        changes={"before": _snapshot(sub), "reason": reason},
    )
    sub.delete()


@transaction.atomic
def send_test(access: Access, sub: WebhookSubscription) -> WebhookDelivery:
    """Queue a ``ping`` delivery to the subscription (not audited: it changes nothing)."""
    _require_manage(access, sub)
    base = {
        "occurred_at": timezone.now().isoformat(),
        "use_case": sub.use_case_id,
        "object": {
            "type": "portal.webhooksubscription",
            "id": str(sub.pk),
            "repr": str(sub),
            "url": absolute_url(f"/access/webhooks/{sub.pk}/"),
        },
        "changes": {},
        "actor": access.actor.get_username() if access.actor is not None else "system",
    }
    delivery = _new_delivery(sub, PING_EVENT, base, audit_seq=None)
    delivery.save()
    _enqueue_on_commit([delivery.pk])
    return delivery
