"""Signing keys and attestations: verification rules and the service functions.

An attestation is an in-toto Statement v1 in a DSSE envelope, signed with an
Ed25519 key registered as a :class:`~registry.models.SigningKey`. Charter
verifies it on receipt:

1. the envelope is well formed (JSON object, base64 payload and signatures);
2. its payload type is ``application/vnd.in-toto+json``;
3. one signature verifies with a registered key ...
4. ... that was not revoked at or before receipt (an envelope carries no
   trusted time, so the receipt time is the signing time Charter can vouch for);
5. the payload is an in-toto Statement v1 ...
6. ... whose subjects include the artifact's (or evidence item's) sha256.

A refused envelope writes nothing (no attestation, and no artifact or evidence
item when it came with one) except a ``verify`` audit event naming the reason,
written in its own transaction after the refused one rolled back. Call the
public functions here outside any transaction of your own, or the refusal event
shares your transaction's fate.

The pure part (:func:`load_envelope`, :func:`check_envelope`,
:func:`sslib_key_id`) needs no database; the rest are service functions: they
check the caller's rights and write together with their audit events.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from audits.models import AuditEvent
from audits.services import record
from portal import dsse
from portal import keys as portal_keys
from portal.permissions import Access
from registry import services
from registry.models import Artifact, Attestation, Evidence, ModelVersion, SigningKey, UseCase

MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_PREDICATE_TYPE = 500
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Target = Artifact | Evidence


class AttestationRefused(ValidationError):
    """An envelope failed verification. A 400 on the ``envelope`` field.

    ``code`` is one of: ``malformed``, ``too_large``, ``wrong_payload_type``,
    ``unknown_key``, ``bad_signature``, ``revoked_key``, ``bad_statement``,
    ``digest_mismatch``.
    """

    def __init__(self, code: str, reason: str, *, key_id: str = "") -> None:
        self.code_name = code
        self.reason = reason
        self.key_id = key_id
        super().__init__({"envelope": [reason]}, code=code)


# ---------------------------------------------------------------- pure functions


def sslib_key_id(public_key: Ed25519PublicKey) -> str:
    """The key id securesystemslib computes by default for an Ed25519 key.

    SHA-256 of the canonical JSON of ``{"keytype", "scheme", "keyval"}``, so
    envelopes signed with securesystemslib's default ids resolve too.
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    data = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": raw.hex()}}
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def short(key_id: str) -> str:
    return f"{key_id[:16]}…" if len(key_id) > 16 else key_id or "(none)"


def load_envelope(value: Any) -> dict[str, Any]:
    """An envelope from a JSON object or the JSON text of one; AttestationRefused otherwise."""
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AttestationRefused("malformed", "envelope is not UTF-8 text") from exc
    if isinstance(value, str):
        if len(value.encode()) > MAX_ENVELOPE_BYTES:
            raise AttestationRefused(
                "too_large", f"envelope is larger than {MAX_ENVELOPE_BYTES} bytes"
            )
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise AttestationRefused(
                "malformed", f"envelope is not valid JSON (truncated?): {exc}"
            ) from exc
    if not isinstance(value, dict):
        raise AttestationRefused(
            "malformed", "envelope must be a DSSE JSON object (payloadType, payload, signatures)"
        )
    if len(json.dumps(value).encode()) > MAX_ENVELOPE_BYTES:
        raise AttestationRefused("too_large", f"envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
    return value


def envelope_digest(value: Any) -> str:
    """SHA-256 of what was submitted (text as sent, objects as canonical JSON)."""
    if isinstance(value, str):
        data = value.encode()
    else:
        try:
            data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            data = repr(value).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Checked:
    """What a verified envelope says."""

    key: Any  # the SigningKey (or any object with key_id/public_key_pem/revoked_at)
    key_id: str
    payload: bytes
    payload_type: str
    statement: dict[str, Any]
    predicate_type: str
    subject_sha256: str

    @property
    def payload_sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


def _public(key: Any) -> Ed25519PublicKey:
    return portal_keys.load_public_pem(key.public_key_pem)


def check_envelope(
    envelope: dict[str, Any],
    expected_sha256: str,
    *,
    resolve: Callable[[str], Iterable[Any]],
    at: datetime,
) -> Checked:
    """Verify an envelope against a target digest; AttestationRefused with the reason if not.

    ``resolve`` maps a signature's key id to candidate keys (objects with
    ``key_id``, ``public_key_pem``, ``revoked_at`` and ``revoked_reason``).
    ``at`` is the receipt time: keys revoked at or before it are refused.
    """
    try:
        payload_type, payload, signatures = dsse.parse_envelope(envelope)
    except dsse.EnvelopeError as exc:
        raise AttestationRefused("malformed", f"envelope is malformed: {exc}") from exc
    if payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        raise AttestationRefused(
            "wrong_payload_type",
            f"envelope payloadType is '{payload_type[:200]}', "
            f"expected '{dsse.IN_TOTO_PAYLOAD_TYPE}'",
        )
    message = dsse.pae(payload_type, payload)
    accepted = None
    revoked = None
    bad = None
    unknown: list[str] = []
    for keyid, sig in signatures:
        candidates = list(resolve(keyid)) if keyid else []
        if not candidates:
            unknown.append(keyid)
            continue
        for key in candidates:
            try:
                _public(key).verify(sig, message)
            except (InvalidSignature, ValueError):
                bad = bad or key
                continue
            if key.revoked_at is not None and key.revoked_at <= at:
                revoked = revoked or key
                continue
            accepted = key
            break
        if accepted is not None:
            break
    if accepted is None:
        if revoked is not None:
            reason = f": {revoked.revoked_reason}" if revoked.revoked_reason else ""
            raise AttestationRefused(
                "revoked_key",
                f"signing key {short(revoked.key_id)} was revoked at "
                f"{revoked.revoked_at.isoformat()}{reason}; its signatures are refused",
                key_id=revoked.key_id,
            )
        if bad is not None:
            raise AttestationRefused(
                "bad_signature",
                f"signature by key {short(bad.key_id)} does not verify: the envelope was "
                "changed after signing, or signed with a different key",
                key_id=bad.key_id,
            )
        ids = ", ".join(short(k) for k in unknown)
        raise AttestationRefused(
            "unknown_key",
            f"envelope is not signed by a registered key (key ids: {ids}); "
            "register the public key at /api/v1/signing-keys/ first",
            key_id=unknown[0] if unknown else "",
        )
    try:
        stmt = dsse.parse_statement(payload)
    except dsse.EnvelopeError as exc:
        raise AttestationRefused(
            "bad_statement", f"envelope payload: {exc}", key_id=accepted.key_id
        ) from exc
    expected = expected_sha256.lower()
    digests = dsse.subject_digests(stmt)
    if expected not in digests:
        found = ", ".join(sorted(short(d) for d in digests)) or "none"
        raise AttestationRefused(
            "digest_mismatch",
            f"statement subject sha256 ({found}) does not match the sha256 of the "
            f"signed object ({short(expected)})",
            key_id=accepted.key_id,
        )
    predicate_type = stmt["predicateType"]
    if len(predicate_type) > MAX_PREDICATE_TYPE:
        raise AttestationRefused(
            "bad_statement",
            f"statement predicateType is longer than {MAX_PREDICATE_TYPE} characters",
            key_id=accepted.key_id,
        )
    return Checked(
        key=accepted,
        key_id=accepted.key_id,
        payload=payload,
        payload_type=payload_type,
        statement=stmt,
        predicate_type=predicate_type,
        subject_sha256=expected,
    )


# ---------------------------------------------------------------- reads


def resolve_keys(keyid: str) -> list[SigningKey]:
    """Registered keys a signature's key id names (Charter's id or securesystemslib's)."""
    keyid = keyid.lower()
    if not _HEX64.match(keyid):
        return []
    return list(
        SigningKey.objects.filter(models.Q(key_id=keyid) | models.Q(sslib_key_id=keyid)).order_by(
            "pk"
        )
    )


def get_key(identifier: str) -> SigningKey | None:
    """A key by database id or by key id (Charter's or securesystemslib's)."""
    identifier = identifier.strip().lower()
    if identifier.isdigit():
        return SigningKey.objects.filter(pk=int(identifier)).first()
    found = resolve_keys(identifier)
    return found[0] if found else None


def reverify(
    attestation: Attestation, *, at: datetime | None = None, fresh_key: SigningKey | None = None
) -> tuple[bool, str]:
    """Verify a stored attestation again, now (for the deployment gate).

    Fails when the signature no longer verifies with the stored key, the target's
    digest changed, or the key is now known to have been revoked at or before
    the attestation was received (a back-dated revocation catches it).
    """
    target = attestation.target
    # Read the key afresh: a revocation since the row was loaded must count (a caller
    # that has just loaded it in this request may pass it as ``key``).
    key = fresh_key or SigningKey.objects.filter(pk=attestation.signer_key_id).first()
    if key is None:
        return False, "the attestation has no signer key"
    when = at or attestation.verified_at
    try:
        check_envelope(
            load_envelope(attestation.envelope),
            target.sha256,
            resolve=lambda keyid: [key] if keyid in (key.key_id, key.sslib_key_id) else [],
            at=when,
        )
    except AttestationRefused as exc:
        return False, exc.reason
    return True, ""


# ---------------------------------------------------------------- keys


def _stamp(access: Access) -> Any:
    actor = access.actor
    return actor if actor is not None and actor.is_authenticated else None


def _key_snapshot(key: SigningKey) -> dict[str, Any]:
    return services.snapshot(key)


def _parse_uploaded_pem(pem: Any) -> Ed25519PublicKey:
    if not isinstance(pem, str) or not pem.strip():
        raise ValidationError({"public_key_pem": "paste an Ed25519 public key in PEM form"})
    if len(pem) > 10_000:
        raise ValidationError({"public_key_pem": "is too long for an Ed25519 public key"})
    if "PRIVATE KEY" in pem:
        raise ValidationError(
            {
                "public_key_pem": "this is a PRIVATE key: never upload it; "
                "send the public key (-----BEGIN PUBLIC KEY-----)"
            }
        )
    try:
        return portal_keys.load_public_pem(pem.strip())
    except ValueError as exc:
        raise ValidationError({"public_key_pem": f"{exc}; expected an Ed25519 public key"}) from exc


def _portal_key_ids() -> set[str]:
    ids: set[str] = set()
    with contextlib.suppress(portal_keys.SigningKeyUnavailable):
        ids.add(portal_keys.portal_key().key_id)
    with contextlib.suppress(portal_keys.SigningKeyUnavailable):
        ids.update(portal_keys.key_id(k) for k in portal_keys.previous_public_keys())
    return ids


@transaction.atomic
def register_signing_key(
    access: Access,
    *,
    public_key_pem: str,
    kind: str = SigningKey.Kind.PERSON,
    name: str = "",
    owner: Any = None,
) -> SigningKey:
    """Register a person's or pipeline's public key; the owner is the caller by default."""
    caller = _stamp(access)
    owner = owner or caller
    if owner is None:
        raise ValidationError({"owner": "a person or pipeline key needs an owner"})
    if (caller is None or owner.pk != caller.pk) and not access.can_administer():
        raise PermissionDenied("only administrators may register keys for someone else")
    if kind not in (SigningKey.Kind.PERSON, SigningKey.Kind.PIPELINE):
        raise ValidationError(
            {"kind": "must be 'person' or 'pipeline' (the portal registers its own key)"}
        )
    public = _parse_uploaded_pem(public_key_pem)
    kid = portal_keys.key_id(public)
    if kid in _portal_key_ids():
        raise ValidationError({"public_key_pem": "this is the portal's own key"})
    existing = SigningKey.objects.filter(key_id=kid).first()
    if existing is not None:
        raise ValidationError(
            {"public_key_pem": f"this key is already registered (key id {short(kid)})"}
        )
    key = SigningKey(
        key_id=kid,
        sslib_key_id=sslib_key_id(public),
        name=name,
        kind=kind,
        public_key_pem=portal_keys.public_pem(public),
        owner=owner,
        created_by=caller,
    )
    key.full_clean()
    key.save()
    record(
        AuditEvent.Action.CREATE, actor=access.actor, obj=key, changes={"after": _key_snapshot(key)}
    )
    return key


def can_revoke(access: Access, key: SigningKey) -> bool:
    if access.can_administer():
        return True
    actor = _stamp(access)
    return actor is not None and key.owner_id is not None and key.owner_id == actor.pk


@transaction.atomic
def revoke_signing_key(
    access: Access, key: SigningKey, *, reason: str, revoked_at: datetime | None = None
) -> SigningKey:
    """Revoke a key (its owner or an administrator). Signatures received after are refused.

    ``revoked_at`` may be back-dated (e.g. to when the key was compromised); the
    deployment gate re-verifies attestations received after it.
    """
    if not can_revoke(access, key):
        raise PermissionDenied("only the key's owner or an administrator may revoke it")
    key = SigningKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is not None:
        raise ValidationError(
            {"revoked_at": f"the key was already revoked at {key.revoked_at.isoformat()}"}
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "say why the key is revoked"})
    now = timezone.now()
    when = revoked_at or now
    if when > now:
        raise ValidationError({"revoked_at": "cannot be in the future"})
    before = _key_snapshot(key)
    key.revoked_at, key.revoked_reason, key.revoked_by = when, reason[:2000], _stamp(access)
    key.save(update_fields=["revoked_at", "revoked_reason", "revoked_by"])
    after = _key_snapshot(key)
    record(
        AuditEvent.Action.REVOKE,
        actor=access.actor,
        obj=key,
        changes={
            "before": {k: before[k] for k in ("revoked_at", "revoked_reason", "revoked_by")},
            "after": {k: after[k] for k in ("revoked_at", "revoked_reason", "revoked_by")},
            "reason": reason,
        },
    )
    return key


def _ensure_portal_public(public: Ed25519PublicKey, name: str) -> SigningKey:
    kid = portal_keys.key_id(public)
    existing = SigningKey.objects.filter(key_id=kid).first()
    if existing is None:
        try:
            with transaction.atomic():
                existing = SigningKey(
                    key_id=kid,
                    sslib_key_id=sslib_key_id(public),
                    name=name,
                    kind=SigningKey.Kind.PORTAL,
                    public_key_pem=portal_keys.public_pem(public),
                )
                existing.full_clean()
                existing.save()
                record(
                    AuditEvent.Action.CREATE,
                    actor=None,
                    obj=existing,
                    changes={"after": _key_snapshot(existing)},
                )
        except IntegrityError:  # registered concurrently by another process
            existing = SigningKey.objects.get(key_id=kid)
    if existing.kind != SigningKey.Kind.PORTAL:
        raise portal_keys.SigningKeyUnavailable(
            f"the portal's key {short(kid)} is registered as a {existing.kind} key"
        )
    return existing


@transaction.atomic
def ensure_portal_key_registered() -> SigningKey:
    """Register the portal's current public key (and retired ones) as portal SigningKeys.

    Idempotent and safe under concurrency; returns the current key's row.
    Raises SigningKeyUnavailable when the portal has no usable private key.
    """
    current = portal_keys.portal_key()
    row = _ensure_portal_public(current.public, "Charter portal")
    for old in portal_keys.previous_public_keys():
        _ensure_portal_public(old, "Charter portal (retired)")
    return row


# ---------------------------------------------------------------- attestations


def _attestation_snapshot(att: Attestation) -> dict[str, Any]:
    data = services.snapshot(att)
    data.pop("envelope", None)  # large; its digest is in payload_sha256
    return data


def _attach(
    access: Access, target: Target, envelope: Any, *, portal_signed: bool = False
) -> Attestation:
    """Verify and store (inside the caller's transaction)."""
    now = timezone.now()
    env = load_envelope(envelope)
    checked = check_envelope(env, target.sha256, resolve=resolve_keys, at=now)
    is_artifact = isinstance(target, Artifact)
    fk = {"artifact": target} if is_artifact else {"evidence": target}
    duplicate = Attestation.objects.filter(
        signer_key=checked.key, payload_sha256=checked.payload_sha256, **fk
    ).first()
    if duplicate is not None:
        raise ValidationError(
            {"envelope": f"this statement is already attached as attestation {duplicate.pk}"}
        )
    att = Attestation(
        use_case_id=target.use_case_id,
        envelope=env,
        payload_sha256=checked.payload_sha256,
        payload_type=checked.payload_type,
        predicate_type=checked.predicate_type,
        subject_sha256=checked.subject_sha256,
        signer_key=checked.key,
        portal_signed=portal_signed,
        verdict=Attestation.Verdict.VERIFIED,
        verified_at=now,
        created_by=_stamp(access),
        **fk,
    )
    att.full_clean()
    att.save()
    record(
        AuditEvent.Action.CREATE,
        actor=access.actor,
        obj=att,
        changes={"after": _attestation_snapshot(att)},
    )
    record(
        AuditEvent.Action.VERIFY,
        actor=access.actor,
        obj=att,
        changes={
            "verdict": Attestation.Verdict.VERIFIED,
            "key_id": checked.key_id,
            "target": f"{target._meta.model_name} {target.pk}",
            "subject_sha256": checked.subject_sha256,
            "predicate_type": checked.predicate_type,
        },
    )
    return att


def _audit_refusal(
    access: Access, obj: models.Model, exc: AttestationRefused, envelope: Any, target: dict
) -> None:
    """The refusal's own transaction, after the refused one rolled back."""
    with transaction.atomic():
        record(
            AuditEvent.Action.VERIFY,
            actor=access.actor,
            obj=obj,
            changes={
                "verdict": Attestation.Verdict.FAILED,
                "reason": exc.reason,
                "code": exc.code_name,
                "key_id": exc.key_id,
                "envelope_sha256": envelope_digest(envelope),
                "target": target,
            },
        )


def _target_label(target: Target) -> dict[str, Any]:
    return {"type": target._meta.model_name, "id": target.pk, "sha256": target.sha256}


def attach_attestation(access: Access, target: Target, envelope: Any) -> Attestation:
    """Attach a signed envelope to an existing artifact or evidence item."""
    access.require_contribute(target.use_case)
    try:
        with transaction.atomic():
            return _attach(access, target, envelope)
    except AttestationRefused as exc:
        _audit_refusal(access, target, exc, envelope, _target_label(target))
        raise


def add_artifact_with_attestation(
    access: Access, *, model_version: ModelVersion, envelope: Any, **data: Any
) -> Artifact:
    """Register an artifact together with its envelope: both or neither."""
    try:
        with transaction.atomic():
            artifact = services.add_artifact(access, model_version=model_version, **data)
            _attach(access, artifact, envelope)
            return artifact
    except AttestationRefused as exc:
        label = {"type": "artifact", "id": None, "name": data.get("name", ""), **_sha(data)}
        _audit_refusal(access, model_version, exc, envelope, label)
        raise


def add_evidence_with_attestation(
    access: Access,
    *,
    envelope: Any,
    use_case: UseCase | None = None,
    model_version: ModelVersion | None = None,
    **data: Any,
) -> Evidence:
    """Register an evidence item together with its envelope: both or neither."""
    try:
        with transaction.atomic():
            evidence = services.add_evidence(
                access, use_case=use_case, model_version=model_version, **data
            )
            _attach(access, evidence, envelope)
            return evidence
    except AttestationRefused as exc:
        obj: models.Model = model_version or use_case  # type: ignore[assignment]
        label = {"type": "evidence", "id": None, "title": data.get("title", ""), **_sha(data)}
        _audit_refusal(access, obj, exc, envelope, label)
        raise


def _sha(data: dict[str, Any]) -> dict[str, str]:
    return {"sha256": str(data.get("sha256", ""))[:64]}


def _check_predicate(predicate_type: Any, predicate: Any) -> None:
    if not isinstance(predicate_type, str) or not predicate_type.strip():
        raise ValidationError({"predicate_type": "name the predicate type (a URI)"})
    if len(predicate_type) > MAX_PREDICATE_TYPE:
        raise ValidationError({"predicate_type": f"is longer than {MAX_PREDICATE_TYPE} characters"})
    if not isinstance(predicate, dict):
        raise ValidationError({"predicate": "must be a JSON object"})
    try:
        json.dumps(predicate, allow_nan=False)
    except ValueError as exc:
        raise ValidationError({"predicate": "must not contain NaN or infinity"}) from exc
    if len(json.dumps(predicate).encode()) > MAX_ENVELOPE_BYTES // 2:
        raise ValidationError({"predicate": "is too large"})


def sign_as_portal(
    access: Access, target: Target, predicate_type: str, predicate: dict[str, Any]
) -> Attestation:
    """Sign a statement over ``target`` with the portal's key, on behalf of the caller."""
    access.require_contribute(target.use_case)
    _check_predicate(predicate_type, predicate)
    key = portal_keys.portal_key()  # SigningKeyUnavailable: nothing to sign with
    ensure_portal_key_registered()
    stmt = dsse.statement([(target_name(target), target.sha256)], predicate_type, predicate)
    envelope = dsse.sign_statement(stmt, key.key_id, key.sign)
    try:
        with transaction.atomic():
            return _attach(access, target, envelope, portal_signed=True)
    except AttestationRefused as exc:  # e.g. the portal's key was revoked
        _audit_refusal(access, target, exc, envelope, _target_label(target))
        raise


def sign_artifact_as_portal(
    access: Access, artifact: Artifact, predicate_type: str, predicate: dict[str, Any]
) -> Attestation:
    """A portal-signed attestation over an artifact, requested by a contributor."""
    return sign_as_portal(access, artifact, predicate_type, predicate)


def target_name(target: Target) -> str:
    if isinstance(target, Artifact):
        return target.name
    return target.title


def signer_label(att: Attestation) -> str:
    """Who signed: the key owner's username, or the portal (on behalf of the requester)."""
    key = att.signer_key
    if key is None:
        return ""
    if key.kind == SigningKey.Kind.PORTAL:
        if att.portal_signed and att.created_by is not None:
            return f"portal (for {att.created_by.get_username()})"
        return "portal"
    return key.owner.get_username() if key.owner is not None else ""


def signature_status(atts: Iterable[Attestation]) -> str:
    """``verified`` when any attestation verified, ``failed`` when only failed ones, else
    ``unsigned``."""
    verdicts = {a.verdict for a in atts}
    if Attestation.Verdict.VERIFIED in verdicts:
        return "verified"
    return "failed" if verdicts else "unsigned"
